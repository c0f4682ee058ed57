"""``agents.yaml`` ``phone_prompts``: what agents' phones hear on calls placed from them.

A feature code is confirmed (or refused) with a short prompt, and a call that cannot be put
through says why before the server hangs up. Each prompt is written as the IVR's are: text
spoken by text-to-speech, ``{file: name.wav}`` from the prompts folder, a list of those, or one
of those per language (``{en: "You are logged in.", fr: "Vous êtes connecté."}``). An agent
hears the version in their own ``language`` (``agents.yaml``), else in ``phone_prompts``'
``language``, else the first one written::

    phone_prompts:
      language: en
      logged_in: {en: "You are logged in.", fr: {file: fr/connecte.wav}}
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from config.ivr.checks import prompt_problems
from config.ivr.schema import Prompt
from config.settings import LanguageCode, Strict
from config.source import ConfigProblem, YamlDocument

__all__ = ["PhonePrompts", "phone_prompt_problems"]


def _prompt(text: str) -> Prompt:
    return Prompt.model_validate(text)


class PhonePrompts(Strict):
    """The prompts of calls placed from agents' phones, by what happened."""

    #: The language of agents who have none of their own.
    language: LanguageCode = "en"
    #: Feature codes done: log in (``*45``), log out (``*46``), pause (``*47``), unpause (``*48``).
    logged_in: Prompt = _prompt("You are logged in.")
    logged_out: Prompt = _prompt("You are logged out.")
    paused: Prompt = _prompt("You are paused.")
    available: Prompt = _prompt("You are available.")
    #: A feature code with a reason or form the ACD does not know.
    invalid_code: Prompt = _prompt("That code is not valid.")
    #: A feature code the agent's state does not allow now (pausing while logged out...).
    not_now: Prompt = _prompt("That is not possible now.")
    #: No feature code, extension or outbound rule matches what was dialled.
    not_recognised: Prompt = _prompt("The number you dialled is not recognised.")
    #: The colleague called did not answer (or declined, or has no phone registered).
    no_answer: Prompt = _prompt("There is no answer.")
    #: A call out through a trunk failed (busy, refused, unreachable).
    not_connected: Prompt = _prompt("The call could not be connected.")

    def prompts(self) -> Iterator[tuple[str, Prompt]]:
        """Each prompt with its setting name."""
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, Prompt):
                yield name, value


def phone_prompt_problems(
    prompts: PhonePrompts, document: YamlDocument, prompts_dir: Path
) -> list[ConfigProblem]:
    """The problems of ``agents.yaml``'s ``phone_prompts``: languages that are not language
    codes and prompt files missing from `prompts_dir`, each at the line of its prompt."""
    return [
        problem
        for name, prompt in prompts.prompts()
        for problem in prompt_problems(prompt, document, ("phone_prompts", name), prompts_dir)
    ]
