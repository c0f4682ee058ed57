"""Filling ``{variable}`` placeholders of prompts and values with the call's variables."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from config.ivr.schema import PLACEHOLDER, Prompt
from ivr.actions import PromptPart

__all__ = ["prompt_parts", "render"]


def render(template: str, variables: Mapping[str, str]) -> str:
    """Replace each ``{name}`` by its value; a variable not set yet is replaced by nothing."""
    if "{" not in template:
        return template
    return PLACEHOLDER.sub(lambda found: variables.get(found.group(1), ""), template)


def prompt_parts(
    prompts: Iterable[Prompt],
    *,
    language: str,
    default_language: str,
    variables: Mapping[str, str],
    folder: Path,
) -> tuple[PromptPart, ...]:
    """What to play of ``prompts`` for a caller speaking ``language`` (see
    :meth:`Prompt.for_language`): texts with their variables filled, files of ``folder``."""
    parts: list[PromptPart] = []
    for prompt in prompts:
        for item in prompt.for_language(language, default_language):
            if item.text is not None:
                parts.append(PromptPart(text=render(item.text, variables)))
            else:
                parts.append(PromptPart(file=item.file, folder=str(folder)))
    return tuple(parts)
