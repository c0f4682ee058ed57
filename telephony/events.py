"""What the telephony layer reports about calls and registrations.

Events carry no wall-clock time (the bus stamps it); durations are given where a figure needs them.
"""

from __future__ import annotations

import enum
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
    """An agent's softphone rings for a call (180/183 received on the leg the server placed)."""

    TYPE: ClassVar[str] = "call.ringing"
    VERSION: ClassVar[int] = 1
    call_id: str
    leg_id: str
    sip_user: str


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


class RingFailure(enum.StrEnum):
    """Why ringing an agent's softphone did not connect: the outcome names the ACD uses for a
    failed offer (telephony keeps its own copy of them; it imports nothing above it)."""

    NO_ANSWER = "no_answer"  # ring timeout (our CANCEL), or 408 from the phone
    REJECTED = "rejected"  # 603 Decline and other refusals
    BUSY = "busy"  # 486 Busy Here, 600 Busy Everywhere
    UNREGISTERED = "unregistered"  # no live binding, 404/410/480, or the phone is unreachable


#: Who put a call on hold or took it off hold: the agent's phone (re-INVITE with a=sendonly or
#: a=inactive, RFC 3264 §8.4), the caller's side, or the server through the call API.
HoldParty = Literal["agent", "caller", "server"]
TransferKind = Literal["blind", "server", "attended"]


def _check_ids(call_id: str, leg_id: str) -> None:
    if not call_id or not leg_id:
        raise ValueError("call_id and leg_id must not be empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentLegAnswered:
    """An agent's softphone answered the call the server placed to it (200 OK, ACK sent)."""

    TYPE: ClassVar[str] = "call.agent_answered"
    VERSION: ClassVar[int] = 1
    call_id: str  # the call the agent leg serves (the caller's call, or the leg itself)
    leg_id: str
    sip_user: str
    codec: str
    ring_seconds: float

    def __post_init__(self) -> None:
        _check_ids(self.call_id, self.leg_id)
        if self.ring_seconds < 0:
            raise ValueError("ring_seconds cannot be negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentLegFailed:
    """Ringing an agent ended without an answer; `status` is the final SIP status that decided
    it (None when no request was sent, or the ring timed out before any final response)."""

    TYPE: ClassVar[str] = "call.agent_failed"
    VERSION: ClassVar[int] = 1
    call_id: str
    leg_id: str
    sip_user: str
    reason: RingFailure
    status: int | None
    ring_seconds: float

    def __post_init__(self) -> None:
        _check_ids(self.call_id, self.leg_id)
        if self.status is not None and not 300 <= self.status <= 699:
            raise ValueError(f"a failed ring ends with a final non-2xx status, not {self.status}")
        if self.ring_seconds < 0:
            raise ValueError("ring_seconds cannot be negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentLegEnded:
    """An agent leg ended: after its answer (BYE either way), or when the server stopped
    ringing it (`cause` ``cancelled``)."""

    TYPE: ClassVar[str] = "call.agent_ended"
    VERSION: ClassVar[int] = 1
    call_id: str
    leg_id: str
    sip_user: str
    #: ``normal`` (BYE), ``cancelled`` (the server stopped ringing), ``error`` (the phone lost
    #: the dialog: 481/408 to a request in it).
    cause: str
    hangup_by: HangupParty
    talk_seconds: float

    def __post_init__(self) -> None:
        _check_ids(self.call_id, self.leg_id)
        if self.talk_seconds < 0:
            raise ValueError("talk_seconds cannot be negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class CallHeld:
    """A call was put on hold; `leg_id` names the leg whose side asked for it."""

    TYPE: ClassVar[str] = "call.held"
    VERSION: ClassVar[int] = 1
    call_id: str
    leg_id: str
    held_by: HoldParty

    def __post_init__(self) -> None:
        _check_ids(self.call_id, self.leg_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallResumed:
    """A call on hold was taken off hold."""

    TYPE: ClassVar[str] = "call.resumed"
    VERSION: ClassVar[int] = 1
    call_id: str
    leg_id: str
    held_by: HoldParty

    def __post_init__(self) -> None:
        _check_ids(self.call_id, self.leg_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallTransferred:
    """A transfer of the caller ended: to the agent (or number) `target`, away from the agent
    leg `from_leg_id`. ``blind`` came from the agent's phone (REFER, RFC 3515), ``server`` from
    the call API. When `succeeded` is False, `reason` says why and the caller stays where they
    were."""

    TYPE: ClassVar[str] = "call.transferred"
    VERSION: ClassVar[int] = 1
    call_id: str
    kind: TransferKind
    target: str
    from_leg_id: str | None
    to_leg_id: str | None
    succeeded: bool
    reason: str = ""

    def __post_init__(self) -> None:
        if not self.call_id or not self.target:
            raise ValueError("call_id and target must not be empty")
        if self.succeeded and self.to_leg_id is None:
            raise ValueError("a completed transfer names the leg that took the call")
