"""The recogniser interface every speech engine implements, and the phrase matcher for menus.

An engine (Vosk, pocketsphinx, ...) loads its model once and opens one :class:`RecognizerSession`
per call; the session stays warm for the whole call and is restarted for each prompt with that
prompt's grammar. Sessions are plain blocking objects: the engine's runner calls them from a
worker, never from the event loop.

Audio handed to :meth:`RecognizerSession.accept` is always the call's own format: 20 ms frames of
8 kHz signed 16-bit native-endian PCM (see :mod:`speech.vad`); an engine that needs 16 kHz resamples
inside its session.

:class:`PhraseMatcher` turns a result into one of a prompt's choices, or into a no-match: speech
that is not close enough to any allowed phrase, or not confident enough, is rejected rather than
forced onto the list, so the IVR can re-prompt instead of routing the caller wrongly.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from types import MappingProxyType
from typing import Final, Protocol

__all__ = [
    "Hypothesis",
    "NoMatchReason",
    "PhraseMatch",
    "PhraseMatcher",
    "RecognitionResult",
    "RecognizerEngine",
    "RecognizerError",
    "RecognizerSession",
    "normalize_phrase",
]


def _check_confidence(what: str, confidence: float) -> None:
    if not (math.isfinite(confidence) and 0.0 <= confidence <= 1.0):
        raise ValueError(f"{what} must be within 0..1, got {confidence}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Hypothesis:
    """One candidate transcription with the engine's confidence in it."""

    text: str
    confidence: float
    """Engine confidence, normalised to 0..1 (1 = certain)."""

    def __post_init__(self) -> None:
        _check_confidence("hypothesis confidence", self.confidence)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecognitionResult:
    """The final result of one utterance: the best transcription and the other N-best candidates.

    An empty ``text`` with confidence 0 means the engine heard nothing it could transcribe.
    """

    text: str
    confidence: float
    """Confidence in ``text``, normalised to 0..1."""
    alternatives: tuple[Hypothesis, ...] = ()
    """The other N-best candidates, best first, without the best one."""
    engine: str
    """Name of the engine that produced the result (e.g. ``vosk``)."""

    def __post_init__(self) -> None:
        _check_confidence("result confidence", self.confidence)
        if not self.engine:
            raise ValueError("a recognition result must name its engine")

    @classmethod
    def empty(cls, engine: str) -> RecognitionResult:
        """The result for an utterance in which nothing was recognised."""
        return cls(text="", confidence=0.0, engine=engine)

    @property
    def is_empty(self) -> bool:
        """Whether nothing was recognised."""
        return not self.text.strip()

    @property
    def n_best(self) -> tuple[Hypothesis, ...]:
        """All candidates, best first, the best one included."""
        return (Hypothesis(text=self.text, confidence=self.confidence), *self.alternatives)


class RecognizerError(Exception):
    """An engine failed (model missing or corrupt, worker crashed); the call goes on without it."""

    def __init__(self, engine: str, reason: str) -> None:
        super().__init__(f"speech engine {engine!r} failed: {reason}")
        self.engine = engine
        self.reason = reason


class RecognizerSession(Protocol):
    """A streaming recogniser bound to one call, reused for every prompt of that call.

    Lifecycle: ``start`` → ``accept``\\* (with ``partial`` at any time) → ``finish``, repeated per
    prompt, then ``close`` when the call ends. Methods may block on CPU work and raise
    :class:`RecognizerError`.
    """

    def start(self, grammar: tuple[str, ...] | None) -> None:
        """Begin an utterance, restricted to the ``grammar`` phrases, or free speech with ``None``.

        Discards any audio of an unfinished previous utterance.
        """
        ...

    def accept(self, pcm_frame: bytes) -> None:
        """Add one 20 ms frame of 8 kHz int16 PCM to the utterance."""
        ...

    def partial(self) -> str:
        """The transcription so far (may change until :meth:`finish`); empty if nothing yet."""
        ...

    def finish(self) -> RecognitionResult:
        """End the utterance and return its final result, N-best included."""
        ...

    def close(self) -> None:
        """Release the session's resources; the session is unusable afterwards."""
        ...


class RecognizerEngine(Protocol):
    """A loaded speech model that opens one streaming session per call."""

    @property
    def name(self) -> str:
        """Short engine name carried in results and events (e.g. ``vosk``)."""
        ...

    def open_session(self, *, call_id: str) -> RecognizerSession:
        """Create the call's recogniser (expensive the first time: keep it for the whole call)."""
        ...


# Apostrophes vanish inside words ("don't" -> "dont"); any other run of non-word characters is a
# word break. Case is folded so that "Sales." and "sales" are the same phrase.
_APOSTROPHES: Final = re.compile(r"['’]")
_WORD_BREAKS: Final = re.compile(r"[\W_]+")


def normalize_phrase(text: str) -> str:
    """Fold ``text`` to lower-case words separated by single spaces, without punctuation."""
    return _WORD_BREAKS.sub(" ", _APOSTROPHES.sub("", text.casefold())).strip()


class NoMatchReason(enum.Enum):
    """Why an utterance was not mapped to any choice."""

    EMPTY = "empty"
    """Nothing was recognised."""
    OUT_OF_GRAMMAR = "out_of_grammar"
    """No candidate is close enough to any allowed phrase."""
    LOW_CONFIDENCE = "low_confidence"
    """The closest phrase scored below the confidence threshold."""
    AMBIGUOUS = "ambiguous"
    """Two different choices scored too close to tell apart."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PhraseMatch:
    """The outcome of matching one result against a prompt's choices."""

    choice: str | None
    """The matched choice, or ``None`` for a no-match."""
    phrase: str | None
    """The allowed phrase that matched (normalised), or ``None``."""
    heard: str
    """The candidate transcription that produced the match (the best one on a no-match)."""
    score: float
    """Confidence of the match, 0..1: engine confidence times closeness to the phrase."""
    reason: NoMatchReason | None = None
    """Why there is no match; ``None`` when there is one."""

    def __post_init__(self) -> None:
        _check_confidence("match score", self.score)
        if (self.choice is None) != (self.reason is not None):
            raise ValueError("a phrase match has either a choice or a no-match reason")

    @property
    def no_match(self) -> bool:
        """Whether the utterance was rejected."""
        return self.choice is None


@dataclass(frozen=True, slots=True)
class _Candidate:
    score: float
    choice: str
    phrase: tuple[str, ...]
    heard: str


class PhraseMatcher:
    """Maps a recognition result onto one of a prompt's choices, or rejects it.

    Each choice has one or more phrases (``{"agent": ("agent", "operator")}``). A candidate
    transcription matches a phrase when the phrase's words appear in it, exactly or nearly
    (``min_similarity``, character-level, so "sale" finds "sales" but "now" does not find "no").
    The match score is the candidate's confidence times that similarity; every N-best candidate
    is tried. The best choice wins if it scores at least ``threshold`` and beats every other
    choice by ``ambiguity_margin`` (a phrase contained in the winning phrase, like "support" in
    "technical support", does not compete with it).
    """

    __slots__ = ("_ambiguity_margin", "_min_similarity", "_phrases", "_threshold")

    def __init__(
        self,
        choices: Mapping[str, Sequence[str]],
        *,
        threshold: float = 0.5,
        min_similarity: float = 0.85,
        ambiguity_margin: float = 0.1,
    ) -> None:
        _check_confidence("threshold", threshold)
        _check_confidence("min_similarity", min_similarity)
        _check_confidence("ambiguity_margin", ambiguity_margin)
        if min_similarity == 0.0:
            raise ValueError("min_similarity must be above 0, or any speech would match")
        owner: dict[tuple[str, ...], str] = {}
        for choice, phrases in choices.items():
            if isinstance(phrases, str):
                raise TypeError(f"phrases of choice {choice!r} must be a sequence of strings")
            if not phrases:
                raise ValueError(f"choice {choice!r} has no phrases")
            for phrase in phrases:
                words = tuple(normalize_phrase(phrase).split())
                if not words:
                    raise ValueError(f"choice {choice!r} has a phrase with no words: {phrase!r}")
                if owner.setdefault(words, choice) != choice:
                    raise ValueError(
                        f"phrase {phrase!r} belongs to both {owner[words]!r} and {choice!r}"
                    )
        if not owner:
            raise ValueError("a phrase matcher needs at least one choice")
        self._phrases: Mapping[tuple[str, ...], str] = MappingProxyType(owner)
        self._threshold = threshold
        self._min_similarity = min_similarity
        self._ambiguity_margin = ambiguity_margin

    @classmethod
    def from_phrases(
        cls,
        phrases: Iterable[str],
        *,
        threshold: float = 0.5,
        min_similarity: float = 0.85,
        ambiguity_margin: float = 0.1,
    ) -> PhraseMatcher:
        """A matcher whose choices are the phrases themselves."""
        return cls(
            {phrase: (phrase,) for phrase in phrases},
            threshold=threshold,
            min_similarity=min_similarity,
            ambiguity_margin=ambiguity_margin,
        )

    @property
    def grammar(self) -> tuple[str, ...]:
        """Every allowed phrase, normalised: the grammar to start the recogniser with."""
        return tuple(" ".join(words) for words in self._phrases)

    @property
    def has_long_phrases(self) -> bool:
        """Whether some phrase has several words (a caller may pause inside it)."""
        return any(len(words) > 1 for words in self._phrases)

    def unfinished(self, partial: str) -> bool:
        """Whether ``partial`` (the words heard so far) begins a longer phrase and is no phrase
        by itself: "technical" with "technical support" on the menu, not "billing" beside
        "billing address", nor a word that begins no phrase."""
        words = tuple(normalize_phrase(partial).split())
        if not words or words in self._phrases:
            return False
        width = len(words)
        return any(len(phrase) > width and phrase[:width] == words for phrase in self._phrases)

    def match(self, result: RecognitionResult) -> PhraseMatch:
        """Map ``result`` (all its N-best candidates) to a choice, or say why it is rejected."""
        return self._match(result.n_best)

    def match_text(self, text: str, confidence: float = 1.0) -> PhraseMatch:
        """Map a single transcription with the given confidence."""
        return self._match((Hypothesis(text=text, confidence=confidence),))

    def _match(self, hypotheses: Sequence[Hypothesis]) -> PhraseMatch:
        best_heard = hypotheses[0].text
        if all(not normalize_phrase(h.text) for h in hypotheses):
            return _no_match(best_heard, 0.0, NoMatchReason.EMPTY)
        best_per_choice: dict[str, _Candidate] = {}
        for hypothesis in hypotheses:
            heard_words = normalize_phrase(hypothesis.text).split()
            if not heard_words:
                continue
            for phrase, choice in self._phrases.items():
                similarity = _similarity(heard_words, phrase)
                if similarity < self._min_similarity:
                    continue
                candidate = _Candidate(
                    score=hypothesis.confidence * similarity,
                    choice=choice,
                    phrase=phrase,
                    heard=hypothesis.text,
                )
                current = best_per_choice.get(choice)
                if current is None or _rank(candidate) > _rank(current):
                    best_per_choice[choice] = candidate
        if not best_per_choice:
            return _no_match(best_heard, 0.0, NoMatchReason.OUT_OF_GRAMMAR)
        ranked = sorted(best_per_choice.values(), key=_rank, reverse=True)
        winner = ranked[0]
        if winner.score < self._threshold:
            return _no_match(winner.heard, winner.score, NoMatchReason.LOW_CONFIDENCE)
        for rival in ranked[1:]:
            if _contains(winner.phrase, rival.phrase):
                continue
            if winner.score - rival.score < self._ambiguity_margin:
                return _no_match(winner.heard, winner.score, NoMatchReason.AMBIGUOUS)
            break
        return PhraseMatch(
            choice=winner.choice,
            phrase=" ".join(winner.phrase),
            heard=winner.heard,
            score=winner.score,
        )


def _no_match(heard: str, score: float, reason: NoMatchReason) -> PhraseMatch:
    return PhraseMatch(choice=None, phrase=None, heard=heard, score=score, reason=reason)


def _rank(candidate: _Candidate) -> tuple[float, int]:
    # Equal scores: the longer phrase is the more specific reading of the same words.
    return (candidate.score, len(candidate.phrase))


def _contains(outer: tuple[str, ...], inner: tuple[str, ...]) -> bool:
    width = len(inner)
    return any(outer[i : i + width] == inner for i in range(len(outer) - width + 1))


def _similarity(heard_words: Sequence[str], phrase: tuple[str, ...]) -> float:
    """Closeness (0..1) of ``phrase`` to its best-matching stretch of ``heard_words``."""
    width = len(phrase)
    target = " ".join(phrase)
    if len(heard_words) <= width:
        return SequenceMatcher(None, " ".join(heard_words), target, autojunk=False).ratio()
    best = 0.0
    for start in range(len(heard_words) - width + 1):
        window = heard_words[start : start + width]
        if tuple(window) == phrase:
            return 1.0
        best = max(best, SequenceMatcher(None, " ".join(window), target, autojunk=False).ratio())
    return best
