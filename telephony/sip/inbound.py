"""The state of one inbound call leg at the UAS (a caller's INVITE from a trunk), RFC 3261 §13.3.

Every transition is listed in one table; anything else is a bug and raises. The dialog state that
in-dialog requests need (tags, remote target, route set, CSeq) is kept beside the call state.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from telephony.sip.message import SipRequest
from telephony.sip.transaction_types import Address, ServerTransactionId
from telephony.sip.uri import NameAddr


class LegState(enum.Enum):
    OFFERED = "offered"  # INVITE received, nothing but 100 sent
    RINGING = "ringing"  # 180 sent (early dialog, §13.3.1.1)
    ANSWERED = "answered"  # 200 sent, waiting for the ACK (§13.3.1.4)
    CONFIRMED = "confirmed"  # ACK received: the call is up
    ENDING = "ending"  # our BYE sent, waiting for its response
    ENDED = "ended"


class LegInput(enum.Enum):
    RING = "ring"
    ANSWER = "answer"
    ACK = "ack"
    REJECT = "reject"  # final non-2xx from us before answer
    CANCELLED = "cancelled"  # caller's CANCEL (§9.2)
    BYE_RECEIVED = "bye received"
    HANGUP = "hangup"  # we send BYE
    BYE_ANSWERED = "bye answered"
    ACK_TIMEOUT = "ack timeout"


_TRANSITIONS: dict[tuple[LegState, LegInput], LegState] = {
    (LegState.OFFERED, LegInput.RING): LegState.RINGING,
    (LegState.OFFERED, LegInput.ANSWER): LegState.ANSWERED,
    (LegState.OFFERED, LegInput.REJECT): LegState.ENDED,
    (LegState.OFFERED, LegInput.CANCELLED): LegState.ENDED,
    (LegState.RINGING, LegInput.RING): LegState.RINGING,
    (LegState.RINGING, LegInput.ANSWER): LegState.ANSWERED,
    (LegState.RINGING, LegInput.REJECT): LegState.ENDED,
    (LegState.RINGING, LegInput.CANCELLED): LegState.ENDED,
    (LegState.ANSWERED, LegInput.ACK): LegState.CONFIRMED,
    # §15: a BYE may arrive before our 2xx was acknowledged; it ends the call all the same.
    (LegState.ANSWERED, LegInput.BYE_RECEIVED): LegState.ENDED,
    (LegState.ANSWERED, LegInput.ACK_TIMEOUT): LegState.ENDING,
    (LegState.ANSWERED, LegInput.HANGUP): LegState.ENDING,
    (LegState.CONFIRMED, LegInput.ACK): LegState.CONFIRMED,
    (LegState.CONFIRMED, LegInput.BYE_RECEIVED): LegState.ENDED,
    (LegState.CONFIRMED, LegInput.HANGUP): LegState.ENDING,
    (LegState.ENDING, LegInput.BYE_ANSWERED): LegState.ENDED,
    # Both sides hung up at once: their BYE is answered and ours will be too (or time out).
    (LegState.ENDING, LegInput.BYE_RECEIVED): LegState.ENDING,
    (LegState.ENDING, LegInput.ACK): LegState.ENDING,
}


class IllegalLegTransitionError(Exception):
    def __init__(self, state: LegState, event: LegInput) -> None:
        super().__init__(f"inbound leg: no transition for {event.value} in state {state.value}")


@dataclass(slots=True, kw_only=True)
class InboundLeg:
    """One caller's call as the server (UAS) sees it."""

    call_id: str  # our id for the call, used in events and the call API
    sip_call_id: str
    local_tag: str
    remote_tag: str | None
    #: The caller's From/To header values as received; our requests reverse them (§12.2.1.1).
    remote_uri_header: str
    local_uri_header: str
    remote_target: str  # Contact of the INVITE (§12.1.1)
    route_set: tuple[str, ...]  # Record-Route of the INVITE, in order (§12.1.1)
    remote_cseq: int
    source: Address
    transport: str
    trunk_id: str
    did: str
    invite_transaction: ServerTransactionId
    started_at: float
    offer: bytes
    invite: SipRequest
    local_contact: str = ""  # our Contact header value for this dialog
    local_host: str = "127.0.0.1"  # our address as the caller reaches it: for SDP and Via
    state: LegState = LegState.OFFERED
    local_cseq: int = field(default=1)
    answered_at: float | None = None
    ended_at: float | None = None
    local_sdp: bytes = b""
    reinvite_pending: bool = False

    def apply(self, event: LegInput) -> LegState:
        try:
            self.state = _TRANSITIONS[(self.state, event)]
        except KeyError:
            raise IllegalLegTransitionError(self.state, event) from None
        return self.state

    def can(self, event: LegInput) -> bool:
        return (self.state, event) in _TRANSITIONS

    def next_local_cseq(self) -> int:
        # §12.2.1.1: the local sequence number goes up by one for each new in-dialog request.
        self.local_cseq += 1
        return self.local_cseq

    def bye_request(self, extra: list[tuple[str, str]]) -> SipRequest:
        """Our BYE in this dialog (§15.1.1), built as §12.2.1.1 says: our tag in From, theirs
        in To, the remote target as Request-URI, the route set as Route, the next CSeq."""
        request = SipRequest(method="BYE", uri=self.remote_target)
        headers = request.headers
        headers.add("Max-Forwards", "70")
        headers.add("From", _with_tag(self.local_uri_header, self.local_tag))
        headers.add("To", self.remote_uri_header)
        headers.add("Call-ID", self.sip_call_id)
        headers.add("CSeq", f"{self.next_local_cseq()} BYE")
        # The UAS uses the route set in the order received in Record-Route (§12.1.1).
        for route in self.route_set:
            headers.add("Route", route)
        for name, value in extra:
            headers.add(name, value)
        return request


def _with_tag(header: str, tag: str) -> str:
    return header if NameAddr.parse(header).tag is not None else f"{header};tag={tag}"
