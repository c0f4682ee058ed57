"""Calls the server places to agents' softphones or out through trunks, inside the UA core
(sans-IO).

`Originator` is the transaction user for outbound legs: it sends an INVITE to every live binding
of the agent (to the address the phone registered from, RFC 3581's symmetric path through NAT,
with the registered Contact as Request-URI), or one INVITE to a trunk's carrier
(`originate_trunk`), ends ringing with CANCEL at the ring timeout (§9.1) or on hangup, keeps the
legs' timers, and routes what comes back: responses to the INVITEs to `OutboundRinging` (ring
outcomes, challenges, the first 2xx), requests and responses in the answered dialog to
`OutboundDialogs` (BYE, re-INVITE/UPDATE, REFER, hold with the glare retry of §14.1). The core
delegates to it; events go out through `emit`, in order with the core's own.
"""

from __future__ import annotations

import heapq
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from telephony.events import AgentLegFailed, CallOutFailure, RingFailure
from telephony.sip.checks import ALLOW, SUPPORTED_OPTIONS
from telephony.sip.dialog import DialogError
from telephony.sip.headers import Headers
from telephony.sip.message import SipRequest
from telephony.sip.outbound import (
    OutboundLeg,
    OutboundState,
    TrunkRoute,
)
from telephony.sip.outbound_dialog import SDP, OutboundDialogs
from telephony.sip.outbound_ringing import OutboundRinging
from telephony.sip.outbound_trunk import (
    failed_event,
    trunk_request_uri,
)
from telephony.sip.registrar import Registrar
from telephony.sip.transaction import TransactionLayer
from telephony.sip.transaction_types import (
    Address,
    ClientKey,
    RequestReceived,
    ResponseReceived,
)
from telephony.sip.uri import NameAddr, SipUri

logger = logging.getLogger(__name__)


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
    ringing: OutboundRinging = field(init=False)
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
            new_id=self.new_id,
        )
        self.ringing = OutboundRinging(
            transactions=self.transactions,
            emit=self.emit,
            arm=self._arm,
            new_id=self.new_id,
            dialogs=self.dialogs,
            by_branch=self._by_branch,
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
            self.ringing.give_up(leg, None, now)
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
                self.ringing.give_up(leg, RingFailure.NO_ANSWER, now)
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
            self.ringing.on_invite_response(leg, leg.branches[event.transaction], event, now)
            return True
        request = event.request
        leg = self._by_dialog.get((request.call_id, request.from_.tag or ""))
        if leg is None:
            return False
        self.dialogs.on_response(leg, event, now)
        return True

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
        self.ringing.send_branch(
            leg, invite, uri, destination, transport, f"{host}:{local[1]}", now
        )

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
