"""Turning what a caller said into one of the phrases a prompt offers.

A phrase matches when the utterance is the phrase, or contains it as whole words ("I'd like
billing please" matches "billing"). An utterance that contains phrases of two different choices is
ambiguous and matches none: asking again is better than guessing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["match_phrase", "normalize"]

_NOT_WORD = re.compile(r"[^\w']+")


def normalize(text: str) -> str:
    """Lower case, punctuation removed, single spaces."""
    return " ".join(_NOT_WORD.sub(" ", text.casefold()).split())


def match_phrase(text: str, phrases: Sequence[tuple[str, int]]) -> int | None:
    """The choice (second item of the matching pair) that ``text`` names, or ``None``."""
    spoken = normalize(text)
    if not spoken:
        return None
    for phrase, choice in phrases:
        if normalize(phrase) == spoken:
            return choice
    padded = f" {spoken} "
    found = {choice for phrase, choice in phrases if f" {normalize(phrase)} " in padded}
    if len(found) == 1:
        return found.pop()
    return None
