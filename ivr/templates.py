"""Filling ``{variable}`` placeholders of prompts and values with the call's variables."""

from __future__ import annotations

from collections.abc import Mapping

from config.ivr.schema import PLACEHOLDER

__all__ = ["render"]


def render(template: str, variables: Mapping[str, str]) -> str:
    """Replace each ``{name}`` by its value; a variable not set yet is replaced by nothing."""
    if "{" not in template:
        return template
    return PLACEHOLDER.sub(lambda found: variables.get(found.group(1), ""), template)
