"""Grammars and pronunciations for the pocketsphinx engine: the CMU dictionary, telephone-band
pronunciation variants, and the JSGF grammar of one question. Pure functions, no decoder."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

__all__ = [
    "HESITATION_WEIGHT",
    "clean",
    "grammar_pronunciations",
    "jsgf",
    "read_dictionary",
    "telephone_variants",
]

# Sibilants whose energy lies mostly above the telephone band (3.4 kHz): dropped at a word's edge
# in the telephone variants of its pronunciation.
_SIBILANTS: Final = frozenset({"S", "Z"})
# Grammar weight of the hesitation words against 1 for each phrase: they win only where the
# audio fits them much better. At 0.1 and 1e-4 "billing" and "agent" in some voices were heard as
# "hmm" and "uh"; at 1e-8, on voices the benchmark does not use, 62 % of hesitations were
# rejected and menu words were recognised a little more often than without (95.8 %, 94.8 %).
HESITATION_WEIGHT: Final = 1e-8


def read_dictionary(path: Path) -> dict[str, tuple[str, ...]]:
    """Read a CMU-format dictionary: ``word PH PH ...`` per line, variants as ``word(2)``.

    Returns each word's pronunciations, first one first. Raises ``ValueError`` naming the file.
    """
    entries: dict[str, list[str]] = {}
    try:
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                fields = line.split()
                if len(fields) < 2 or line.startswith(";;;"):
                    continue
                word = fields[0].split("(", 1)[0].casefold()
                entries.setdefault(word, []).append(" ".join(fields[1:]))
    except OSError as exc:
        raise ValueError(f"pronunciation dictionary {path} cannot be read: {exc}") from exc
    if not entries:
        raise ValueError(f"pronunciation dictionary {path} has no entries")
    return {word: tuple(prons) for word, prons in entries.items()}


def telephone_variants(pronunciation: str) -> tuple[str, ...]:
    """``pronunciation`` and its telephone-band variants: without a leading S/Z, and without a
    trailing S/Z (never both, and never down to a single phone)."""
    phones = pronunciation.split()
    variants = [" ".join(phones)]
    if len(phones) >= 3:
        if phones[0] in _SIBILANTS:
            variants.append(" ".join(phones[1:]))
        if phones[-1] in _SIBILANTS:
            variants.append(" ".join(phones[:-1]))
    return tuple(dict.fromkeys(variants))


def grammar_pronunciations(
    dictionary: Mapping[str, tuple[str, ...]],
) -> dict[str, tuple[str, ...]]:
    """Each word's dictionary pronunciations, then its telephone variants, leaving out a variant
    that is also a pronunciation (or variant) of another word of the grammar ("sales" without
    its S must not become "ale" when "ale" is on the menu too)."""
    variants = {
        word: tuple(dict.fromkeys(v for p in prons for v in telephone_variants(p)))
        for word, prons in dictionary.items()
    }
    owners: dict[str, set[str]] = {}
    for word, prons in variants.items():
        for pron in prons:
            owners.setdefault(pron, set()).add(word)
    result: dict[str, tuple[str, ...]] = {}
    for word, prons in dictionary.items():
        extra = [v for v in variants[word] if v not in prons and owners[v] == {word}]
        result[word] = (*prons, *extra)
    return result


def jsgf(phrases: Iterable[str], hesitations: Sequence[str] = ()) -> str:
    """A JSGF grammar (W3C JSGF 1.0, weighted alternatives) whose public rule is any one of
    the phrases, or, at ``HESITATION_WEIGHT``, one of the ``hesitations``."""
    alternatives = " | ".join("/1/ " + " ".join(w.casefold() for w in p.split()) for p in phrases)
    if hesitations:
        alternatives += f" | /{HESITATION_WEIGHT:g}/ (" + " | ".join(hesitations) + ")"
    return f"#JSGF V1.0;\ngrammar prompt;\npublic <choice> = {alternatives};\n"


def clean(text: str) -> str:
    """Drop filler words (``<sil>``, ``[NOISE]``, ``+breath+``) from a hypothesis."""
    return " ".join(word for word in text.split() if not word.startswith(("<", "[", "+")))
