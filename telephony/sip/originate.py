"""Calls the server places to agents' softphones or out through trunks, inside the UA core
(sans-IO).

`Originator` is the transaction user for outbound legs: it sends an INVITE to every live binding
of the agent (to the address the phone registered from, RFC 3581's symmetric path through NAT,
with the registered Contact as Request-URI), or one INVITE to a trunk's carrier
(`originate_trunk`, challenges answered as `outbound_trunk` says), turns the answers into ring
outcomes, ends ringing
with CANCEL at the ring timeout (§9.1), keeps the first 2xx and BYEs any other (§13.2.2.4),
serves requests inside the answered dialog (BYE, re-INVITE/UPDATE, REFER) and sends ours (BYE,
re-INVITE for hold with the glare retry of §14.1, NOTIFY for a REFER). The core delegates to it;
events go out through `emit`, in order with the core's own.
"""

from __future__ import annotations

import heapq
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from telephony.events import AgentLegFailed, CallOutFailure, RingFailure
from telephony.sip.checks import ALLOW, SUPPORTED_OPTIONS
from telephony.sip.dialog import Dialog, DialogError
from telephony.sip.headers import Headers
from telephony.sip.message import SipRequest
from telephony.sip.outbound import (
    OutboundBranch,
    OutboundInput,
    OutboundLeg,
    OutboundState,
    TrunkRoute,
    failure_for,
    worst_case,
)
from telephony.sip.outbound_dialog import LINGER, SDP, OutboundDialogs
from telephony.sip.outbound_trunk import (
    answered_event,
    authenticated_retry,
    call_out_failure,
    failed_event,
    ringing_event,
    trunk_request_uri,
)
from telephony.sip.registrar import Registrar
from telephony.sip.transaction import TransactionLayer
from telephony.sip.transaction_types import (
    Address,
    ClientKey,
    RequestReceived,
    ResponseOrigin,
    ResponseReceived,
)
from telephony.sip.uri import NameAddr, SipUri

logger = logging.getLogger(__name__)


def codec_of(sdp: bytes) -> str:
    """The first codec named in an SDP body (for events), or ""."""
    for line in sdp.decode("ascii", "replace").splitlines():
        if line.startswith("a=rtpmap:"):
            return line.split(" ", 1)[1].split("/", 1)[0] if " " in line else ""
    return ""


@dataclass(slots=True)
class Originator:
    """Every outbound leg of one node, and the SIP behaviour they need."""

    transactions: TransactionLayer
    registrar: Registrar
    emit: Callable[[object], None]
    new_id: Callable[[], str]
    #: Our address on the socket a phone registered to, given its source and transport.
    local_for: Callable[[Address, str], Address]
    user_agent: str = "CXOS"
    public_address: str | None = None
    uniform: Callable[[float, float], float] = random.uniform
    legs: dict[str, OutboundLeg] = field(default_factory=dict)
    dialogs: OutboundDialogs = field(init=False)
    _by_branch: dict[ClientKey, OutboundLeg] = field(default_factory=dict)
    _by_dialog: dict[tuple[str, str], OutboundLeg] = field(default_factory=dict)
    #: Ids of the legs not yet ended. An ended leg stays in `legs` for `LINGER` seconds (late
    #: responses of its forks still find it) but leaves this set at once.
    _in_progress: set[str] = field(default_factory=set)
    #: (deadline, sequence, kind, leg id); stale entries are skipped when they surface.
    _timers: list[tuple[float, int, str, str]] = field(default_factory=list)
    _sequence: int = 0
    #: Calls out in progress per trunk id, against each trunk's `max_calls`.
    _trunk_calls: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dialogs = OutboundDialogs(
            transactions=self.transactions,
            emit=self.emit,
            arm=self._arm,
            user_agent=self.user_agent,
            uniform=self.uniform,
        )

    # ------------------------------------------------------------------ the call API (TU side)

    def originate(
        self,
        aor: str,
        *,
        call_id: str | None,
        offer: bytes,
        ring_timeout: float,
        now: float,
        caller_id: str = "",
        caller_name: str = "",
        headers: Iterable[tuple[str, str]] = (),
    ) -> str:
        """Ring every registered contact of `aor` with `offer`; returns the new leg's id.

        The outcome comes as events: `CallRinging`, then `AgentLegAnswered` or `AgentLegFailed`
        (at once, `unregistered`, when the agent has no live binding).
        """
        if ring_timeout <= 0:
            raise ValueError("ring_timeout must be positive")
        leg_id = self.new_id()
        served = call_id or leg_id
        bindings = self.registrar.lookup(aor, now)
        if not bindings:
            self.emit(
                AgentLegFailed(
                    call_id=served,
                    leg_id=leg_id,
                    sip_user=aor,
                    reason=RingFailure.UNREGISTERED,
                    status=None,
                    ring_seconds=0.0,
                )
            )
            return leg_id
        first_local = self.local_for(bindings[0].source, bindings[0].transport.lower())
        leg = OutboundLeg(
            leg_id=leg_id,
            call_id=served,
            aor=aor,
            sip_call_id=f"{self.new_id()}@{_host_text(self.public_address or first_local[0])}",
            local_tag=self.transactions.new_tag(),
            offer=offer,
            local_sdp=offer,
            started_at=now,
            ring_deadline=now + ring_timeout,
        )
        extra = list(headers)
        for binding in bindings:
            transport = binding.transport.lower()
            self._send_invite(
                leg,
                uri=binding.contact,
                to=None,
                destination=binding.source,
                transport=transport,
                local=self.local_for(binding.source, transport),
                caller=(caller_id, caller_name),
                extra=extra,
                now=now,
            )
        self._start(leg)
        return leg_id

    def _start(self, leg: OutboundLeg) -> None:
        self.legs[leg.leg_id] = leg
        self._in_progress.add(leg.leg_id)
        self._by_dialog[(leg.sip_call_id, leg.local_tag)] = leg
        self._arm(leg.ring_deadline, "ring", leg.leg_id)

    def originate_trunk(
        self,
        number: str,
        route: TrunkRoute,
        *,
        call_id: str | None,
        offer: bytes,
        ring_timeout: float,
        now: float,
        caller_id: str = "",
        caller_name: str = "",
        headers: Iterable[tuple[str, str]] = (),
    ) -> str:
        """Call `number` through the trunk `route` with `offer`; returns the new leg's id.

        One INVITE for ``sip:NUMBER@host`` goes to the carrier's address (§8.1.1: the
        Request-URI names the number at the carrier, there is no registrar to ask). The outcome
        comes as events: `TrunkLegRinging`, then `TrunkLegAnswered` or `TrunkLegFailed` (at
        once, ``no_capacity``, when the trunk has its `max_calls` in progress).
        """
        if ring_timeout <= 0:
            raise ValueError("ring_timeout must be positive")
        if not number:
            raise ValueError("the number to call is empty")
        leg_id = self.new_id()
        local = self.local_for(route.destination, route.transport)
        host = _host_text(self.public_address or local[0])
        leg = OutboundLeg(
            leg_id=leg_id,
            call_id=call_id or leg_id,
            aor=number,
            sip_call_id=f"{self.new_id()}@{host}",
            local_tag=self.transactions.new_tag(),
            offer=offer,
            local_sdp=offer,
            started_at=now,
            ring_deadline=now + ring_timeout,
            trunk=route,
        )
        if self._trunk_calls.get(route.trunk_id, 0) >= route.max_calls:
            logger.info(
                "trunk %s: %d calls out in progress, %s refused",
                route.trunk_id,
                route.max_calls,
                number,
            )
            leg.call_out_failure = CallOutFailure.NO_CAPACITY
            self.emit(failed_event(leg, None, 0.0))
            return leg_id
        self._trunk_calls[route.trunk_id] = self._trunk_calls.get(route.trunk_id, 0) + 1
        target = trunk_request_uri(number, route)
        self._send_invite(
            leg,
            uri=str(target),
            to=NameAddr(uri=SipUri(scheme="sip", user=number, host=route.host)),
            destination=route.destination,
            transport=route.transport,
            local=local,
            caller=(caller_id, caller_name),
            extra=list(headers),
            now=now,
        )
        self._start(leg)
        return leg_id

    def trunk_local_host(self, route: TrunkRoute) -> str:
        """Our address as the carrier reaches it (for the SDP of a call out)."""
        return self.public_address or self.local_for(route.destination, route.transport)[0]

    def local_host(self, aor: str, now: float) -> str | None:
        """Our address as the agent's phone reaches it (for the SDP of a call to it), or None
        when the agent has no live binding."""
        bindings = self.registrar.lookup(aor, now)
        if not bindings:
            return None
        first = bindings[0]
        return self.public_address or self.local_for(first.source, first.transport.lower())[0]

    def hangup(self, leg_id: str, now: float) -> None:
        """Stop ringing (CANCEL) or end the answered call (BYE, §15.1.1)."""
        leg = self.legs.get(leg_id)
        if leg is None:
            return
        if leg.ringing:
            self._give_up(leg, None, now)
            self.dialogs.ended(leg, "cancelled", "server", now)
        elif leg.state is OutboundState.CONFIRMED:
            self.dialogs.hangup(leg, now)

    def hold(self, leg_id: str, held: bool, now: float) -> None:
        """Hold (a=sendonly) or resume (a=sendrecv) the answered leg with a re-INVITE
        (RFC 3264 §8.4); the outcome is a `ReofferAnswered` or `ReofferFailed` event."""
        self.dialogs.hold(self._leg(leg_id), held, now)

    def notify_transfer(self, leg_id: str, status: int, now: float) -> None:
        """The final NOTIFY of a REFER accepted on the leg (RFC 3515 §2.4.5)."""
        leg = self.legs.get(leg_id)
        if leg is not None:
            self.dialogs.notify_transfer(leg, status, now)

    def active(self) -> list[str]:
        """The ids of the legs in progress (ringing, answered or being torn down)."""
        return [
            leg_id
            for leg_id in self._in_progress
            if self.legs[leg_id].state is not OutboundState.ENDED
        ]

    def has_active(self) -> bool:
        return bool(self._in_progress)

    # ------------------------------------------------------------------ timers

    def next_timer(self) -> float | None:
        timers = self._timers
        while timers and not self._live(timers[0]):
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def on_timer(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            entry = heapq.heappop(timers)
            if not self._live(entry):
                continue
            _, _, kind, leg_id = entry
            leg = self.legs[leg_id]
            if kind == "ring":
                # The agent did not answer in time: stop every branch (§9.1).
                self._give_up(leg, RingFailure.NO_ANSWER, now)
            elif kind == "reoffer":
                leg.reoffer_retry_at = None
                if leg.reoffer_out is not None and leg.state is OutboundState.CONFIRMED:
                    self.dialogs.reoffer(leg, leg.reoffer_out, now)
            else:
                self._forget(leg)

    def _live(self, entry: tuple[float, int, str, str]) -> bool:
        deadline, _, kind, leg_id = entry
        leg = self.legs.get(leg_id)
        if leg is None:
            return False
        if kind == "ring":
            return leg.ringing
        if kind == "reoffer":
            return leg.reoffer_retry_at == deadline
        return True

    def _arm(self, deadline: float, kind: str, leg_id: str) -> None:
        if kind == "purge" and leg_id in self._in_progress:
            # Every way into ENDED (here and in outbound_dialog.py) arms the purge: from now
            # on the leg is history, kept only for late responses.
            self._in_progress.discard(leg_id)
            route = self.legs[leg_id].trunk if leg_id in self.legs else None
            if route is not None:
                self._trunk_calls[route.trunk_id] -= 1
        self._sequence += 1
        heapq.heappush(self._timers, (deadline, self._sequence, kind, leg_id))

    # ------------------------------------------------------------------ responses

    def on_response(self, event: ResponseReceived, now: float) -> bool:
        """Handle a response to one of our requests; False when it is not an outbound leg's."""
        leg = self._by_branch.get(event.transaction)
        if leg is not None:
            self._invite_response(leg, leg.branches[event.transaction], event, now)
            return True
        request = event.request
        leg = self._by_dialog.get((request.call_id, request.from_.tag or ""))
        if leg is None:
            return False
        self.dialogs.on_response(leg, event, now)
        return True

    def _invite_response(
        self, leg: OutboundLeg, branch: OutboundBranch, event: ResponseReceived, now: float
    ) -> None:
        status = event.response.status
        if event.origin is ResponseOrigin.PEER:
            leg.heard_back = True
        if event.retransmission or status == 100:
            return
        if status < 200:
            if leg.can(OutboundInput.PROVISIONAL):
                leg.apply(OutboundInput.PROVISIONAL)
                if not leg.ringing_reported:
                    leg.ringing_reported = True
                    self.emit(ringing_event(leg))
            return
        if status in (401, 407) and leg.trunk is not None and leg.ringing:
            if self._answer_challenge(leg, branch, event, now):
                return
            leg.auth_failed = True
        branch.final = True
        branch.status = status
        if status < 300:
            self._on_answer(leg, branch, event, now)
            return
        branch.failure = failure_for(status, event.origin)
        if leg.trunk is not None:
            leg.call_out_failure = call_out_failure(leg, status, event.origin)
        if leg.ringing and status >= 600:
            # A 6xx is the agent's answer for every device: stop the others (§16.7 step 6).
            self._give_up(leg, branch.failure, now, status=status)
        elif leg.ringing and not leg.pending_branches():
            failed = [b for b in leg.branches.values() if b.failure is not None]
            leg.failure = worst_case([b.failure for b in failed if b.failure is not None])
            leg.apply(OutboundInput.ALL_FAILED)
            leg.ended_at = now
            decisive = next((b.status for b in failed if b.failure is leg.failure), status)
            self._emit_failed(leg, decisive, now)
            self._arm(now + LINGER, "purge", leg.leg_id)
        self._check_cancelled(leg, now)

    def _on_answer(
        self, leg: OutboundLeg, branch: OutboundBranch, event: ResponseReceived, now: float
    ) -> None:
        response = event.response
        dialog = Dialog.uac(event.request, response, transport=branch.transport.upper())
        # §13.2.2.4: every 2xx is acknowledged by the UAC core, end to end.
        ack = dialog.create_ack(event.request.cseq.number, headers=self.dialogs.ua())
        self.transactions.send_ack(
            ack,
            destination=branch.destination,
            transport=branch.transport,
            invite=event.transaction,
            sent_by=branch.sent_by,
        )
        if leg.dialog is None and leg.can(OutboundInput.ANSWERED):
            leg.apply(OutboundInput.ANSWERED)
            leg.dialog, leg.branch = dialog, branch
            leg.answer, leg.answered_at = response.body, now
            for other in leg.pending_branches():
                # The other devices stop ringing (§16.7 step 10 for a forking element).
                self.transactions.cancel(other.key, now)
            self.emit(answered_event(leg, codec_of(response.body), max(0.0, now - leg.started_at)))
            return
        # Another fork answered too, or the answer crossed our CANCEL (§9.1): that dialog is
        # ended at once with BYE (§13.2.2.4, §15).
        logger.info("leg %s: extra 2xx from %s ended with BYE", leg.leg_id, branch.contact)
        bye = dialog.create_request("BYE", headers=self.dialogs.ua())
        self.transactions.send_request(
            bye,
            destination=branch.destination,
            transport=branch.transport,
            now=now,
            sent_by=branch.sent_by,
        )
        self._check_cancelled(leg, now)

    # ------------------------------------------------------------------ requests in the dialog
    def on_request(self, event: RequestReceived, now: float) -> bool:
        """Serve a request in an outbound leg's dialog; False when it names no outbound leg."""
        request = event.request
        leg = self._by_dialog.get((request.call_id, request.to.tag or ""))
        if leg is None:
            return False
        self.dialogs.on_request(leg, event, now)
        return True

    # ------------------------------------------------------------------ helpers
    def _send_invite(
        self,
        leg: OutboundLeg,
        *,
        uri: str,
        to: NameAddr | None,
        destination: Address,
        transport: str,
        local: Address,
        caller: tuple[str, str],
        extra: list[tuple[str, str]],
        now: float,
    ) -> None:
        """One INVITE of the leg: to a binding of the agent, or to the trunk's carrier."""
        host = _host_text(self.public_address or local[0])
        params: dict[str, str | None] = {"transport": "tcp"} if transport == "tcp" else {}
        contact = SipUri(scheme="sip", user="cxos", host=host, port=local[1], params=params)
        caller_id, caller_name = caller
        from_ = NameAddr(
            uri=SipUri(scheme="sip", user=caller_id or "anonymous", host=host),
            display_name=caller_name or None,
        ).with_tag(leg.local_tag)
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", str(from_))
        headers.add("To", str(to or NameAddr(uri=SipUri(scheme="sip", user=leg.aor, host=host))))
        headers.add("Call-ID", leg.sip_call_id)
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", f"<{contact}>")
        headers.add("Allow", ALLOW)
        headers.add("Supported", ", ".join(sorted(SUPPORTED_OPTIONS)))
        for name, value in (*self.dialogs.ua(), *extra):
            headers.add(name, value)
        headers.add("Content-Type", SDP)
        invite = SipRequest(method="INVITE", uri=uri, headers=headers, body=leg.offer)
        self._send_branch(leg, invite, uri, destination, transport, f"{host}:{local[1]}", now)

    def _send_branch(
        self,
        leg: OutboundLeg,
        invite: SipRequest,
        contact: str,
        destination: Address,
        transport: str,
        sent_by: str,
        now: float,
    ) -> None:
        key = self.transactions.send_request(
            invite, destination=destination, transport=transport, now=now, sent_by=sent_by
        )
        leg.branches[key] = OutboundBranch(
            key=key,
            contact=contact,
            destination=destination,
            transport=transport,
            sent_by=sent_by,
        )
        self._by_branch[key] = leg

    def _answer_challenge(
        self, leg: OutboundLeg, branch: OutboundBranch, event: ResponseReceived, now: float
    ) -> bool:
        """Re-send the trunk leg's INVITE with credentials (§22.2); False when it must fail.
        The challenged transaction is over (the layer ACKed the 401/407, §17.1.1.3): its
        branch is replaced by the new one."""
        retry = authenticated_retry(leg, event.request, event.response, cnonce=self.new_id())
        if retry is None:
            return False
        del leg.branches[branch.key]
        self._by_branch.pop(branch.key, None)
        self._send_branch(
            leg, retry, branch.contact, branch.destination, branch.transport, branch.sent_by, now
        )
        return True

    def _give_up(
        self, leg: OutboundLeg, reason: RingFailure | None, now: float, status: int | None = None
    ) -> None:
        """Stop ringing: CANCEL what is still pending (sent once a 1xx has come, §9.1)."""
        for branch in leg.pending_branches():
            self.transactions.cancel(branch.key, now)
        leg.apply(OutboundInput.GIVE_UP)
        if reason is not None:
            leg.failure = reason
            self._emit_failed(leg, status, now)
        self._check_cancelled(leg, now)

    def _check_cancelled(self, leg: OutboundLeg, now: float) -> None:
        if leg.state is OutboundState.CANCELLING and not leg.pending_branches():
            leg.apply(OutboundInput.BRANCHES_DONE)
            leg.ended_at = leg.ended_at if leg.ended_at is not None else now
            self._arm(now + LINGER, "purge", leg.leg_id)

    def _emit_failed(self, leg: OutboundLeg, status: int | None, now: float) -> None:
        assert leg.failure is not None
        self.emit(failed_event(leg, status, max(0.0, now - leg.started_at)))

    def _leg(self, leg_id: str) -> OutboundLeg:
        leg = self.legs.get(leg_id)
        if leg is None:
            raise DialogError(f"no outbound leg {leg_id}")
        return leg

    def _forget(self, leg: OutboundLeg) -> None:
        if leg.state is not OutboundState.ENDED:
            return
        self.legs.pop(leg.leg_id, None)
        self._in_progress.discard(leg.leg_id)
        self._by_dialog.pop((leg.sip_call_id, leg.local_tag), None)
        for key in leg.branches:
            self._by_branch.pop(key, None)


def _host_text(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
