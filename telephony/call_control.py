"""The asyncio side of the call API: agent legs' media, re-offers, hold and transfers.

`TelephonyService` owns one `CallControl` and hands it the core's call events. Placing a call to
an agent takes an RTP port and an SDP offer (`make_offer`) before the INVITE; the agent's answer
(`process_answer`) decides the codec of the media leg opened then. New offers the core answered
move a leg's media (`MediaLeg.renegotiate`) and follow the peer's hold (RFC 3264 §8.4): when the
agent's phone holds, the caller bridged to it is held (no audio across, music if configured).
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

from telephony.calls import AgentLeg, Call
from telephony.events import (
    AgentLegAnswered,
    AgentLegEnded,
    AgentLegFailed,
    CallEnded,
    CallHeld,
    CallResumed,
    RingFailure,
)
from telephony.media.calls import MediaCall
from telephony.media.engine import MediaStateError, UnknownLegError
from telephony.media.runner import MediaRunner
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

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Ringing:
    """An agent leg between INVITE and the opening of its media."""

    sip_user: str
    call_id: str
    host: str
    port: int
    offer: SessionDescription
    outcome: asyncio.Future[AgentLeg | RingFailure]


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
        try:
            port = self.ports.allocate()
        except RuntimeError:
            logger.warning("call %s: no RTP port left to ring %s", call_id, sip_user)
            return RingFailure.UNREGISTERED
        session = SdpSession(session_id=self._rng.getrandbits(31), address=host)
        offer = make_offer(host, port, session=session)
        outcome: asyncio.Future[AgentLeg | RingFailure] = asyncio.get_running_loop().create_future()
        leg_id = self.core.outbound.originate(
            sip_user,
            call_id=call_id,
            offer=offer.to_bytes(),
            ring_timeout=ring_timeout,
            now=now,
            caller_id=caller_id,
            caller_name=caller_name,
        )
        self._ports[leg_id] = port
        self._ringing[leg_id] = _Ringing(sip_user, call_id, host, port, offer, outcome)
        self._flush()  # may settle the outcome at once (no binding)
        try:
            return await outcome
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
        for port in self._ports.values():
            self.ports.release(port)
        self._ports.clear()

    # ------------------------------------------------------------------ core events

    def on_event(self, event: object) -> bool:
        """Act on one event of the core; False for internal ones that must not be published."""
        if isinstance(event, AgentLegAnswered):
            self._spawn(self._open_media(event.leg_id))
        elif isinstance(event, AgentLegFailed):
            self._settle(event.leg_id, event.reason)
        elif isinstance(event, AgentLegEnded):
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
                local=(ringing.host, ringing.port),
                law=law,
                payload_type=negotiated.codec.payload_type,
                event_payload_type=negotiated.telephone_event,
                remote=(negotiated.remote_address, negotiated.remote_port),
            )
        except (SdpError, OSError) as exc:
            logger.warning("leg %s: answered but its media cannot start: %s", leg_id, exc)
            self._settle(leg_id, RingFailure.REJECTED)
            self.hangup(leg_id)
            return
        media = MediaCall(
            self.media, leg_id, law=law, prompts=self.prompts, hangup=lambda: self.hangup(leg_id)
        )
        agent = AgentLeg(
            self, leg_id=leg_id, sip_user=ringing.sip_user, call_id=ringing.call_id, media=media
        )
        self._agents[leg_id] = agent
        if leg.ended_at is not None:
            self._agent_ended(leg_id)  # the agent hung up while the media opened
        self._settle(leg_id, agent)

    def _settle(self, leg_id: str, outcome: AgentLeg | RingFailure) -> None:
        ringing = self._ringing.pop(leg_id, None)
        if isinstance(outcome, RingFailure):
            self._release(leg_id)
        if ringing is not None and not ringing.outcome.done():
            ringing.outcome.set_result(outcome)

    def _agent_ended(self, leg_id: str) -> None:
        self._held_by_peer.discard(leg_id)
        agent = self._agents.pop(leg_id, None)
        if agent is None:
            if leg_id in self._ringing and self.core.outbound.legs.get(leg_id) is not None:
                leg = self.core.outbound.legs[leg_id]
                if leg.answered_at is None:  # stopped ringing: the ACD or a caller withdrew
                    self._settle(leg_id, RingFailure.NO_ANSWER)
            return
        agent.mark_ended()
        self._release(leg_id)
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
            leg.renegotiate(remote, self.clock())
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
