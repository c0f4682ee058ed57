"""The SIP user agent core of the server (RFC 3261 §8.2, §10, §12–§15): sans-IO.

It sits on the transaction layer as its transaction user. Bytes come in with their source and
``now``; what must go out is collected as `Transmit`s, what happened as events. Inbound calls from
trunks are answered here at the signalling level; the decision to ring, answer or reject a call is
taken above (the telephony service), through `ring`, `answer`, `reject` and `hangup`.
Calls the server places to agents' softphones are the `Originator`'s (`originate.py`); the core
hands it the messages of those legs; the service calls it (`core.outbound`) to place them.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from config.settings import Dialplan
from telephony.events import CallAnswered, CallRejected, HangupParty
from telephony.sip.admission import Refusal, admit_invite, within_limits
from telephony.sip.agent_auth import AgentCallAuth
from telephony.sip.checks import CAPABILITIES, drop_foreign_credentials, inspect_request
from telephony.sip.core_types import (
    CoreCounters,
    CoreSettings,
    IncomingCall,
    LocalAddresses,
)
from telephony.sip.dialog_checks import MergedRequestDetector
from telephony.sip.errors import SipParseError
from telephony.sip.guard import SourceGuard
from telephony.sip.inbound import (
    InboundLeg,
    InboundLegs,
    LegInput,
    LegState,
)
from telephony.sip.inbound_reoffer import answer_inbound_reoffer
from telephony.sip.malformed import (
    check_stream_framing,
    refusal,
    salvage_request,
    stamp_received,
)
from telephony.sip.message import SipRequest, build_response, parse_message
from telephony.sip.originate import Originator
from telephony.sip.outbound_ringing import codec_of
from telephony.sip.registrar import Registrar
from telephony.sip.timers import is_reliable
from telephony.sip.transaction import TransactionLayer
from telephony.sip.transaction_types import (
    AckReceived,
    AckTimeout,
    Address,
    InviteCancelled,
    RequestReceived,
    ResponseReceived,
    ServerTransportError,
    Transmit,
    TuEvent,
)
from telephony.sip.trunk_auth import TrunkAuthenticator
from telephony.sip.uri import NameAddr
from telephony.trunks import TrunkTable

__all__ = ["CoreCounters", "CoreSettings", "IncomingCall", "SipCore"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class SipCore:
    """The transaction user of one node: requests in, answers and call events out."""

    settings: CoreSettings
    transactions: TransactionLayer
    trunks: TrunkTable
    dialplan: Dialplan
    registrar: Registrar
    guard: SourceGuard
    new_id: Callable[[], str] = field(default=lambda: secrets.token_hex(8))
    counters: CoreCounters = field(default_factory=CoreCounters)
    #: Out-of-dialog requests of the last 64*T1, to answer merged copies 482 (§8.2.2.2).
    merged_requests: MergedRequestDetector = field(default_factory=MergedRequestDetector)
    accepting_calls: bool = True
    #: Our address for requests to a phone whose REGISTER this process has not seen.
    default_local: Address | None = None
    outbound: Originator = field(init=False)
    #: Digest checks of INVITEs from trunks with ``inbound_auth`` (per-process nonce key).
    trunk_auth: TrunkAuthenticator = field(
        default_factory=lambda: TrunkAuthenticator(secret=secrets.token_bytes(32))
    )
    register_locals: LocalAddresses = field(default_factory=LocalAddresses)
    #: Digest checks of INVITEs from agents' softphones (None: only trunks may call in).
    agent_auth: AgentCallAuth | None = None
    #: Inbound legs in progress; an ended one is forgotten at once (see `InboundLegs`).
    _legs: InboundLegs = field(default_factory=InboundLegs)
    _events: list[object] = field(default_factory=list)
    _outbox: list[Transmit] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.trunk_auth.guard is None:
            self.trunk_auth.guard = self.guard  # wrong trunk passwords count like REGISTER's
        self.outbound = Originator(
            transactions=self.transactions,
            registrar=self.registrar,
            emit=self._emit,
            new_id=self.new_id,
            local_for=self._local_for,
            user_agent=self.settings.user_agent,
            public_address=self.settings.public_address,
        )

    # ------------------------------------------------------------------ I/O side

    def receive(
        self, data: bytes, source: Address, transport: str, local: Address, now: float
    ) -> None:
        """One datagram or framed stream message from ``source``.

        Never raises for anything a peer can send: what does not parse is answered when it can
        be (see `telephony.sip.malformed`) and otherwise dropped and counted.
        """
        try:
            message = parse_message(data, max_message_size=self.settings.max_message_bytes)
            if is_reliable(transport):
                check_stream_framing(message)
        except SipParseError as exc:
            self._refuse(exc, data, source, transport, now)
            return
        if isinstance(message, SipRequest):
            self.counters.traffic.request_received(message.method)
            if not self._admit(message, source, now):
                return
            stamp_received(message, source)
        else:
            self.counters.traffic.response_received(message.status)
        try:
            events = self.transactions.receive(message, source, transport, now)
        except SipParseError as exc:
            # A header the transaction layer needed (Via, CSeq) is unusable.
            self._refuse(exc, data, source, transport, now)
            return
        self._handle(events, local, now)

    def on_timer(self, now: float) -> None:
        self._handle(self.transactions.on_timer(now), None, now)
        self.outbound.on_timer(now)
        self.registrar.expire(now)
        self._registrar_events()
        self._events.extend(self.guard.expire(now))

    def next_timer(self) -> float | None:
        timers = (
            self.transactions.next_timer(),
            self.registrar.next_timer(),
            self.guard.next_timer(),
            self.outbound.next_timer(),
        )
        candidates = [t for t in timers if t is not None]
        return min(candidates) if candidates else None

    def take_output(self) -> tuple[list[Transmit], list[object]]:
        """What to send and what happened since the last call; both lists are handed over."""
        out = self._outbox + self.transactions.datagrams_to_send()
        events = self._events
        self._outbox = []
        self._events = []
        return out, events

    # ------------------------------------------------------------------ call control (TU side)

    def leg(self, call_id: str) -> InboundLeg | None:
        return self._legs.get(call_id)

    def ring(self, call_id: str, now: float) -> None:
        leg = self._live_leg(call_id)
        if leg.state is LegState.OFFERED:
            leg.apply(LegInput.RING)
            self._respond_invite(leg, 180, now)

    def answer(self, call_id: str, local_sdp: bytes, now: float) -> None:
        leg = self._live_leg(call_id)
        leg.apply(LegInput.ANSWER)
        leg.local_sdp = local_sdp
        leg.answered_at = now
        self._respond_invite(leg, 200, now, body=local_sdp)

    def reject(self, call_id: str, status: int, now: float, reason: str | None = None) -> None:
        leg = self._live_leg(call_id)
        leg.apply(LegInput.REJECT)
        self._respond_invite(leg, status, now, reason=reason)
        self._end(leg, "rejected", "server", now)

    def hangup(self, call_id: str, now: float) -> None:
        """End a call from the server side: BYE once answered, 480 before (§15); an outbound
        leg that still rings is cancelled (§9.1)."""
        if call_id in self.outbound.legs:
            self.outbound.hangup(call_id, now)
            return
        leg = self._legs.get(call_id)
        if leg is None or leg.state in (LegState.ENDING, LegState.ENDED):
            return
        if leg.state in (LegState.OFFERED, LegState.RINGING):
            self.reject(call_id, 480, now)
            return
        leg.apply(LegInput.HANGUP)
        self._send_bye(leg, now)

    def active_calls(self) -> list[str]:
        """The ids of the inbound calls and outbound legs in progress."""
        return self._legs.call_ids() + self.outbound.active()

    def has_active_calls(self) -> bool:
        """Whether any call or leg is in progress; constant time, asked after every message."""
        return len(self._legs) > 0 or self.outbound.has_active()

    # ------------------------------------------------------------------ dispatch

    def _handle(self, events: list[TuEvent], local: Address | None, now: float) -> None:
        for event in events:
            if isinstance(event, RequestReceived):
                self._on_request(event, local, now)
            elif isinstance(event, AckReceived):
                self._on_ack(event, now)
            elif isinstance(event, InviteCancelled):
                self._on_cancelled(event, now)
            elif isinstance(event, ResponseReceived):
                self._on_response(event, now)
            elif isinstance(event, AckTimeout):
                self._on_ack_timeout(event, now)
            elif isinstance(event, ServerTransportError):
                logger.info("could not deliver a response for %s", event.request.call_id)

    def _on_request(self, event: RequestReceived, local: Address | None, now: float) -> None:
        request = event.request
        to_tag = request.to.tag
        reply_tag = to_tag or self.new_id()
        merged = self.merged_requests.check(request, event.transaction, now) is not None
        problem = inspect_request(request, to_tag=reply_tag, merged=merged)
        if problem is not None:
            self.transactions.send_response(event.transaction, problem, now)
            return
        if to_tag is not None:
            self._in_dialog(event, to_tag, now)
            return
        method = request.method
        if method == "OPTIONS":
            self._reply(event, 200, now, to_tag=reply_tag, extra=list(CAPABILITIES))
        elif method == "REGISTER":
            self._on_register(event, local, now)
        elif method == "INVITE":
            self._on_invite(event, local, reply_tag, now)
        else:
            # BYE, INFO, UPDATE, REFER, NOTIFY outside a dialog (§12.2.2).
            self._reply(event, 481, now, to_tag=reply_tag)

    def _on_register(self, event: RequestReceived, local: Address | None, now: float) -> None:
        drop_foreign_credentials(event.request)
        response = self.registrar.handle_register(event.request, event.source, event.transport, now)
        if response.status == 200 and local is not None:
            # Requests to this phone go out from the socket it registered to (outbound legs).
            self.register_locals.remember(event.source, event.transport, local)
        self.transactions.send_response(event.transaction, response, now)
        self._registrar_events()

    def _on_invite(
        self, event: RequestReceived, local: Address | None, tag: str, now: float
    ) -> None:
        decision = admit_invite(
            event.request,
            event.source[0],
            now,
            accepting=self.accepting_calls,
            trunks=self.trunks,
            dialplan=self.dialplan,
            trunk_auth=self.trunk_auth,
            agent_auth=self.agent_auth,
        )
        if isinstance(decision, Refusal):
            self.counters.forbidden += decision.forbidden
            if decision.rejected:
                self._reject_new(event, decision, tag, now)
            else:  # a challenge: the call may come again with credentials
                if not decision.trying:
                    self.transactions.withdraw_trying(event.transaction)
                self._reply(event, decision.status, now, to_tag=tag, extra=list(decision.headers))
                self._events.extend(decision.events)
            return
        leg = InboundLeg.from_invite(
            event,
            call_id=self.new_id(),
            local_tag=tag,
            remote_target=decision.remote_target,
            trunk_id=decision.trunk_id,
            did=decision.did,
            now=now,
            local=local,
            public_address=self.settings.public_address,
        )
        self._legs.add(leg)
        self._events.extend(decision.announcements(leg))

    def _in_dialog(self, event: RequestReceived, to_tag: str, now: float) -> None:
        request = event.request
        leg = self._legs.in_dialog(request.call_id, to_tag)
        if leg is None and self.outbound.on_request(event, now):
            return
        if leg is None or leg.state is LegState.ENDED:
            self._reply(event, 481, now)  # §12.2.2: no such dialog
            return
        cseq = request.cseq.number
        if cseq < leg.remote_cseq or (cseq == leg.remote_cseq and request.method != "ACK"):
            # §12.2.2: a lower CSeq than the last one is out of order.
            self._reply(event, 500, now, extra=[("Retry-After", "1")])
            return
        leg.remote_cseq = cseq
        method = request.method
        if method == "BYE":
            self._reply(event, 200, now)
            if leg.state is not LegState.ENDING:
                leg.apply(LegInput.BYE_RECEIVED)
                self._end(leg, "normal", "caller", now)
        elif method in ("INVITE", "UPDATE"):
            self._on_reoffer(event, leg, now)
        elif method in ("INFO", "OPTIONS", "NOTIFY"):
            self._reply(event, 200, now)
        else:  # REFER: transfers are placed by the call layer; refuse until then (§8.2.1).
            self._reply(event, 603, now)

    def _on_reoffer(self, event: RequestReceived, leg: InboundLeg, now: float) -> None:
        reoffered = answer_inbound_reoffer(
            event, leg, self.transactions, now, server=self._server_header()
        )
        if reoffered is not None:
            self._events.append(reoffered)

    def _on_ack(self, event: AckReceived, now: float) -> None:
        to_tag = event.request.to.tag
        leg = self._legs.in_dialog(event.request.call_id, to_tag or "")
        if leg is None and event.transaction is not None:
            # Matched to our INVITE's transaction by its branch (§17.2.3) but not to the dialog:
            # PyVoIP 1.6 acknowledges our 2xx on the INVITE's branch with a To tag of its own.
            leg = self._legs.of_invite(event.transaction)
            if leg is not None and leg.sip_call_id != event.request.call_id:
                leg = None
        if leg is None or not leg.can(LegInput.ACK):
            return
        first = leg.state is LegState.ANSWERED
        leg.apply(LegInput.ACK)
        if first:
            self._events.append(CallAnswered(call_id=leg.call_id, codec=codec_of(leg.local_sdp)))

    def _on_cancelled(self, event: InviteCancelled, now: float) -> None:
        leg = self._legs.of_invite(event.transaction)
        if leg is not None and leg.can(LegInput.CANCELLED):
            leg.apply(LegInput.CANCELLED)
            self._end(leg, "cancelled", "caller", now)

    def _on_ack_timeout(self, event: AckTimeout, now: float) -> None:
        leg = self._legs.of_invite(event.transaction)
        if leg is not None and leg.state is LegState.ANSWERED:
            # §13.3.1.4: no ACK for our 2xx within 64*T1: the session is ended with BYE.
            leg.apply(LegInput.ACK_TIMEOUT)
            self._send_bye(leg, now)

    def _on_response(self, event: ResponseReceived, now: float) -> None:
        if self.outbound.on_response(event, now):
            return
        if event.request.method != "BYE" or event.retransmission:
            return
        leg = self._legs.in_dialog(event.request.call_id, event.request.from_.tag or "")
        if leg is not None and leg.can(LegInput.BYE_ANSWERED):
            leg.apply(LegInput.BYE_ANSWERED)
            self._end(leg, "normal", "server", now)

    # ------------------------------------------------------------------ helpers

    def _send_bye(self, leg: InboundLeg, now: float) -> None:
        # Sent back where the caller's INVITE came from: symmetric signalling works through NAT
        # even when the Contact holds a private address (RFC 3581's reasoning).
        self.transactions.send_request(
            leg.bye_request(self._user_agent_header()),
            destination=leg.source,
            transport=leg.transport,
            now=now,
            sent_by=self._via_host(leg),
        )

    def _respond_invite(
        self,
        leg: InboundLeg,
        status: int,
        now: float,
        *,
        body: bytes = b"",
        reason: str | None = None,
    ) -> None:
        invite = leg.invite
        extra: list[tuple[str, str]] = []
        if 100 < status < 300:
            # §12.1.1: dialog-creating responses carry Contact and copy Record-Route.
            extra.append(("Contact", leg.local_contact))
            extra.extend(("Record-Route", value) for value in leg.route_set)
        if status == 200:
            extra.extend(CAPABILITIES)
        if body:
            extra.append(("Content-Type", "application/sdp"))
        extra.extend(self._server_header())
        response = build_response(invite, status, reason, to_tag=leg.local_tag, headers=extra)
        response.body = body
        self.transactions.send_response(leg.invite_transaction, response, now)

    def _reply(
        self,
        event: RequestReceived,
        status: int,
        now: float,
        *,
        to_tag: str | None = None,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        response = build_response(
            event.request, status, to_tag=to_tag, headers=[*(extra or []), *self._server_header()]
        )
        self.transactions.send_response(event.transaction, response, now)

    def _reject_new(self, event: RequestReceived, refused: Refusal, tag: str, now: float) -> None:
        self._reply(event, refused.status, now, to_tag=tag, extra=list(refused.headers))
        self._events.append(
            CallRejected(
                sip_call_id=event.request.call_id,
                status=refused.status,
                reason=refused.reason,
                source=event.source[0],
            )
        )

    def _end(self, leg: InboundLeg, cause: str, by: HangupParty, now: float) -> None:
        ended = leg.end(cause, by, now)
        if ended is not None:
            self._events.append(ended)
        if leg.state is LegState.ENDED:
            self._legs.forget(leg)

    def _live_leg(self, call_id: str) -> InboundLeg:
        leg = self._legs.get(call_id)
        if leg is None:
            raise KeyError(f"no inbound call {call_id} in progress")
        return leg

    def _server_header(self) -> list[tuple[str, str]]:
        return [("Server", self.settings.user_agent)] if self.settings.user_agent else []

    def _admit(self, request: SipRequest, source: Address, now: float) -> bool:
        if within_limits(self.guard, self.trunks, request, source[0], now):
            return True
        # Dropped unanswered: a flood or a blocked source gets no reply to reflect or learn
        # from, and a real client's retransmissions get through once the bucket refills.
        self.counters.rate_limited += 1
        return False

    def _refuse(
        self, exc: SipParseError, data: bytes, source: Address, transport: str, now: float
    ) -> None:
        """Answer a broken request when it can be answered (§8.2, §21.4); drop anything else."""
        request = exc.request
        if request is None:
            request = salvage_request(data, max_head=self.settings.max_message_bytes)
        if request is not None and not self._admit(request, source, now):
            return
        transmit = None
        if request is not None:
            transmit = refusal(exc, request, source, transport, self.new_id())
        if transmit is None:
            self.counters.malformed_dropped += 1
            logger.debug("dropped malformed message from %s: %s", source, exc.detail)
            return
        self.counters.malformed_answered += 1
        logger.debug(
            "answered malformed request from %s with %d: %s", source, exc.status, exc.detail
        )
        self._outbox.append(transmit)

    def _via_host(self, leg: InboundLeg) -> str:
        contact = NameAddr.parse(leg.local_contact).uri
        return contact.host_port

    def _registrar_events(self) -> None:
        events = self.registrar.take_events()
        if self.agent_auth is not None:
            self.agent_auth.observe(events)  # where softphones are registered from
        self._events.extend(events)

    def _emit(self, event: object) -> None:
        self._events.append(event)

    def _local_for(self, source: Address, transport: str) -> Address:
        local = self.register_locals.get(source, transport)
        return local or self.default_local or ("127.0.0.1", 5060)

    def _user_agent_header(self) -> list[tuple[str, str]]:
        return [("User-Agent", self.settings.user_agent)] if self.settings.user_agent else []
