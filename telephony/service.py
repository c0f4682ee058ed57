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
(`originate_external`, and `call_out` for a call with no caller behind it). Answering inbound
calls, ringing first when `ring_first` says so, and running their handlers is `InboundCalls`'s
(inbound_calls.py).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from config.loader import Configuration
from config.settings import DtmfMode, Trunk
from telephony.call_control import CallControl
from telephony.calls import AgentLeg, Call, CallOutFailure, ExternalLeg, RingFailure
from telephony.events import CallAnswered, CallEnded
from telephony.inbound_calls import CallHandler, InboundCalls, RingFirst
from telephony.media.calls import MediaCall
from telephony.media.engine import EngineSettings
from telephony.media.events import MediaTimeout
from telephony.media.priority import apply_media_nice
from telephony.media.runner import MediaRunner
from telephony.rtp.audio import PromptCache
from telephony.rtp.ports import RtpPortAllocator
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

__all__ = ["CallHandler", "EventSink", "RingFirst", "TelephonyService"]

#: Where the events of this layer go (the application's event bus).
EventSink = Callable[[object], None]


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
    inbound: InboundCalls = field(init=False)
    prompts: PromptCache = field(default_factory=PromptCache)
    call_handler: CallHandler | None = None
    #: Whether an incoming call rings (180) until its handler answers it, rather than being
    #: answered at once; None: every call is answered at once.
    ring_first: RingFirst | None = None
    _timer: asyncio.TimerHandle | None = None
    _timer_at: float | None = None
    _idle: asyncio.Event = field(default_factory=asyncio.Event)
    _secrets: dict[str, StoredSecret] = field(default_factory=dict)
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
            challenge_unregistered_calls=registrar_settings.challenge_unregistered_calls,
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
        self.media = MediaRunner(
            settings=EngineSettings(comfort_noise_dbm0=server.media.comfort_noise_dbm0),
            publish=self._on_media_event,
            clock=self.clock,
        )
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
            dtmf_mode=self._dtmf_mode,
        )
        self.inbound = InboundCalls(
            core=self.core,
            control=self.control,
            media=self.media,
            ports=self.ports,
            prompts=self.prompts,
            clock=self.clock,
            flush=self._flush,
            hangup=self.hangup,
            handler=lambda: self.call_handler,
            ring_first=lambda: self.ring_first,
        )
        self._idle.set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        nice = self.configuration.server.media.nice
        if nice is not None:
            apply_media_nice(nice)  # this thread runs the media engine (and the event loop)
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
        self.inbound.cancel_pending()
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
        self.inbound.cancel_handlers()
        self.control.close()
        await self.media.close()
        self.inbound.release_ports()
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
            self.inbound.on_incoming(event)
            return
        if isinstance(event, CallEnded):
            self.inbound.release(event.call_id)
        elif isinstance(event, CallAnswered):
            self.inbound.start_handler(event.call_id)
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

    def media_call(self, call_id: str) -> MediaCall | None:
        """The media of a call in progress (answered by this node), or None."""
        return self.inbound.media_call(call_id)

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

    def _dtmf_mode(self, trunk_id: str) -> DtmfMode:
        trunk = next((t for t in self.configuration.trunks if t.id == trunk_id), None)
        return trunk.dtmf if trunk is not None else "auto"

    def hangup(self, call_id: str) -> None:
        """End a call from the server side (BYE once answered)."""
        self.core.hangup(call_id, self.clock())
        self._flush()

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
                port_bind_failures=self.ports.bind_failures,
                ports_refused=self.ports.refused,
                ports_unavailable=self.ports.unavailable,
                comfort_noise_received=media.comfort_noise,
            ),
        )

    def _on_media_event(self, event: object) -> None:
        if isinstance(event, MediaTimeout):
            logger.info(
                "call %s: no media for %.0f s, hanging up", event.call_id, event.silent_seconds
            )
            self.hangup(event.call_id)
        self.publish(event)


def _secrets(configuration: Configuration) -> dict[str, StoredSecret]:
    return {
        agent.sip_user: StoredSecret(
            password=agent.password, ha1_md5=agent.ha1_md5, ha1_sha256=agent.ha1_sha256
        )
        for agent in configuration.agents
    }


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
