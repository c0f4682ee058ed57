"""Events the speech layer reports: what a caller said, or that they said nothing usable."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from speech.recognizer import PhraseMatch, RecognitionResult

__all__ = ["SpeechError", "SpeechNoInput", "SpeechNoMatch", "SpeechTranscript"]


def _check_call_id(call_id: str) -> None:
    if not call_id:
        raise ValueError("call_id must not be empty")


def _check_confidence(what: str, value: float) -> None:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{what} must be within 0..1, got {value}")


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechTranscript:
    """A caller's utterance was transcribed."""

    TYPE: ClassVar[str] = "speech.transcript"
    VERSION: ClassVar[int] = 1
    call_id: str
    text: str
    confidence: float
    """Confidence in ``text``, 0..1."""
    alternatives: tuple[str, ...] = ()
    """Other N-best transcriptions, best first."""
    alternative_confidences: tuple[float, ...] = ()
    """Confidence (0..1) of each entry of ``alternatives``, in the same order."""
    engine: str

    def __post_init__(self) -> None:
        _check_call_id(self.call_id)
        _check_confidence("confidence", self.confidence)
        if len(self.alternatives) != len(self.alternative_confidences):
            raise ValueError(
                f"{len(self.alternatives)} alternatives but "
                f"{len(self.alternative_confidences)} alternative confidences"
            )
        for value in self.alternative_confidences:
            _check_confidence("alternative confidence", value)
        if not self.engine:
            raise ValueError("engine must not be empty")

    @classmethod
    def from_result(cls, *, call_id: str, result: RecognitionResult) -> SpeechTranscript:
        """The event for a final recognition result."""
        return cls(
            call_id=call_id,
            text=result.text,
            confidence=result.confidence,
            alternatives=tuple(h.text for h in result.alternatives),
            alternative_confidences=tuple(h.confidence for h in result.alternatives),
            engine=result.engine,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechNoInput:
    """The caller said nothing before the prompt's no-input timeout."""

    TYPE: ClassVar[str] = "speech.no_input"
    VERSION: ClassVar[int] = 1
    call_id: str
    waited_seconds: float
    """Time listened without hearing speech, in seconds."""

    def __post_init__(self) -> None:
        _check_call_id(self.call_id)
        if not (math.isfinite(self.waited_seconds) and self.waited_seconds >= 0):
            raise ValueError(f"waited_seconds must be >= 0, got {self.waited_seconds}")


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechNoMatch:
    """The caller spoke, but what they said was rejected as none of the prompt's choices."""

    TYPE: ClassVar[str] = "speech.no_match"
    VERSION: ClassVar[int] = 1
    call_id: str
    text: str
    """What was heard (may be empty)."""
    confidence: float
    """Score of the closest choice, 0..1 (0 when nothing was close)."""
    reason: str
    """Why it was rejected: ``empty``, ``out_of_grammar``, ``low_confidence`` or ``ambiguous``."""
    engine: str

    def __post_init__(self) -> None:
        _check_call_id(self.call_id)
        _check_confidence("confidence", self.confidence)
        if not self.reason:
            raise ValueError("reason must not be empty")
        if not self.engine:
            raise ValueError("engine must not be empty")

    @classmethod
    def from_match(cls, *, call_id: str, match: PhraseMatch, engine: str) -> SpeechNoMatch:
        """The event for a rejected phrase match."""
        if match.reason is None:
            raise ValueError(f"phrase match chose {match.choice!r}: it is not a no-match")
        return cls(
            call_id=call_id,
            text=match.heard,
            confidence=match.score,
            reason=match.reason.value,
            engine=engine,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechError:
    """Recognition failed for this utterance (engine error, worker crash, overload); the IVR
    carries on with its fallback (DTMF or the no-match branch)."""

    TYPE: ClassVar[str] = "speech.error"
    VERSION: ClassVar[int] = 1
    call_id: str
    engine: str
    reason: str
    """What went wrong, for the operator (e.g. ``worker process exited with code -9``)."""

    def __post_init__(self) -> None:
        _check_call_id(self.call_id)
        if not self.engine:
            raise ValueError("engine must not be empty")
        if not self.reason:
            raise ValueError("reason must not be empty")
