"""The asyncio side of telephony: sockets, one timer, and the call decisions of this layer.

The sans-IO `SipCore` does the protocol; this service feeds it bytes and time, transmits what it
produces, arms a single ``call_at`` for its next deadline (aioquic's shape) and answers inbound
calls with a media leg from the RTP port range, run by the worker's media engine.

Upper layers (IVR, ACD) get each answered call's `MediaCall` through `call_handler`, run as a
task once the caller's ACK confirms the call (unless the call ended before the task's turn came),
and its call API object (`telephony.calls.Call`: ring and bridge agents, hold, transfer) from
`call(call_id)`; media events are published with the others. A call whose media stops for
longer than the media timeout is hung up (a dead peer sends no BYE). Calls to agents, re-offers
and transfers are `CallControl`'s (call_control.py), as are calls out through trunks
(`originate_external`, and `call_out` for a call with no caller behind it).
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from config.loader import Configuration
from config.settings import Trunk
from telephony.call_control import CallControl
from telephony.calls import AgentLeg, Call, CallOutFailure, ExternalLeg, RingFailure
from telephony.events import CallAnswered, CallEnded
from telephony.media.calls import MediaCall
from telephony.media.events import MediaTimeout
from telephony.media.runner import MediaRunner
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
from telephony.sip.agent_auth import AgentCallAuth
from telephony.sip.core import CoreSettings, IncomingCall, SipCore
from telephony.sip.digest import Algorithm, StoredSecret
from telephony.sip.guard import FloodNotice, GuardSettings, GuardVerdict, SourceGuard
from telephony.sip.registrar import Registrar, RegistrarSettings
from telephony.sip.transaction import TransactionLayer
from telephony.sip.transport import Address, SipTransport, TransportName
from telephony.stats import RtpStats, SipStats, SipTally, TelephonyStats
from telephony.trunks import TrunkTable, outbound_trunk

logger = logging.getLogger(__name__)

#: Where the events of this layer go (the application's event bus).
EventSink = Callable[[object], None]
#: What runs an answered call (the IVR, later): given its media, returns when done with it.
CallHandler = Callable[[MediaCall], Awaitable[None]]


@dataclass(slots=True)
class _Media:
    call: MediaCall
    port: int


@dataclass(slots=True)
class TelephonyService:
    """SIP signalling and call handling of one node."""

    configuration: Configuration
    publish: EventSink = field(default=lambda event: None)
    clock: Callable[[], float] = time.monotonic
    name: str = "telephony"
    core: SipCore = field(init=False)
    control: CallControl = field(init=False)
    transport: SipTransport = field(init=False)
    ports: RtpPortAllocator = field(init=False)
    media: MediaRunner = field(init=False)
    prompts: PromptCache = field(default_factory=PromptCache)
    call_handler: CallHandler | None = None
    _timer: asyncio.TimerHandle | None = None
    _timer_at: float | None = None
    _media: dict[str, _Media] = field(default_factory=dict)
    _pending: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    _idle: asyncio.Event = field(default_factory=asyncio.Event)
    _rng: random.Random = field(default_factory=random.Random)
    _secrets: dict[str, StoredSecret] = field(default_factory=dict)
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)
    _sent: SipTally = field(default_factory=SipTally)

    def __post_init__(self) -> None:
        server = self.configuration.server
        security = server.security
        self._secrets = _secrets(self.configuration)
        guard = SourceGuard(
            GuardSettings(
                max_failures=security.max_auth_failures,
                failure_window=security.failure_window,
                block_seconds=security.block_seconds,
                rate=security.request_rate,
                burst=security.request_burst,
            )
        )
        registrar_settings = server.registrar
        digest_settings = RegistrarSettings(
            realm=registrar_settings.realm,
            min_expires=registrar_settings.min_expires,
            max_expires=registrar_settings.max_expires,
            default_expires=registrar_settings.default_expires,
            nonce_lifetime=registrar_settings.nonce_lifetime,
            algorithms=tuple(Algorithm(name) for name in registrar_settings.digest_algorithms),
            md5_only_user_agents=registrar_settings.md5_only_user_agents,
        )
        registrar = Registrar(
            digest_settings,
            credentials=self._secrets.get,
            # Nonces are keyed per process: after a restart phones get a fresh challenge.
            secret=secrets.token_bytes(32),
            guard=guard,
        )
        self.core = SipCore(
            settings=CoreSettings(
                user_agent=server.sip.user_agent,
                max_message_bytes=server.sip.max_message_bytes,
                public_address=server.sip.public_address,
            ),
            transactions=TransactionLayer(),
            trunks=TrunkTable.build(self.configuration.trunks),
            dialplan=self.configuration.dialplan,
            registrar=registrar,
            guard=guard,
            # Agents' softphones place calls with the same credentials and challenges as they
            # register with (INVITEs from where a softphone is registered: agent_auth.py).
            agent_auth=AgentCallAuth(
                digest_settings,
                credentials=self._secrets.get,
                secret=secrets.token_bytes(32),
                guard=guard,
            ),
        )
        self.transport = SipTransport(
            self._on_message,
            max_message=server.sip.max_message_bytes,
            tcp_idle_timeout=server.sip.tcp_idle_timeout,
            partial_message_timeout=server.sip.tcp_partial_message_timeout,
            max_tcp_connections=server.sip.max_tcp_connections,
        )
        self.ports = RtpPortAllocator(first_port=server.rtp.port_min, last_port=server.rtp.port_max)
        self.media = MediaRunner(publish=self._on_media_event, clock=self.clock)
        self.control = CallControl(
            core=self.core,
            media=self.media,
            ports=self.ports,
            prompts=self.prompts,
            clock=self.clock,
            publish=self.publish,
            flush=self._flush,
            hangup_call=self.hangup,
            ring_timeout=server.sip.ring_timeout,
            trunk_for=self._trunk_for,
        )
        self._idle.set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        for listen in self.configuration.server.sip.listen:
            if listen.transport == "udp":
                bound = await self.transport.listen_udp(listen.host, listen.port)
            else:
                bound = await self.transport.listen_tcp(listen.host, listen.port)
            logger.info("SIP listening on %s/%s", _format(bound), listen.transport)
            if self.core.default_local is None:
                # Requests to a phone whose REGISTER this process has not seen leave from here.
                self.core.default_local = bound

    async def stop(self, grace: float) -> None:
        """Stop taking calls, end the ones in progress with BYE, wait for them within ``grace``."""
        self.core.accepting_calls = False
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()
        now = self.clock()
        for call_id in self.core.active_calls():
            self.core.hangup(call_id, now)
        self._flush()
        if self.core.active_calls():
            try:
                await asyncio.wait_for(self._idle.wait(), grace)
            except TimeoutError:
                logger.warning(
                    "%d call(s) did not end within %.1fs", len(self.core.active_calls()), grace
                )
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._handlers):
            task.cancel()
        self.control.close()
        await self.media.close()
        for media in self._media.values():
            self.ports.release(media.port)
        self._media.clear()
        await self.transport.close()

    def reconfigure(self, configuration: Configuration) -> None:
        self.configuration = configuration
        self.core.trunks = TrunkTable.build(configuration.trunks)
        self.core.dialplan = configuration.dialplan
        # The registrar reads credentials through this mapping, so edits apply at once.
        self._secrets.clear()
        self._secrets.update(_secrets(configuration))

    # ------------------------------------------------------------------ I/O → core

    def _on_message(
        self, data: bytes, source: Address, transport: TransportName, local: Address
    ) -> None:
        self.core.receive(data, source, transport, local, self.clock())
        if self.core.guard.notices:
            for notice in self.core.guard.take_notices():
                _log_flood(notice)
        self._flush()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.core.on_timer(self.clock())
        self._flush()

    def _flush(self) -> None:
        """Send what the core produced, act on its events, re-arm the one timer."""
        # Acting on events may produce more output (answers, BYEs, NOTIFYs): drain it all.
        while True:
            transmits, events = self.core.take_output()
            if not transmits and not events:
                break
            for transmit in transmits:
                self._sent.sent(transmit.data)
                self.transport.send(transmit.data, transmit.destination, transmit.transport)  # type: ignore[arg-type]
            for event in events:
                self._on_core_event(event)
        if self.core.has_active_calls():
            self._idle.clear()
        else:
            self._idle.set()
        self._arm()

    def _on_core_event(self, event: object) -> None:
        if isinstance(event, IncomingCall):
            self._on_incoming(event)
            return
        if isinstance(event, CallEnded):
            self._release(event.call_id)
        elif isinstance(event, CallAnswered):
            self._start_handler(event.call_id)
        if self.control.on_event(event):
            self.publish(event)

    def _arm(self) -> None:
        deadline = self.core.next_timer()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = None
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        # The core's clock and the loop's may differ in origin; convert the delay, not the instant.
        delay = max(0.0, deadline - self.clock())
        self._timer = loop.call_at(loop.time() + delay, self._on_timer)
        self._timer_at = deadline

    # ------------------------------------------------------------------ calls

    def _on_incoming(self, call: IncomingCall) -> None:
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
            self._flush()
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
            self._flush()
            return
        except SdpError as exc:
            logger.info("call %s: unusable SDP offer: %s", call.call_id, exc)
            self.core.reject(call.call_id, 400, now, "Bad SDP")
            self._flush()
            return
        asyncio.get_running_loop().create_task(
            self._open_and_answer(call.call_id, answer, negotiated, host)
        )

    async def _open_and_answer(
        self, call_id: str, answer: SessionDescription, negotiated: Negotiated, host: str
    ) -> None:
        # A port of the range may be taken by another program: the allocator sets it aside for a
        # while and hands out the next one; it refuses only when no pair of the range is left.
        while True:
            try:
                port = self.ports.allocate(self.clock())
            except RuntimeError:
                logger.warning("call %s: no RTP port left in the configured range", call_id)
                break
            law = Law.ALAW if negotiated.codec.name.upper() == "PCMA" else Law.ULAW
            try:
                await self.media.open_leg(
                    call_id,
                    local=(host, port),
                    law=law,
                    payload_type=negotiated.codec.payload_type,
                    event_payload_type=negotiated.telephone_event,
                    remote=(negotiated.remote_address, negotiated.remote_port),
                    ptime=negotiated.ptime,
                )
            except OSError as exc:
                self.ports.mark_unavailable(port, self.clock())
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("call %s: RTP port %d unavailable: %s", call_id, port, exc)
                continue
            leg = self.core.leg(call_id)
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
            self._media[call_id] = _Media(call, port)
            caller = leg.invite.from_
            self.control.add_call(
                Call(
                    self.control,
                    call_id=call_id,
                    media=call,
                    caller_id=caller.uri.user or "",
                    caller_name=caller.display_name or "",
                )
            )
            self.core.answer(
                call_id, _with_port(answer, negotiated.media_index, port), self.clock()
            )
            self._flush()
            return
        leg = self.core.leg(call_id)
        if leg is not None and leg.ended_at is None:
            self.core.reject(call_id, 503, self.clock())
            self._flush()

    def media_call(self, call_id: str) -> MediaCall | None:
        """The media of a call in progress (answered by this node), or None."""
        media = self._media.get(call_id)
        return media.call if media is not None else None

    def call(self, call_id: str) -> Call | None:
        """The call API object of a caller's call in progress, or None."""
        return self.control.call(call_id)

    async def originate(
        self, sip_user: str, *, ring_timeout: float | None = None, call_id: str | None = None
    ) -> AgentLeg | RingFailure:
        """Ring an agent outside any caller's call (e.g. a callback's first leg)."""
        timeout = ring_timeout or self.configuration.server.sip.ring_timeout
        return await self.control.originate(
            sip_user, call_id=call_id or secrets.token_hex(8), ring_timeout=timeout
        )

    async def originate_external(
        self,
        number: str,
        trunk: str | None = None,
        *,
        caller_id: str = "",
        ring_timeout: float | None = None,
        call_id: str | None = None,
    ) -> ExternalLeg | CallOutFailure:
        """Call `number` out through `trunk` (None: the default outbound trunk) outside any
        caller's call; the answered leg, to bridge like an agent leg, or why it failed."""
        return await self.control.originate_external(
            number,
            call_id=call_id,
            ring_timeout=ring_timeout or self.configuration.server.sip.ring_timeout,
            trunk=trunk,
            caller_id=caller_id,
        )

    async def call_out(
        self,
        number: str,
        trunk: str | None = None,
        *,
        caller_id: str = "",
        ring_timeout: float | None = None,
    ) -> Call | CallOutFailure:
        """Call `number` with no caller behind it (a callback): the answered call, with media
        (play, collect, bridge...) like an inbound call's, or why it failed."""
        return await self.control.call_out(
            number,
            ring_timeout=ring_timeout or self.configuration.server.sip.ring_timeout,
            trunk=trunk,
            caller_id=caller_id,
        )

    def _trunk_for(self, name: str | None) -> Trunk | None:
        configuration = self.configuration
        return outbound_trunk(configuration.trunks, configuration.default_outbound, name)

    def hangup(self, call_id: str) -> None:
        """End a call from the server side (BYE once answered)."""
        self.core.hangup(call_id, self.clock())
        self._flush()

    def _start_handler(self, call_id: str) -> None:
        media = self._media.get(call_id)
        handler = self.call_handler
        if handler is None or media is None:
            return
        # The handler is taken now: at shutdown it is unset while calls may still arrive.
        task = asyncio.get_running_loop().create_task(self._run_handler(handler, media.call))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _run_handler(self, handler: CallHandler, call: MediaCall) -> None:
        if call.call_id not in self._media:
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

    def stats(self) -> TelephonyStats:
        """A snapshot of the SIP and RTP counters (read at each metrics scrape)."""
        core = self.core
        transactions = core.transactions
        guard = core.guard.counters
        received = core.counters.traffic
        bindings, users = core.registrar.binding_counts()
        media, lost = self.media.engine.totals()
        drops = media.drops.as_dict()
        drops["foreign_address"] = media.foreign_address
        drops["flood"] = media.flood
        capacity = self.ports.capacity
        return TelephonyStats(
            sip=SipStats(
                requests_received=dict(received.requests_received),
                responses_received=dict(received.responses_received),
                requests_sent=dict(self._sent.requests_sent),
                responses_sent=dict(self._sent.responses_sent),
                malformed_dropped=core.counters.malformed_dropped
                + transactions.counters.malformed_dropped,
                malformed_answered=core.counters.malformed_answered,
                transactions_client=transactions.client_count,
                transactions_server=transactions.server_count,
                transaction_timeouts=transactions.counters.timeouts,
                retransmissions_sent=transactions.counters.retransmissions_sent,
                overload_rejections=transactions.counters.overload_rejections,
                registrations=bindings,
                registered_users=users,
                auth_failures=guard.auth_failures,
                sources_blocked=guard.blocks,
                dropped_blocked=guard.dropped_blocked,
                dropped_rate_limited=guard.dropped_rate_limited,
                sources_blocked_now=core.guard.blocked_count(self.clock()),
            ),
            rtp=RtpStats(
                packets_received=media.received,
                packets_sent=media.sent,
                packets_dropped=drops,
                packets_lost=lost,
                send_errors=self.media.send_dropped,
                legs=len(self.media.engine),
                ports_in_use=capacity - self.ports.available,
                ports_capacity=capacity,
            ),
        )

    def _on_media_event(self, event: object) -> None:
        if isinstance(event, MediaTimeout):
            logger.info(
                "call %s: no media for %.0f s, hanging up", event.call_id, event.silent_seconds
            )
            self.hangup(event.call_id)
        self.publish(event)

    def _release(self, call_id: str) -> None:
        handle = self._pending.pop(call_id, None)
        if handle is not None:
            handle.cancel()
        media = self._media.pop(call_id, None)
        if media is not None:
            self.media.close_leg(call_id)
            self.ports.release(media.port)


def _secrets(configuration: Configuration) -> dict[str, StoredSecret]:
    return {
        agent.sip_user: StoredSecret(
            password=agent.password, ha1_md5=agent.ha1_md5, ha1_sha256=agent.ha1_sha256
        )
        for agent in configuration.agents
    }


def _with_port(answer: SessionDescription, media_index: int, port: int) -> bytes:
    """The answer with our RTP port in the accepted stream's m= line (RFC 3264 §6): the rest of
    it, o= line included, is what `answer_offer` negotiated."""
    media = list(answer.media)
    media[media_index] = replace(media[media_index], port=port)
    return replace(answer, media=tuple(media)).to_bytes()


def _log_flood(notice: FloodNotice) -> None:
    # Throttled by the guard to one line per source per notice interval: the flood shows in
    # the log as it happens, without a line per dropped request.
    if notice.verdict is GuardVerdict.BLOCKED:
        logger.warning(
            "security: dropping requests from blocked source %s (%d dropped since the last notice)",
            notice.source,
            notice.dropped,
        )
    elif notice.trunk_id is not None:
        logger.warning(
            "security: trunk %s over its INVITE rate from %s; dropping (%d dropped since the "
            "last notice)",
            notice.trunk_id,
            notice.source,
            notice.dropped,
        )
    else:
        logger.warning(
            "security: rate limiting source %s (%s over its rate; %d dropped since the last "
            "notice)",
            notice.source,
            notice.method,
            notice.dropped,
        )


def _format(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
