"""The asyncio side of the call API: agent and trunk legs' media, re-offers, hold and transfers.

`TelephonyService` owns one `CallControl` and hands it the core's call events. Placing a call to
an agent, or out through a trunk (`originate_external`: the trunk chosen and the number written
as its carrier wants, the carrier's host resolved here, the SIP in the core), takes an RTP port
and an SDP offer (`make_offer`) before the INVITE; the answer (`process_answer`) decides the
codec of the media leg opened then. The port pair is bound when it is taken, so no other
program can take it between the offer and the answer; it is let go if the call fails. A call
out with no caller behind it (`call_out`, for callbacks) becomes a `Call` of its own, with
media like an inbound call's. New offers the core answered move a leg's media
(`MediaLeg.renegotiate`) and follow the peer's hold (RFC 3264 §8.4): when the agent's phone
holds, the caller bridged to it is held (no audio across, music if configured).
A REFER from the agent's phone becomes a transfer of the caller (`Call.transfer_to`), reported
back with NOTIFY (RFC 3515 §2.4.5).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from config.settings import DtmfMode, Trunk
from telephony.calls import AgentLeg, Call, ExternalLeg
from telephony.events import (
    AgentLegAnswered,
    AgentLegEnded,
    AgentLegFailed,
    CallEnded,
    CallHeld,
    CallOutFailure,
    CallResumed,
    RingFailure,
    TrunkLegAnswered,
    TrunkLegEnded,
    TrunkLegFailed,
)
from telephony.media.calls import MediaCall
from telephony.media.engine import MediaStateError, UnknownLegError
from telephony.media.runner import BoundPorts, MediaRunner, reserve_ports
from telephony.rtp.audio import PromptCache
from telephony.rtp.g711 import Law
from telephony.rtp.ports import RtpPortAllocator
from telephony.sdp import (
    SdpError,
    SdpSession,
    SessionDescription,
    make_offer,
    parse_sdp,
    process_answer,
)
from telephony.sip.core import SipCore
from telephony.sip.core_types import ReofferFailed, ReofferReceived, TransferRequested
from telephony.sip.outbound import TrunkRoute
from telephony.sip.resolver import SipResolver, Target
from telephony.trunks import dial_string, listens_for_tones

#: What ringing ends with: the answered leg, or why it was not answered.
Outcome = AgentLeg | RingFailure | CallOutFailure

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Ringing:
    """An agent or trunk leg between INVITE and the opening of its media."""

    sip_user: str  # the agent's SIP user, or the number called out
    call_id: str
    host: str
    ports: BoundPorts
    offer: SessionDescription
    outcome: asyncio.Future[Outcome]
    #: The trunk of a call out; None for an agent leg.
    trunk_id: str | None = None

    @property
    def no_answer(self) -> RingFailure | CallOutFailure:
        return RingFailure.NO_ANSWER if self.trunk_id is None else CallOutFailure.NO_ANSWER

    @property
    def refused(self) -> RingFailure | CallOutFailure:
        return RingFailure.REJECTED if self.trunk_id is None else CallOutFailure.REJECTED


class CallControl:
    """Agent legs and the call API objects of one telephony service."""

    def __init__(
        self,
        *,
        core: SipCore,
        media: MediaRunner,
        ports: RtpPortAllocator,
        prompts: PromptCache,
        clock: Callable[[], float],
        publish: Callable[[object], None],
        flush: Callable[[], None],
        hangup_call: Callable[[str], None],
        ring_timeout: float = 30.0,
        trunk_for: Callable[[str | None], Trunk | None] = lambda name: None,
        resolver: SipResolver | None = None,
        dtmf_mode: Callable[[str], DtmfMode] = lambda trunk_id: "auto",
    ) -> None:
        self.core = core
        self.media = media
        self.ports = ports
        self.prompts = prompts
        self.clock = clock
        self.publish = publish
        self._flush = flush
        self._hangup_call = hangup_call
        #: Seconds a transfer target rings (the server's configured ring timeout).
        self.ring_timeout = ring_timeout
        #: The trunk a call out goes through, by id (None: the default one); None if none can.
        self.trunk_for = trunk_for
        #: How the keys of a trunk's calls arrive, by trunk id ("" for an agent's own call).
        self.dtmf_mode = dtmf_mode
        #: Finds a carrier's servers from its host name (RFC 3263 NAPTR/SRV/A).
        self.resolver = resolver or SipResolver()
        self._rng = random.Random()
        self._ringing: dict[str, _Ringing] = {}
        self._agents: dict[str, AgentLeg] = {}
        self._ports: dict[str, int] = {}
        self._calls: dict[str, Call] = {}
        self._held_by_peer: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ the API

    def add_call(self, call: Call) -> None:
        self._calls[call.call_id] = call

    def call(self, call_id: str) -> Call | None:
        return self._calls.get(call_id)

    def agent_leg(self, leg_id: str) -> AgentLeg | None:
        return self._agents.get(leg_id)

    def reachable(self, sip_user: str) -> bool:
        """Whether `sip_user` has a live registration to ring now (ringing checks it again)."""
        return self.core.outbound.local_host(sip_user, self.clock()) is not None

    async def originate(
        self,
        sip_user: str,
        *,
        call_id: str,
        ring_timeout: float,
        caller_id: str = "",
        caller_name: str = "",
    ) -> AgentLeg | RingFailure:
        """Ring `sip_user`'s phones; the answered leg with its media open, or the failure."""
        now = self.clock()
        host = self.core.outbound.local_host(sip_user, now)
        if host is None:
            return RingFailure.UNREGISTERED
        ports = self._allocate(call_id, sip_user, host)
        if ports is None:
            return RingFailure.UNREGISTERED
        offer = self._offer(host, ports.port)
        leg_id = self.core.outbound.originate(
            sip_user,
            call_id=call_id,
            offer=offer.to_bytes(),
            ring_timeout=ring_timeout,
            now=now,
            caller_id=caller_id,
            caller_name=caller_name,
        )
        outcome = await self._ring(
            leg_id, _Ringing(sip_user, call_id, host, ports, offer, self._future())
        )
        assert not isinstance(outcome, CallOutFailure)
        return outcome

    async def originate_external(
        self,
        number: str,
        *,
        call_id: str | None,
        ring_timeout: float,
        trunk: str | None = None,
        caller_id: str = "",
        caller_name: str = "",
    ) -> ExternalLeg | CallOutFailure:
        """Call `number` out through `trunk` (None: the default outbound trunk); the answered
        leg with its media open, or why it did not connect. The trunk's ``caller_id``, when
        set, is presented instead of `caller_id`. `call_id` None: the leg serves itself."""
        chosen = self.trunk_for(trunk)
        if chosen is None or chosen.outbound is None:
            logger.warning("no trunk to call %s out through (asked for %r)", number, trunk)
            return CallOutFailure.NO_CAPACITY
        try:
            dialled = dial_string(chosen, number)
        except ValueError as exc:
            logger.info("call out refused: %s", exc)
            return CallOutFailure.REJECTED
        outbound = chosen.outbound
        # RFC 3263 §4: a port or transport the configuration leaves out is DNS's to choose.
        stated = outbound.model_fields_set
        port = outbound.port if "port" in stated else None
        try:
            targets = await self.resolver.locate(
                outbound.host,
                port=port,
                transport=outbound.transport if "transport" in stated else None,
            )
        except OSError as exc:
            logger.warning("trunk %s: %s cannot be resolved: %s", chosen.id, outbound.host, exc)
            return CallOutFailure.UNREACHABLE
        if not targets:
            logger.warning("trunk %s: no address for %s", chosen.id, outbound.host)
            return CallOutFailure.UNREACHABLE
        # RFC 3263 §4.3: an address that does not answer, fails at the transport or answers
        # 503 gives way to the next one, within what is left of the ring time.
        deadline = self.clock() + ring_timeout
        outcome: ExternalLeg | CallOutFailure = CallOutFailure.UNREACHABLE
        for attempt, target in enumerate(targets):
            remaining = deadline - self.clock()
            if attempt and remaining <= 0:
                break
            if attempt:
                logger.info(
                    "trunk %s: %s port %d unreachable, trying %s port %d",
                    chosen.id,
                    targets[attempt - 1].address,
                    targets[attempt - 1].port,
                    target.address,
                    target.port,
                )
            outcome = await self._call_out_to(
                target,
                chosen,
                dialled,
                port,
                call_id=call_id,
                ring_timeout=remaining,
                caller_id=outbound.caller_id or caller_id,
                caller_name=caller_name,
            )
            if outcome is not CallOutFailure.UNREACHABLE:
                break
        return outcome

    async def _call_out_to(
        self,
        target: Target,
        chosen: Trunk,
        dialled: str,
        port: int | None,
        *,
        call_id: str | None,
        ring_timeout: float,
        caller_id: str,
        caller_name: str,
    ) -> ExternalLeg | CallOutFailure:
        """One attempt of `originate_external` at one of the trunk's addresses."""
        outbound = chosen.outbound
        assert outbound is not None
        auth = outbound.auth
        route = TrunkRoute(
            trunk_id=chosen.id,
            host=outbound.host,
            port=port,
            destination=(target.address, target.port),
            transport=target.transport,
            username=auth.username if auth is not None else None,
            password=auth.password if auth is not None else None,
            realm=auth.realm if auth is not None else None,
            max_calls=outbound.max_calls,
        )
        host = self.core.outbound.trunk_local_host(route)
        ports = self._allocate(call_id or "call out", dialled, host)
        if ports is None:
            return CallOutFailure.NO_CAPACITY
        offer = self._offer(host, ports.port)
        leg_id = self.core.outbound.originate_trunk(
            dialled,
            route,
            call_id=call_id,
            offer=offer.to_bytes(),
            ring_timeout=ring_timeout,
            now=self.clock(),
            caller_id=caller_id,
            caller_name=caller_name,
        )
        ringing = _Ringing(
            dialled, call_id or leg_id, host, ports, offer, self._future(), trunk_id=chosen.id
        )
        outcome = await self._ring(leg_id, ringing)
        assert isinstance(outcome, ExternalLeg | CallOutFailure)
        return outcome

    async def call_out(
        self, number: str, *, ring_timeout: float, trunk: str | None = None, caller_id: str = ""
    ) -> Call | CallOutFailure:
        """Call `number` with no caller behind it (a callback): once answered it is a `Call` of
        its own (play, collect, bridge...), whose id is the leg's."""
        leg = await self.originate_external(
            number, call_id=None, ring_timeout=ring_timeout, trunk=trunk, caller_id=caller_id
        )
        if isinstance(leg, CallOutFailure):
            return leg
        call = Call(self, call_id=leg.leg_id, media=leg.media, caller_id=leg.number)
        self._calls[call.call_id] = call
        if leg.ended:
            self._calls.pop(call.call_id, None)
            call.mark_ended()
        return call

    def _allocate(self, call_id: str, target: str, host: str) -> BoundPorts | None:
        try:
            return reserve_ports(self.ports, host, self.clock())
        except RuntimeError:
            logger.warning("call %s: no RTP port left to call %s", call_id, target)
            return None

    def _offer(self, host: str, port: int) -> SessionDescription:
        session = SdpSession(session_id=self._rng.getrandbits(31), address=host)
        return make_offer(host, port, session=session)

    def _future(self) -> asyncio.Future[Outcome]:
        return asyncio.get_running_loop().create_future()

    async def _ring(self, leg_id: str, ringing: _Ringing) -> Outcome:
        self._ports[leg_id] = ringing.ports.port
        self._ringing[leg_id] = ringing
        self._flush()  # may settle the outcome at once (no binding, no capacity)
        try:
            return await ringing.outcome
        except asyncio.CancelledError:
            self.hangup(leg_id)  # the caller went away, or the ACD withdrew the offer
            raise

    def hangup(self, leg_or_call_id: str) -> None:
        if leg_or_call_id in self._calls:
            self._hangup_call(leg_or_call_id)
            return
        self.core.hangup(leg_or_call_id, self.clock())
        self._flush()

    def hold_leg(self, leg_id: str, held: bool) -> None:
        self.core.outbound.hold(leg_id, held, self.clock())
        self._flush()

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for ringing in self._ringing.values():
            ringing.ports.close()
        for port in self._ports.values():
            self.ports.release(port)
        self._ports.clear()

    # ------------------------------------------------------------------ core events

    def on_event(self, event: object) -> bool:
        """Act on one event of the core; False for internal ones that must not be published."""
        if isinstance(event, AgentLegAnswered | TrunkLegAnswered):
            self._spawn(self._open_media(event.leg_id))
        elif isinstance(event, AgentLegFailed | TrunkLegFailed):
            self._settle(event.leg_id, event.reason)
        elif isinstance(event, AgentLegEnded | TrunkLegEnded):
            self._agent_ended(event.leg_id)
        elif isinstance(event, CallEnded):
            call = self._calls.pop(event.call_id, None)
            if call is not None:
                call.mark_ended()
        elif isinstance(event, ReofferReceived):
            self._reoffered(event)
            return False
        elif isinstance(event, TransferRequested):
            self._spawn(self._blind_transfer(event))
            return False
        elif isinstance(event, ReofferFailed):
            logger.info("leg %s: re-INVITE refused with %d", event.call_id, event.status)
            return False
        return True

    def listen_for_keys(self, leg_id: str, trunk_id: str, telephone_event: int | None) -> None:
        """Have the leg's audio searched for keypad tones when its trunk's ``dtmf`` mode and
        the telephone-event payload type its SDP negotiated (None: none) say so."""
        if listens_for_tones(self.dtmf_mode(trunk_id), telephone_event):
            self.media.engine.enable_inband_dtmf(leg_id)

    async def _open_media(self, leg_id: str) -> None:
        ringing = self._ringing.get(leg_id)
        leg = self.core.outbound.legs.get(leg_id)
        if ringing is None or leg is None:
            return
        try:
            negotiated = process_answer(ringing.offer, parse_sdp(leg.answer))
            law = Law.ALAW if negotiated.codec.name.upper() == "PCMA" else Law.ULAW
            await self.media.open_leg(
                leg_id,
                local=ringing.ports,
                law=law,
                payload_type=negotiated.codec.payload_type,
                event_payload_type=negotiated.telephone_event,
                remote=(negotiated.remote_address, negotiated.remote_port),
                ptime=negotiated.ptime,
                rtcp=negotiated.rtcp,
                signalling=leg.branch.destination if leg.branch is not None else None,
            )
        except (SdpError, OSError) as exc:
            logger.warning("leg %s: answered but its media cannot start: %s", leg_id, exc)
            self._settle(leg_id, ringing.refused)
            self.hangup(leg_id)
            return
        if ringing.trunk_id is not None:
            self.listen_for_keys(leg_id, ringing.trunk_id, negotiated.telephone_event)
        media = MediaCall(
            self.media, leg_id, law=law, prompts=self.prompts, hangup=lambda: self.hangup(leg_id)
        )
        agent: AgentLeg
        if ringing.trunk_id is None:
            agent = AgentLeg(
                self, leg_id=leg_id, sip_user=ringing.sip_user, call_id=ringing.call_id, media=media
            )
        else:
            agent = ExternalLeg(
                self,
                leg_id=leg_id,
                number=ringing.sip_user,
                trunk_id=ringing.trunk_id,
                call_id=ringing.call_id,
                media=media,
            )
        self._agents[leg_id] = agent
        if leg.ended_at is not None:
            self._agent_ended(leg_id)  # the agent hung up while the media opened
        self._settle(leg_id, agent)

    def _settle(self, leg_id: str, outcome: Outcome) -> None:
        ringing = self._ringing.pop(leg_id, None)
        if not isinstance(outcome, AgentLeg):
            if ringing is not None and leg_id not in self.media.engine:
                ringing.ports.close()  # its media never opened: the sockets are still ours
            self._release(leg_id)
        if ringing is not None and not ringing.outcome.done():
            ringing.outcome.set_result(outcome)

    def _agent_ended(self, leg_id: str) -> None:
        self._held_by_peer.discard(leg_id)
        agent = self._agents.pop(leg_id, None)
        if agent is None:
            ringing = self._ringing.get(leg_id)
            if ringing is not None and self.core.outbound.legs.get(leg_id) is not None:
                leg = self.core.outbound.legs[leg_id]
                if leg.answered_at is None:  # stopped ringing: the ACD or a caller withdrew
                    self._settle(leg_id, ringing.no_answer)
            return
        agent.mark_ended()
        self._release(leg_id)
        standalone = self._calls.pop(leg_id, None)
        if standalone is not None:
            standalone.mark_ended()  # a call out with no caller behind it (`call_out`)
        call = agent.call
        if call is not None and call.agent is agent:
            call.unbridge()
            if call.on_agent_hangup is not None:
                call.on_agent_hangup(agent)
            else:
                call.hangup()

    def _release(self, leg_id: str) -> None:
        if leg_id in self.media.engine:
            self.media.close_leg(leg_id)
        port = self._ports.pop(leg_id, None)
        if port is not None:
            self.ports.release(port)

    # ------------------------------------------------------------------ new offers and hold

    def _reoffered(self, event: ReofferReceived) -> None:
        leg_id = event.call_id
        try:
            leg = self.media.engine.leg(leg_id)
        except UnknownLegError:
            return
        remote = (event.remote_address, event.remote_port)
        usable = event.remote_port and event.remote_address not in ("0.0.0.0", "::")
        if usable and remote != leg.remote:
            leg.renegotiate(remote, self.clock(), event.remote_rtcp)
        held = leg_id in self._held_by_peer
        if event.remote_hold == held:
            return
        agent = self._agents.get(leg_id)
        if event.remote_hold:
            self._held_by_peer.add(leg_id)
        else:
            self._held_by_peer.discard(leg_id)
        call_id = agent.call_id if agent is not None else leg_id
        if agent is not None and agent.call is not None:
            # The agent pressed hold: the caller hears no agent audio (music when configured).
            self._follow_hold(agent.call.call_id, event.remote_hold)
        kind = CallHeld if event.remote_hold else CallResumed
        self.publish(kind(call_id=call_id, leg_id=leg_id, held_by="agent" if agent else "caller"))

    def _follow_hold(self, media_id: str, held: bool) -> None:
        engine = self.media.engine
        try:
            if held and not engine.is_held(media_id):
                engine.hold(media_id, ())
            elif not held and engine.is_held(media_id):
                engine.resume(media_id)
        except (MediaStateError, UnknownLegError) as exc:
            logger.debug("call %s: hold not followed: %s", media_id, exc)
        self.media.arm()
        self.media.dispatch()

    # ------------------------------------------------------------------ transfers

    async def _blind_transfer(self, event: TransferRequested) -> None:
        leg_id = event.call_id
        agent = self._agents.get(leg_id)
        call = agent.call if agent is not None else None
        if call is None:
            logger.info("leg %s: REFER to %s with no caller to move", leg_id, event.target)
            self._notify(leg_id, 503)
            return
        await call.transfer_to(
            event.target,
            self.ring_timeout,
            kind="blind",
            before_release=lambda status: self._notify(leg_id, status),
        )

    def _notify(self, leg_id: str, status: int) -> None:
        self.core.outbound.notify_transfer(leg_id, status, self.clock())
        self._flush()

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("call control task failed", exc_info=task.exception())
