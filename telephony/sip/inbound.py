"""The state of one inbound call leg at the UAS (a caller's INVITE from a trunk), RFC 3261 §13.3.

Every transition is listed in one table; anything else is a bug and raises. The dialog state that
in-dialog requests need (tags, remote target, route set, CSeq) is kept beside the call state.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from config.settings import EntryPoint
from telephony.events import CallEnded, CallStarted, HangupParty
from telephony.sip.core_types import IncomingCall
from telephony.sip.errors import SipParseError
from telephony.sip.message import SipRequest
from telephony.sip.transaction_types import Address, RequestReceived, ServerTransactionId
from telephony.sip.uri import NameAddr, SipUri


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

    @classmethod
    def from_invite(
        cls,
        event: RequestReceived,
        *,
        call_id: str,
        local_tag: str,
        remote_target: str,
        trunk_id: str,
        did: str,
        now: float,
        local: Address | None,
        public_address: str | None,
    ) -> InboundLeg:
        """The leg of a new INVITE, with the dialog state §12.1.1 takes from it. `local` is the
        socket address the INVITE reached, `public_address` the host to show instead (NAT)."""
        request = event.request
        return cls(
            call_id=call_id,
            sip_call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_.tag,
            remote_uri_header=request.headers.get("From") or "",
            local_uri_header=request.headers.get("To") or "",
            remote_target=remote_target,
            route_set=tuple(request.headers.get_all("Record-Route")),
            remote_cseq=request.cseq.number,
            source=event.source,
            transport=event.transport,
            trunk_id=trunk_id,
            did=did,
            invite_transaction=event.transaction,
            started_at=now,
            offer=request.body,
            invite=request,
            local_contact=contact_header(did, local, event.transport, public_address),
            local_host=public_address or (local[0] if local else "127.0.0.1"),
        )

    def announcements(self, entry: EntryPoint) -> tuple[CallStarted, IncomingCall]:
        """What makes the new call known: `CallStarted` for the record, `IncomingCall` for the
        layer that rings, answers or rejects it (by the dial plan's `entry`)."""
        caller = self.invite.from_
        return (
            CallStarted(
                call_id=self.call_id,
                trunk_id=self.trunk_id,
                did=self.did,
                caller_id=caller.uri.user or "",
                caller_name=caller.display_name or "",
                sip_call_id=self.sip_call_id,
            ),
            IncomingCall(
                call_id=self.call_id,
                did=self.did,
                trunk_id=self.trunk_id,
                offer=self.offer,
                entry_ivr=entry.ivr,
                entry_queue=entry.queue,
                answer_after=entry.answer_after,
            ),
        )

    def apply(self, event: LegInput) -> LegState:
        try:
            self.state = _TRANSITIONS[(self.state, event)]
        except KeyError:
            raise IllegalLegTransitionError(self.state, event) from None
        return self.state

    def end(self, cause: str, by: HangupParty, now: float) -> CallEnded | None:
        """The leg's `CallEnded`, once: None when it was already reported."""
        if self.ended_at is not None:
            return None
        self.ended_at = now
        talk = now - self.answered_at if self.answered_at is not None else 0.0
        return CallEnded(
            call_id=self.call_id,
            cause=cause,
            hangup_by=by,
            duration_seconds=max(0.0, now - self.started_at),
            talk_seconds=max(0.0, talk),
        )

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


@dataclass(slots=True)
class InboundLegs:
    """The inbound legs in progress: by our call id, by dialog (Call-ID, our tag) and by INVITE
    server transaction, each found in one dictionary look-up.

    A leg is forgotten as soon as it ends, so the table holds the calls in progress and nothing
    more: its size, and the cost of asking which calls are up, never grows with uptime. Late
    messages of a forgotten call still get their answers elsewhere: retransmissions of a request
    already answered are absorbed by its server transaction (RFC 3261 §17.2.1, §17.2.2), a late
    ACK for our 2xx has nothing left to confirm, and a new request in the dialog is answered 481
    (§12.2.2), which is right for a dialog that no longer exists.
    """

    _by_call: dict[str, InboundLeg] = field(default_factory=dict)
    _by_dialog: dict[tuple[str, str], InboundLeg] = field(default_factory=dict)
    _by_invite: dict[ServerTransactionId, InboundLeg] = field(default_factory=dict)

    def add(self, leg: InboundLeg) -> None:
        self._by_call[leg.call_id] = leg
        self._by_dialog[(leg.sip_call_id, leg.local_tag)] = leg
        self._by_invite[leg.invite_transaction] = leg

    def forget(self, leg: InboundLeg) -> None:
        self._by_call.pop(leg.call_id, None)
        self._by_dialog.pop((leg.sip_call_id, leg.local_tag), None)
        self._by_invite.pop(leg.invite_transaction, None)

    def get(self, call_id: str) -> InboundLeg | None:
        return self._by_call.get(call_id)

    def in_dialog(self, sip_call_id: str, local_tag: str) -> InboundLeg | None:
        return self._by_dialog.get((sip_call_id, local_tag))

    def of_invite(self, transaction: ServerTransactionId) -> InboundLeg | None:
        return self._by_invite.get(transaction)

    def call_ids(self) -> list[str]:
        return list(self._by_call)

    def __len__(self) -> int:
        return len(self._by_call)


def _with_tag(header: str, tag: str) -> str:
    return header if NameAddr.parse(header).tag is not None else f"{header};tag={tag}"


def remote_target_of(invite: SipRequest) -> str:
    """The remote target of the dialog an INVITE creates: its Contact URI, else its Request-URI
    (§12.1.1). Raises `SipParseError` when the Contact, or the From the call is recorded with,
    does not parse."""
    _ = invite.from_  # parsed here, so that a bad From refuses the call up front
    contact = invite.headers.get("Contact")
    return str(NameAddr.parse(contact).uri) if contact else invite.uri


def dialled_number(uri: str) -> str:
    """The user part of an INVITE's Request-URI: the number the caller dialled (DID)."""
    try:
        parsed = SipUri.parse(uri)
    except SipParseError:
        return ""
    return parsed.user or ""


def contact_header(user: str, local: Address | None, transport: str, public: str | None) -> str:
    """Our Contact for a dialog with a caller: the address the INVITE reached (or `public`
    when we are behind NAT), with transport=tcp over TCP so in-dialog requests come back on it."""
    host, port = local if local is not None else ("127.0.0.1", 5060)
    host = public or host
    host_text = f"[{host}]" if ":" in host else host
    uri = SipUri(scheme="sip", user=user or None, host=host_text, port=port)
    suffix = ";transport=tcp" if transport == "tcp" else ""
    return f"<{uri}{suffix}>"
