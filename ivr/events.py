"""Domain events of the IVR: a call entered a tree, answered a prompt, left the tree, left a
voicemail. They carry no wall-clock time (the bus stamps it); ``seconds_in_ivr`` is explicit."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar, Literal

__all__ = [
    "Destination",
    "InputKind",
    "InputOutcome",
    "IvrEntered",
    "IvrEvent",
    "IvrExited",
    "IvrInput",
    "IvrVoicemailRecorded",
]

InputKind = Literal["dtmf", "speech", "none"]
InputOutcome = Literal["accepted", "invalid", "low_confidence", "no_match", "no_input"]
Destination = Literal["queue", "transfer", "voicemail", "callback", "hangup", "abandoned"]


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True, slots=True, kw_only=True)
class IvrEntered:
    """A call started walking an IVR tree."""

    TYPE: ClassVar[str] = "ivr.entered"
    VERSION: ClassVar[int] = 1
    call_id: str
    tree_id: str
    node_id: str
    language: str

    def __post_init__(self) -> None:
        _require(bool(self.call_id), "call_id must not be empty")
        _require(bool(self.tree_id), "tree_id must not be empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class IvrInput:
    """The caller answered a prompt (keys, or speech with its confidence), or stayed silent."""

    TYPE: ClassVar[str] = "ivr.input"
    VERSION: ClassVar[int] = 1
    call_id: str
    tree_id: str
    node_id: str
    kind: InputKind
    digits: str | None = None
    speech: str | None = None
    confidence: float | None = None
    outcome: InputOutcome
    #: 1 for the first answer at this node, 2 after one invalid answer or silence, ...
    attempt: int

    def __post_init__(self) -> None:
        _require(bool(self.call_id), "call_id must not be empty")
        _require((self.kind == "dtmf") == (self.digits is not None), "digits go with kind dtmf")
        _require(
            (self.kind == "speech") == (self.speech is not None), "speech goes with kind speech"
        )
        if self.confidence is not None:
            _require(
                math.isfinite(self.confidence) and 0.0 <= self.confidence <= 1.0,
                f"confidence must be within 0..1, got {self.confidence}",
            )
        _require(self.attempt >= 1, f"attempt must be >= 1, got {self.attempt}")


@dataclass(frozen=True, slots=True, kw_only=True)
class IvrVoicemailRecorded:
    """The caller left a message; the recording is stored under ``recording_id``."""

    TYPE: ClassVar[str] = "ivr.voicemail_recorded"
    VERSION: ClassVar[int] = 1
    call_id: str
    tree_id: str
    node_id: str
    mailbox: str
    recording_id: str
    duration_seconds: float
    variables: Mapping[str, str] = field(default_factory=_empty)

    def __post_init__(self) -> None:
        _require(bool(self.call_id), "call_id must not be empty")
        _require(
            math.isfinite(self.duration_seconds) and self.duration_seconds >= 0,
            f"duration_seconds must be >= 0, got {self.duration_seconds}",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class IvrExited:
    """A call left the tree: to a queue, a transfer, voicemail, a callback, or it ended."""

    TYPE: ClassVar[str] = "ivr.exited"
    VERSION: ClassVar[int] = 1
    call_id: str
    tree_id: str
    node_id: str
    destination: Destination
    #: Queue id, transfer target, mailbox, callback queue, or hang-up reason.
    target: str
    #: Nodes visited, in order.
    route: tuple[str, ...]
    variables: Mapping[str, str] = field(default_factory=_empty)
    seconds_in_ivr: float

    def __post_init__(self) -> None:
        _require(bool(self.call_id), "call_id must not be empty")
        _require(
            math.isfinite(self.seconds_in_ivr) and self.seconds_in_ivr >= 0,
            f"seconds_in_ivr must be >= 0, got {self.seconds_in_ivr}",
        )


IvrEvent = IvrEntered | IvrInput | IvrVoicemailRecorded | IvrExited
