"""What the telephony layer reports about calls and registrations.

Events carry no wall-clock time (the bus stamps it); durations are given where a figure needs them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, Literal

from telephony.media.mix import MonitorMode

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
class AgentCallStarted:
    """An agent's softphone placed a call to the server: an INVITE from an address no trunk
    covers, authenticated with the credentials of `sip_user` (RFC 3261 §22.3). `dialled` is the
    user part of its Request-URI (a feature code, an extension or a number to call out)."""

    TYPE: ClassVar[str] = "call.agent_started"
    VERSION: ClassVar[int] = 1
    call_id: str
    sip_user: str
    dialled: str
    sip_call_id: str
    source: str


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


class CallOutFailure(enum.StrEnum):
    """Why a call out through a trunk did not connect."""

    NO_ANSWER = "no_answer"  # ring timeout (our CANCEL), 408 or 480 from the far end
    BUSY = "busy"  # 486 Busy Here, 600 Busy Everywhere
    REJECTED = "rejected"  # 603 Decline, 404 and other refusals of the number
    UNREACHABLE = "unreachable"  # no response at all, 503, or the carrier's address failed
    AUTH_FAILED = "auth_failed"  # the carrier refused our credentials (RFC 3261 §22.2)
    NO_CAPACITY = "no_capacity"  # no trunk, the trunk's max_calls reached, or no RTP port


def _check_trunk_leg(call_id: str, leg_id: str, number: str) -> None:
    _check_ids(call_id, leg_id)
    if not number:
        raise ValueError("number must not be empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrunkLegRinging:
    """A call out through a trunk rings at the far end (180/183 received)."""

    TYPE: ClassVar[str] = "call.trunk_ringing"
    VERSION: ClassVar[int] = 1
    call_id: str  # the call the leg serves (the caller's call, a callback, or the leg itself)
    leg_id: str
    trunk_id: str
    number: str

    def __post_init__(self) -> None:
        _check_trunk_leg(self.call_id, self.leg_id, self.number)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrunkLegAnswered:
    """The number called out through a trunk answered (200 OK, ACK sent)."""

    TYPE: ClassVar[str] = "call.trunk_answered"
    VERSION: ClassVar[int] = 1
    call_id: str
    leg_id: str
    trunk_id: str
    number: str
    codec: str
    ring_seconds: float

    def __post_init__(self) -> None:
        _check_trunk_leg(self.call_id, self.leg_id, self.number)
        if self.ring_seconds < 0:
            raise ValueError("ring_seconds cannot be negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrunkLegFailed:
    """A call out through a trunk ended without an answer; `status` is the final SIP status
    that decided it (None when no request was sent or nothing answered)."""

    TYPE: ClassVar[str] = "call.trunk_failed"
    VERSION: ClassVar[int] = 1
    call_id: str
    leg_id: str
    trunk_id: str
    number: str
    reason: CallOutFailure
    status: int | None
    ring_seconds: float

    def __post_init__(self) -> None:
        _check_trunk_leg(self.call_id, self.leg_id, self.number)
        if self.status is not None and not 300 <= self.status <= 699:
            raise ValueError(f"a failed call ends with a final non-2xx status, not {self.status}")
        if self.ring_seconds < 0:
            raise ValueError("ring_seconds cannot be negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrunkLegEnded:
    """An answered call out through a trunk ended (BYE either way, or the dialog was lost)."""

    TYPE: ClassVar[str] = "call.trunk_ended"
    VERSION: ClassVar[int] = 1
    call_id: str
    leg_id: str
    trunk_id: str
    number: str
    #: ``normal`` (BYE), ``cancelled`` (the server stopped ringing), ``error`` (481/408 to a
    #: request in the dialog).
    cause: str
    hangup_by: HangupParty
    talk_seconds: float

    def __post_init__(self) -> None:
        _check_trunk_leg(self.call_id, self.leg_id, self.number)
        if self.talk_seconds < 0:
            raise ValueError("talk_seconds cannot be negative")


#: Why a supervisor left a monitored call: their phone hung up, the caller's call ended, the agent
#: left the caller (hung up; at a transfer the supervisor follows the caller to the new agent), or
#: the server ended it through the call API.
MonitorEnd = Literal["supervisor", "call_ended", "agent_left", "server"]
#: Why monitoring never started: the supervisor's phone did not answer (a `RingFailure`), or the
#: call ended or lost its agent while that phone rang.
MonitorFailure = Literal[
    "no_answer", "rejected", "busy", "unregistered", "call_ended", "agent_left"
]


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorStarted:
    """A supervisor's phone (`sip_user`, on the leg `leg_id` the server placed to it) answered
    and joined the call in `mode`: ``listen`` (hears both, heard by nobody), ``whisper`` (the
    agent hears the supervisor, the caller does not) or ``barge`` (everyone hears everyone)."""

    TYPE: ClassVar[str] = "call.monitor_started"
    VERSION: ClassVar[int] = 1
    call_id: str
    leg_id: str
    sip_user: str
    mode: MonitorMode

    def __post_init__(self) -> None:
        _check_ids(self.call_id, self.leg_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorModeChanged:
    """The supervisor on the call moved from `previous_mode` to `mode`."""

    TYPE: ClassVar[str] = "call.monitor_changed"
    VERSION: ClassVar[int] = 1
    call_id: str
    leg_id: str
    mode: MonitorMode
    previous_mode: MonitorMode

    def __post_init__(self) -> None:
        _check_ids(self.call_id, self.leg_id)
        if self.mode == self.previous_mode:
            raise ValueError("a mode change changes the mode")


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorEnded:
    """The supervisor left the call; their phone's leg is hung up (BYE) unless they did."""

    TYPE: ClassVar[str] = "call.monitor_ended"
    VERSION: ClassVar[int] = 1
    call_id: str
    leg_id: str
    sip_user: str
    mode: MonitorMode
    """The mode at the end."""
    reason: MonitorEnd
    monitor_seconds: float

    def __post_init__(self) -> None:
        _check_ids(self.call_id, self.leg_id)
        if self.monitor_seconds < 0:
            raise ValueError("monitor_seconds cannot be negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorFailed:
    """Monitoring asked for did not start: the supervisor's phone rang without joining."""

    TYPE: ClassVar[str] = "call.monitor_failed"
    VERSION: ClassVar[int] = 1
    call_id: str
    sip_user: str
    mode: MonitorMode
    reason: MonitorFailure

    def __post_init__(self) -> None:
        if not self.call_id or not self.sip_user:
            raise ValueError("call_id and sip_user must not be empty")
