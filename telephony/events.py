"""What the telephony layer reports about calls and registrations.

Events carry no wall-clock time (the bus stamps it); durations are given where a figure needs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

#: Who ended a call: the caller/trunk side, the agent side, or the server itself.
HangupParty = Literal["caller", "callee", "server"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStarted:
    """A call arrived from a trunk and was accepted for handling (RFC 3261 INVITE received)."""

    TYPE: ClassVar[str] = "call.started"
    VERSION: ClassVar[int] = 1
    call_id: str
    trunk_id: str
    did: str
    caller_id: str
    caller_name: str
    sip_call_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRinging:
    TYPE: ClassVar[str] = "call.ringing"
    VERSION: ClassVar[int] = 1
    call_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallAnswered:
    """The server answered the call (200 OK with SDP sent and acknowledged)."""

    TYPE: ClassVar[str] = "call.answered"
    VERSION: ClassVar[int] = 1
    call_id: str
    codec: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRejected:
    """An INVITE was refused before a call existed (no trunk, no route, no common codec...)."""

    TYPE: ClassVar[str] = "call.rejected"
    VERSION: ClassVar[int] = 1
    sip_call_id: str
    status: int
    reason: str
    source: str

    def __post_init__(self) -> None:
        if not 300 <= self.status <= 699:
            raise ValueError(f"a rejection is a final non-2xx status, not {self.status}")


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded:
    TYPE: ClassVar[str] = "call.ended"
    VERSION: ClassVar[int] = 1
    call_id: str
    #: ``normal`` (BYE), ``cancelled`` (caller gave up before answer), ``timeout`` (no ACK / no
    #: answer), ``rejected``, ``shutdown`` (server stopping), ``error``.
    cause: str
    hangup_by: HangupParty
    duration_seconds: float
    talk_seconds: float

    def __post_init__(self) -> None:
        if self.duration_seconds < 0 or self.talk_seconds < 0:
            raise ValueError("durations cannot be negative")
