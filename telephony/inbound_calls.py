"""Inbound calls answered by this node: admission, the media leg, the answer and the handler.

`TelephonyService` hands each `IncomingCall` of the core here. The caller's SDP offer is
negotiated first (a call we cannot serve costs no RTP port: 488 or 400), then a port pair of the
RTP range is bound and the media leg opened (503 when none is left), and the call is answered with
our port in the SDP answer. Its `MediaCall` goes to the call handler (IVR, ACD) once the caller's
ACK confirms the call. A call for which `ring_first` says so is not answered at once: the caller
hears ringing (180, RFC 3261 §13.3.1.1) and the handler runs while it rings, until it answers with
`Call.answer` (an agent calling a colleague is answered when the colleague answers).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from telephony.call_control import CallControl
from telephony.calls import Call
from telephony.media.calls import MediaCall
from telephony.media.runner import MediaRunner, reserve_ports
from telephony.rtp.audio import PromptCache
from telephony.rtp.g711 import Law
from telephony.rtp.ports import RtpPortAllocator
from telephony.sdp import (
    Negotiated,
    SdpError,
    SdpNegotiationError,
    SdpSession,
    SessionDescription,
    answer_offer,
    parse_sdp,
)
from telephony.sip.core import IncomingCall, SipCore

logger = logging.getLogger(__name__)

#: What runs an answered call (the IVR, later): given its media, returns when done with it.
CallHandler = Callable[[MediaCall], Awaitable[None]]
#: Whether an incoming call rings (180) until its handler answers it.
RingFirst = Callable[[IncomingCall], bool]


@dataclass(slots=True)
class _Media:
    call: MediaCall
    port: int
    handled: bool = False  # its handler was started


@dataclass(slots=True)
class InboundCalls:
    """The inbound calls of one telephony service, from the core's offer to the handler's end."""

    core: SipCore
    control: CallControl
    media: MediaRunner
    ports: RtpPortAllocator
    prompts: PromptCache
    clock: Callable[[], float]
    #: Sends what the core produced and re-arms its timer (the service's).
    flush: Callable[[], None]
    hangup: Callable[[str], None]
    # Read at each call, not kept: the application sets them after start and unsets the
    # handler at shutdown while calls may still arrive.
    handler: Callable[[], CallHandler | None]
    ring_first: Callable[[], RingFirst | None]
    _calls: dict[str, _Media] = field(default_factory=dict)
    _pending: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)
    _rng: random.Random = field(default_factory=random.Random)

    def on_incoming(self, call: IncomingCall) -> None:
        now = self.clock()
        if call.answer_after > 0:
            self.core.ring(call.call_id, now)
            loop = asyncio.get_running_loop()
            self._pending[call.call_id] = loop.call_later(call.answer_after, self._answer, call)
        else:
            self._answer(call)

    def _answer(self, call: IncomingCall) -> None:
        self._pending.pop(call.call_id, None)
        leg = self.core.leg(call.call_id)
        if leg is None or leg.ended_at is not None:
            return
        now = self.clock()
        if not call.offer:
            # RFC 3264 also allows offers in the 2xx; CXOS needs the caller's codecs up front.
            self.core.reject(call.call_id, 488, now, "Offer Required")
            self.flush()
            return
        host = leg.local_host
        try:
            # Negotiated once, before taking ports: a call we cannot serve costs no socket. The
            # answer gets its port when one is bound (`_with_port`).
            answer, negotiated = answer_offer(
                parse_sdp(call.offer),
                host,
                0,
                session=SdpSession(session_id=self._rng.getrandbits(31), address=host),
            )
        except SdpNegotiationError as exc:
            logger.info("call %s: %s", call.call_id, exc)
            self.core.reject(call.call_id, 488, now)
            self.flush()
            return
        except SdpError as exc:
            logger.info("call %s: unusable SDP offer: %s", call.call_id, exc)
            self.core.reject(call.call_id, 400, now, "Bad SDP")
            self.flush()
            return
        ring_first = self.ring_first()
        asyncio.get_running_loop().create_task(
            self._open_and_answer(
                call.call_id,
                answer,
                negotiated,
                host,
                trunk_id=call.trunk_id,
                ring_first=ring_first is not None and ring_first(call),
            )
        )

    async def _open_and_answer(
        self,
        call_id: str,
        answer: SessionDescription,
        negotiated: Negotiated,
        host: str,
        *,
        trunk_id: str = "",
        ring_first: bool = False,
    ) -> None:
        leg = self.core.leg(call_id)
        try:
            # Ports held elsewhere are skipped; refused only when no pair of the range is left.
            bound = reserve_ports(self.ports, host, self.clock())
        except RuntimeError:
            logger.warning("call %s: no RTP port left in the configured range", call_id)
            bound = None
        law = Law.ALAW if negotiated.codec.name.upper() == "PCMA" else Law.ULAW
        if bound is not None:
            try:
                await self.media.open_leg(
                    call_id,
                    local=bound,
                    law=law,
                    payload_type=negotiated.codec.payload_type,
                    event_payload_type=negotiated.telephone_event,
                    remote=(negotiated.remote_address, negotiated.remote_port),
                    ptime=negotiated.ptime,
                    rtcp=negotiated.rtcp,
                    signalling=leg.source if leg is not None else None,
                )
            except OSError as exc:
                self.ports.release(bound.port)
                logger.warning("call %s: media cannot start: %s", call_id, exc)
                bound = None
            else:
                self.control.listen_for_keys(call_id, trunk_id, negotiated.telephone_event)
        leg = self.core.leg(call_id)
        if bound is None:
            if leg is not None and leg.ended_at is None:
                self.core.reject(call_id, 503, self.clock())
                self.flush()
            return
        port = bound.port
        if leg is None or leg.ended_at is not None:
            self.media.close_leg(call_id)
            self.ports.release(port)
            return
        call = MediaCall(
            self.media,
            call_id,
            law=law,
            prompts=self.prompts,
            hangup=lambda: self.hangup(call_id),
        )
        self._calls[call_id] = _Media(call, port)
        caller = leg.invite.from_
        api = Call(
            self.control,
            call_id=call_id,
            media=call,
            caller_id=caller.uri.user or "",
            caller_name=caller.display_name or "",
        )
        self.control.add_call(api)
        local_sdp = _with_port(answer, negotiated.media_index, port)
        if ring_first and self.handler() is not None:  # no handler: nobody would answer
            api.answer_later = lambda: self._answer_now(call_id, local_sdp)
            self.core.ring(call_id, self.clock())
            self.flush()
            self.start_handler(call_id)
            return
        self._answer_now(call_id, local_sdp)

    def _answer_now(self, call_id: str, local_sdp: bytes) -> None:
        leg = self.core.leg(call_id)
        if leg is None or leg.ended_at is not None or leg.answered_at is not None:
            return
        self.core.answer(call_id, local_sdp, self.clock())
        self.flush()

    def media_call(self, call_id: str) -> MediaCall | None:
        """The media of a call in progress (answered by this node), or None."""
        media = self._calls.get(call_id)
        return media.call if media is not None else None

    def start_handler(self, call_id: str) -> None:
        media = self._calls.get(call_id)
        handler = self.handler()
        if handler is None or media is None or media.handled:
            return  # no handler, no call, or a call that rang first and runs already
        media.handled = True
        # The handler is taken now: at shutdown it is unset while calls may still arrive.
        task = asyncio.get_running_loop().create_task(self._run_handler(handler, media.call))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _run_handler(self, handler: CallHandler, call: MediaCall) -> None:
        if call.call_id not in self._calls:
            # The caller hung up between the ACK and this task's first turn (a BYE in the same
            # burst of datagrams): there is no call left to hand over.
            return
        try:
            await handler(call)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("call %s: call handler failed; hanging up", call.call_id)
            call.hangup()

    def release(self, call_id: str) -> None:
        """The call ended: its delayed answer is cancelled, its media leg and port released."""
        handle = self._pending.pop(call_id, None)
        if handle is not None:
            handle.cancel()
        media = self._calls.pop(call_id, None)
        if media is not None:
            self.media.close_leg(call_id)
            self.ports.release(media.port)

    # ------------------------------------------------------------------ shutdown

    def cancel_pending(self) -> None:
        """No call waiting for its delayed answer is answered any more."""
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()

    def cancel_handlers(self) -> None:
        for task in list(self._handlers):
            task.cancel()

    def release_ports(self) -> None:
        """Give back the ports of the calls left (once the media runner is closed)."""
        for media in self._calls.values():
            self.ports.release(media.port)
        self._calls.clear()


def _with_port(answer: SessionDescription, media_index: int, port: int) -> bytes:
    """The answer with our RTP port in the accepted stream's m= line (RFC 3264 §6): the rest of
    it, o= line included, is what `answer_offer` negotiated."""
    media = list(answer.media)
    media[media_index] = replace(media[media_index], port=port)
    return replace(answer, media=tuple(media)).to_bytes()
