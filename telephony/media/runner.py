"""The asyncio side of the media engine: the sockets of every leg and the one pacing timer.

Each leg binds an even RTP port and the RTCP port above it (RFC 3550 §11). The pair is bound
when it is taken from the range (`reserve_ports`), before its number goes out in an SDP offer
or answer, and held until the leg closes or the call fails: a port we have announced cannot be
taken by another program meanwhile. The RTP socket is a datagram endpoint of the event loop:
uvloop reads every datagram waiting at each wake-up (reading one per wake-up with
`loop.add_reader` was measured at 10 % more CPU per relayed packet under load). The RTCP socket,
a datagram every few seconds, is only watched (`loop.add_reader`): no transport to build and
tear down per call. A datagram goes straight into `MediaEngine.receive`; the relayed packet it
may produce is sent at once from the other leg's socket. One `loop.call_at` timer, armed at
the engine's absolute deadline, runs `MediaEngine.tick` for every leg of the worker and sends
its whole batch in one pass. Sends go to the non-blocking socket directly: a full socket buffer
drops the packet (counted in `send_dropped`), as a network would, instead of queueing stale audio.

Media events are handed to the `MediaCall` of their leg (calls.py) and then to `publish`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from telephony.media.engine import EngineSettings, MediaEngine, Transmit
from telephony.media.events import MediaLegClosed
from telephony.media.leg import Address, MediaLeg
from telephony.media.recording_thread import RecordingThread
from telephony.media.settings import LegSettings
from telephony.rtp.g711 import Law
from telephony.rtp.ports import RtpPortAllocator, rtcp_port

logger = logging.getLogger(__name__)

EventSink = Callable[[object], None]


#: Bytes read per RTCP datagram: far above any compound report we take in.
_MAX_DATAGRAM = 4096


class _RtpProtocol(asyncio.DatagramProtocol):
    __slots__ = ("_call_id", "_runner")

    def __init__(self, runner: MediaRunner, call_id: str) -> None:
        self._runner = runner
        self._call_id = call_id

    def datagram_received(self, data: bytes, addr: Address) -> None:
        # The hot path of every relayed packet.
        runner = self._runner
        engine = runner.engine
        out = engine.receive(self._call_id, data, addr, runner.clock())
        if out is not None:
            runner.send_rtp(out)
            if engine.keys.sends:  # a key relayed to more than one listener
                for transmit in engine.keys.take_sends():
                    runner.send_rtp(transmit)
        if engine.has_events:
            runner.dispatch()

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a peer that went away: the call's signalling will end it.
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("call %s: RTP socket error: %s", self._call_id, exc)


@dataclass(slots=True, eq=False)
class BoundPorts:
    """An RTP/RTCP pair bound on `host` for a leg to come (`MediaRunner.open_leg`)."""

    host: str
    port: int
    rtp: socket.socket
    rtcp: socket.socket

    def close(self) -> None:
        """Let the pair go (the call failed before its media opened); the port's return to the
        allocator is the caller's. Idempotent."""
        self.rtp.close()
        self.rtcp.close()


def bind_pair(host: str, port: int) -> BoundPorts:
    """Bind RTP `port` and its RTCP port on `host`; OSError if either is taken."""
    rtp = _bind(host, port)
    try:
        rtcp = _bind(host, rtcp_port(port))
    except OSError:
        rtp.close()
        raise
    return BoundPorts(host, port, rtp, rtcp)


def reserve_ports(ports: RtpPortAllocator, host: str, now: float) -> BoundPorts:
    """Take a pair from the range and bind it. A port another program holds is set aside by the
    allocator and the next one tried; `PortRangeExhaustedError` when no pair is left."""
    while True:
        port = ports.allocate(now)
        try:
            return bind_pair(host, port)
        except OSError as exc:
            ports.mark_unavailable(port, now)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("RTP port %d unavailable: %s", port, exc)


@dataclass(slots=True)
class _Sockets:
    rtp: socket.socket
    rtcp: socket.socket
    rtp_transport: asyncio.BaseTransport
    loop: asyncio.AbstractEventLoop
    """The loop watching the RTCP socket (`add_reader`)."""

    def close(self) -> None:
        self.rtp_transport.close()
        self.loop.remove_reader(self.rtcp.fileno())
        self.rtcp.close()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class MediaRunner:
    """Runs a `MediaEngine` on the event loop: sockets per leg, one ticker for all."""

    def __init__(
        self,
        *,
        settings: EngineSettings | None = None,
        publish: EventSink | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.engine = MediaEngine(
            origin=clock(), settings=settings, wallclock_offset=time.time() - clock()
        )
        self.publish: EventSink = publish if publish is not None else (lambda event: None)
        self.send_dropped = 0
        self.recordings = RecordingThread()
        """Writes the recording files of every leg, off the event loop."""
        self._sockets: dict[str, _Sockets] = {}
        self._handlers: dict[str, EventSink] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    def __len__(self) -> int:
        return len(self._sockets)

    async def open_leg(
        self,
        call_id: str,
        *,
        local: tuple[str, int] | BoundPorts,
        law: Law,
        payload_type: int,
        event_payload_type: int | None,
        remote: tuple[str, int],
        settings: LegSettings | None = None,
        ptime: int | None = None,
        rtcp: tuple[str, int] | None = None,
        signalling: Address | None = None,
    ) -> MediaLeg:
        """Start handling a leg's media on its ports: `local` is a pair bound already
        (`reserve_ports`), which the leg owns from now on, or an address to bind now. `ptime`
        is the peer's a=ptime (ms per packet it wants to receive), if its SDP had one."""
        bound = local if isinstance(local, BoundPorts) else bind_pair(*local)
        rtp, rtcp_socket = bound.rtp, bound.rtcp
        loop = asyncio.get_running_loop()
        try:
            rtp_transport, _ = await loop.create_datagram_endpoint(
                lambda: _RtpProtocol(self, call_id), sock=rtp
            )
        except OSError:
            bound.close()
            raise
        loop.add_reader(rtcp_socket.fileno(), self._read_rtcp, rtcp_socket, call_id)
        self._sockets[call_id] = _Sockets(rtp, rtcp_socket, rtp_transport, loop)
        leg = self.engine.open_leg(
            call_id,
            law=law,
            payload_type=payload_type,
            event_payload_type=event_payload_type,
            remote=remote,
            now=self.clock(),
            settings=settings,
            ptime=ptime,
            rtcp=rtcp,
            signalling=signalling,
        )
        self.arm()
        return leg

    def close_leg(self, call_id: str) -> None:
        """Stop the leg's media, report its figures, close its sockets."""
        self.engine.close_leg(call_id, self.clock())
        self.dispatch()
        sockets = self._sockets.pop(call_id, None)
        if sockets is not None:
            sockets.close()
        self._handlers.pop(call_id, None)
        self.arm()

    async def close(self) -> None:
        for call_id in list(self._sockets):
            self.close_leg(call_id)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = None
        # The legs' recordings were closed with them: let the writer finish their files.
        await asyncio.to_thread(self.recordings.close)

    def subscribe(self, call_id: str, handler: EventSink) -> None:
        """Send the media events of one leg to `handler` (before they are published)."""
        self._handlers[call_id] = handler

    # ------------------------------------------------------------------ input

    def _read_rtcp(self, sock: socket.socket, call_id: str) -> None:
        """One datagram on a leg's RTCP socket: the peer's reports."""
        try:
            data, source = sock.recvfrom(_MAX_DATAGRAM)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("call %s: RTCP socket error: %s", call_id, exc)
            return
        self.engine.receive_rtcp(call_id, data, source, self.clock())

    # ------------------------------------------------------------------ output

    def send_rtp(self, transmit: Transmit) -> None:
        call_id, data, destination = transmit
        sockets = self._sockets.get(call_id)
        if sockets is None:
            return
        try:
            sockets.rtp.sendto(data, destination)
        except OSError:
            # BlockingIOError (buffer full) or a transient network error: the packet is lost.
            self.send_dropped += 1

    def _send_batch(self, transmits: list[Transmit], rtcp: bool) -> None:
        table = self._sockets
        dropped = 0
        for call_id, data, destination in transmits:
            sockets = table.get(call_id)
            if sockets is None:
                continue
            try:
                (sockets.rtcp if rtcp else sockets.rtp).sendto(data, destination)
            except OSError:
                dropped += 1
        self.send_dropped += dropped

    def dispatch(self) -> None:
        """Hand the engine's events to their calls' handlers, then publish them."""
        for event in self.engine.take_events():
            call_id = getattr(event, "call_id", None)
            handler = self._handlers.get(call_id) if isinstance(call_id, str) else None
            if handler is not None:
                handler(event)
            if isinstance(event, MediaLegClosed):
                self._handlers.pop(event.call_id, None)
            self.publish(event)

    # ------------------------------------------------------------------ the pacing timer

    def arm(self) -> None:
        """(Re)arm the ticker for the engine's next deadline; call after changing what plays."""
        deadline = self.engine.next_deadline
        if deadline == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = None
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        # The engine's clock and the loop's may differ in origin: convert the delay, not the
        # instant. Each deadline is absolute on the engine's grid, so errors never accumulate.
        self._timer = loop.call_at(loop.time() + (deadline - self.clock()), self._on_tick)
        self._timer_at = deadline

    def _on_tick(self) -> None:
        self._timer = None
        self._timer_at = None
        engine = self.engine
        transmits = engine.tick(self.clock())
        if transmits:
            self._send_batch(transmits, rtcp=False)
        rtcp = engine.take_rtcp()
        if rtcp:
            self._send_batch(rtcp, rtcp=True)
        if engine.has_events:
            self.dispatch()
        self.arm()

    def local_address(self, call_id: str) -> Address:
        return tuple(self._sockets[call_id].rtp.getsockname())
