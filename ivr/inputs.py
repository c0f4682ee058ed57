"""What the runner tells an IVR session: the call started, the caller pressed or said something,
a prompt finished, a lookup or a recording completed, the caller hung up.

Timers are not inputs: the session exposes its deadline with ``next_timer()`` and is woken with
``handle_timer(now)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from config.ivr.schema import DTMF_KEYS

__all__ = [
    "CallStarted",
    "CallerHungUp",
    "CrmLookupResult",
    "DigitsReceived",
    "IvrInput",
    "NoInput",
    "NoMatch",
    "PromptFinished",
    "RecordingFinished",
    "SpeechRecognized",
]


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStarted:
    """The call entered the tree. ``started_at`` is the wall-clock time (timezone-aware) at
    that moment; conditions on days and hours are evaluated from it."""

    caller_id: str
    dialed_number: str
    started_at: datetime
    variables: Mapping[str, str] = field(default_factory=_empty)

    def __post_init__(self) -> None:
        if self.started_at.tzinfo is None:
            raise ValueError("started_at must carry a time zone")


@dataclass(frozen=True, slots=True, kw_only=True)
class DigitsReceived:
    """One or more keys, in the order pressed (RFC 4733 telephone-events or in-band)."""

    digits: str

    def __post_init__(self) -> None:
        if not self.digits or any(key not in DTMF_KEYS for key in self.digits):
            raise ValueError(f"{self.digits!r} is not a sequence of keys 0-9, * and #")


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechRecognized:
    """The recognizer's final result: best text, its confidence (0..1), then other hypotheses."""

    text: str
    confidence: float
    alternatives: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        for value in (self.confidence, *(c for _t, c in self.alternatives)):
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"confidence must be within 0..1, got {value}")


@dataclass(frozen=True, slots=True, kw_only=True)
class NoInput:
    """The speech layer heard nothing before its no-input timeout."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NoMatch:
    """The speech layer heard something it could not recognize."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptFinished:
    """The prompt of the ``Play`` action with this ``play_id`` ended (played out or stopped)."""

    play_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CrmLookupResult:
    """Answer to the ``CrmLookup`` action with this ``lookup_id``."""

    lookup_id: int
    found: bool
    fields: Mapping[str, str] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingFinished:
    """The voicemail of the ``RecordVoicemail`` action with this ``record_id`` was saved."""

    record_id: int
    recording_id: str
    duration_seconds: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.duration_seconds) and self.duration_seconds >= 0):
            raise ValueError(f"duration_seconds must be >= 0, got {self.duration_seconds}")


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerHungUp:
    """The caller left while in the tree."""


IvrInput = (
    CallStarted
    | DigitsReceived
    | SpeechRecognized
    | NoInput
    | NoMatch
    | PromptFinished
    | CrmLookupResult
    | RecordingFinished
    | CallerHungUp
)
