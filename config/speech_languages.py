"""Which IVR questions can be answered by voice in each of their tree's languages.

A question that listens for speech (a menu or language choice with phrases, a
``collect_speech`` node) is asked in the caller's current language, which may be any of its
tree's languages. The recogniser for a language is its ``speech.language_models`` entry (or
that of its primary language: ``en-GB`` uses ``en``), else ``speech.vosk_model_path``, else the
built-in engine, which knows US English only. So, with no ``vosk_model_path``, a question in a
language that is neither English nor in ``language_models`` would be heard by an English model:

- an error (``file:line``) when some answer can only be spoken;
- a warning (logged, also ``file:line``) when every answer can also be keyed in: callers
  still get through on DTMF, and the admin hears of it.

With ``vosk_model_path`` set nothing is checked: that model serves every language without one
of its own, and which language it was trained on cannot be told from its files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

from config.ivr import IvrTrees
from config.ivr.nodes import (
    Choice,
    CollectSpeechNode,
    IvrNode,
    LanguageChoice,
    LanguageNode,
    MenuNode,
)
from config.settings import SpeechSettings
from config.source import ConfigError, ConfigProblem, Location, load_yaml

__all__ = ["SpeechLanguageGap", "check_speech_languages", "speech_language_gaps"]

logger = logging.getLogger(__name__)

# The built-in engine's language (speech.sphinx_engine: the bundled US-English model).
_BUILT_IN_LANGUAGE = "en"


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechLanguageGap:
    """A question that listens for speech in a language no recogniser is configured for."""

    problem: ConfigProblem
    keys_too: bool
    """Whether every answer of the question can also be keyed in (then it is a warning)."""


def _key(code: str) -> str:
    # As speech.service.language_key folds codes: "pt_BR" and "pt-br" are the same language.
    return code.strip().replace("_", "-").casefold()


def _recognised(language: str, models: frozenset[str]) -> bool:
    key = _key(language)
    primary = key.split("-", 1)[0]
    return key in models or primary in models or primary == _BUILT_IN_LANGUAGE


def _listening(node: IvrNode) -> tuple[Location, bool] | None:
    """Where a node's phrases are written and whether every answer also has keys; ``None`` for
    a node that does not listen for speech."""
    if isinstance(node, MenuNode | LanguageNode):
        choices: tuple[Choice | LanguageChoice, ...] = node.choices
        spoken = [index for index, choice in enumerate(choices) if choice.phrases]
        if not spoken:
            return None
        keys_too = all(choice.dtmf is not None for choice in choices)
        return ("choices", spoken[0], "phrases"), keys_too
    if isinstance(node, CollectSpeechNode):
        where: Location = ("phrases",) if node.phrases else ("type",)
        return where, node.dtmf is not None
    return None


def speech_language_gaps(ivr: IvrTrees, speech: SpeechSettings) -> Iterator[SpeechLanguageGap]:
    """Every speech question of every tree, in every tree language without a recogniser."""
    if not speech.enabled or speech.vosk_model_path:
        return
    models = frozenset(_key(code) for code in speech.language_models)
    for tree_id in sorted(ivr.trees):
        tree = ivr.trees[tree_id]
        missing = [code for code in tree.languages if not _recognised(code, models)]
        if not missing:
            continue
        document = load_yaml(tree.source)
        for node_id, node in tree.nodes.items():
            listening = _listening(node)
            if listening is None:
                continue
            where, keys_too = listening
            location: Location = ("trees", tree_id, "nodes", node_id, *where)
            names = ", ".join(repr(code) for code in missing)
            remedy = (
                "callers can still press keys; to recognise it, add"
                if keys_too
                else "give every answer a key (dtmf), or add"
            )
            message = (
                f"trees.{tree_id}.nodes.{node_id}: listens for speech in {names}, which no "
                "speech model recognises (the built-in engine knows English only); "
                f"{remedy} speech.language_models.{missing[0]} (a Vosk model) to server.yaml"
            )
            yield SpeechLanguageGap(problem=document.problem(location, message), keys_too=keys_too)


def check_speech_languages(ivr: IvrTrees, speech: SpeechSettings) -> list[ConfigProblem]:
    """The errors among :func:`speech_language_gaps`; the warnings are logged."""
    errors: list[ConfigProblem] = []
    try:
        gaps = list(speech_language_gaps(ivr, speech))
    except ConfigError as exc:  # a tree file changed on disk since it was loaded
        return list(exc.problems)
    for gap in gaps:
        if gap.keys_too:
            logger.warning("%s", gap.problem)
        else:
            errors.append(gap.problem)
    return errors
