"""The asyncio half of SIP: UDP and TCP sockets on IPv4/IPv6 that feed bytes to the sans-IO core.

Everything protocol-related happens in the core; this file only moves bytes. Received UDP datagrams
are handed over whole (RFC 3261 §18.3: one message per datagram); TCP streams are cut into messages
by Content-Length with StreamFramer. A peer that sends garbage on TCP gets its connection closed
after the core has had the chance to answer: a stream that cannot be framed (RFC 3261 §18.3: a
missing, negative or repeated Content-Length, a message over the size limit) cannot be read any
further, so the unframeable bytes go to the core, which answers 400 or 513 when it can read
enough of them (RFC 4475 §3.1.2.3), and the connection is then closed.

TCP connections cost a socket and a buffer each, so they are bounded: at most
`max_tcp_connections` at once (more are closed as they arrive), and one sweep every few seconds
closes a connection that carried nothing for `tcp_idle_timeout` seconds or has held a partial
message for `partial_message_timeout` seconds (a client that opens connections and trickles bytes
would otherwise hold them forever). A CRLFCRLF keep-alive ping counts as traffic and gets its
CRLF pong (RFC 5626 §3.5.1), so a phone that keeps its connection alive that way keeps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, cast

from telephony.sip.errors import SipParseError
from telephony.sip.message import StreamFramer

logger = logging.getLogger(__name__)

TransportName = Literal["udp", "tcp"]
Address = tuple[str, int]
#: Called for every received message: (bytes, source address, transport, local address).
Receiver = Callable[[bytes, Address, TransportName, Address], None]


@dataclass(slots=True)
class TransportCounters:
    udp_received: int = 0
    tcp_received: int = 0
    sent: int = 0
    send_errors: int = 0
    tcp_framing_errors: int = 0
    tcp_connections: int = 0
    tcp_refused: int = 0
    """Connections closed on arrival because `max_tcp_connections` were open."""
    tcp_idle_closed: int = 0
    """Connections closed for carrying nothing, or a partial message, for too long."""


_MAX_UDP_PEERS = 65536
"""Peers whose UDP listener is remembered (with several listeners), the longest silent first
forgotten."""


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport, local: Address) -> None:
        self._owner = owner
        self._local = local
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport does not derive from asyncio.DatagramTransport; it has its API.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        owner = self._owner
        owner.counters.udp_received += 1
        host = str(addr[0])
        if owner.udp_multihomed and self._transport is not None:
            owner.remember_udp_peer(host, self._transport)
        owner.deliver(data, (host, int(addr[1])), "udp", self._local)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the transaction layer's timers handle the loss.
        logger.debug("UDP error on %s: %s", self._local, exc)


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, owner: SipTransport, local: Address, max_message: int) -> None:
        self._owner = owner
        self._local = local
        self._framer = StreamFramer(max_message_size=max_message)
        self._max_message = max_message
        # The bytes the framer holds (an incomplete message), kept to hand them to the core if
        # they turn out to be unframeable; bounded by the framer's own limit.
        self._pending = b""
        self._transport: asyncio.Transport | None = None
        self._peer: Address | None = None
        #: Loop time of the last bytes received or sent, for the idle sweep.
        self.last_activity = 0.0
        #: Loop time the partial message now held began arriving, or None.
        self.partial_since: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._peer = (str(peer[0]), int(peer[1]))
        self.last_activity = self._owner.now()
        if not self._owner.register_connection(self._peer, self._transport, self):
            self._peer = None  # not ours to forget when it closes
            self._transport.close()
            return
        self._owner.counters.tcp_connections += 1

    def data_received(self, data: bytes) -> None:
        if self._peer is None or self._transport is None or self._transport.is_closing():
            return
        now = self._owner.now()
        self.last_activity = now
        pending = self._pending + data if self._pending else data
        keepalives = self._framer.keepalives
        try:
            messages = self._framer.feed(data)
        except SipParseError as exc:
            self._owner.counters.tcp_framing_errors += 1
            logger.info("closing TCP connection from %s: %s", self._peer, exc.detail)
            self._refuse_unframed(pending)
            self._transport.close()
            return
        if self._framer.keepalives != keepalives:
            self._transport.write(b"\r\n")  # RFC 5626 §3.5.1: pong
        held = self._framer.buffered
        self._pending = pending[len(pending) - held :] if held else b""
        if not held:
            self.partial_since = None
        elif self.partial_since is None or messages:
            self.partial_since = now
        self._deliver_all(messages)

    def expired(self, now: float, idle_timeout: float, partial_timeout: float) -> bool:
        """Whether the sweep should close this connection at `now`."""
        if now - self.last_activity >= idle_timeout:
            return True
        return self.partial_since is not None and now - self.partial_since >= partial_timeout

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _deliver_all(self, messages: list[bytes]) -> None:
        assert self._peer is not None
        for message in messages:
            self._owner.counters.tcp_received += 1
            self._owner.deliver(message, self._peer, "tcp", self._local)

    def _refuse_unframed(self, pending: bytes) -> None:
        """Deliver what framed before the error, then the unframeable rest for the core to
        answer. The framer keeps the bad message at the start of its buffer, so it is the last
        `buffered` bytes of what it was given."""
        assert self._peer is not None
        cut = len(pending) - self._framer.buffered
        if cut > 0:
            # These bytes framed a moment ago; a fresh framer cuts them the same way.
            with contextlib.suppress(SipParseError):
                framer = StreamFramer(max_message_size=self._max_message)
                self._deliver_all(framer.feed(pending[:cut]))
        self._owner.counters.tcp_received += 1
        self._owner.deliver(pending[cut:], self._peer, "tcp", self._local)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._peer is not None:
            self._owner.forget_connection(self._peer)


@dataclass(slots=True)
class SipTransport:
    """All SIP sockets of one node; ``deliver`` hands every message to the core."""

    receiver: Receiver
    max_message: int = 16384
    #: Seconds a TCP connection may carry nothing before it is closed.
    tcp_idle_timeout: float = 600.0
    #: Seconds a TCP connection may hold an incomplete message before it is closed.
    partial_message_timeout: float = 30.0
    #: TCP connections open at once, in and out; more are closed as they arrive.
    max_tcp_connections: int = 2048
    counters: TransportCounters = field(default_factory=TransportCounters)
    _udp: dict[Address, asyncio.DatagramTransport] = field(default_factory=dict)
    _udp_by_family: dict[int, asyncio.DatagramTransport] = field(default_factory=dict)
    udp_multihomed: bool = False
    """More than one UDP listener of an address family: each message goes out of the one its
    destination is reached through (`_udp_for`)."""
    _udp_by_peer: dict[str, asyncio.DatagramTransport] = field(default_factory=dict)
    _servers: list[asyncio.Server] = field(default_factory=list)
    _connections: dict[Address, asyncio.Transport] = field(default_factory=dict)
    _protocols: dict[Address, _TcpProtocol] = field(default_factory=dict)
    _local_tcp: dict[int, Address] = field(default_factory=dict)
    _sweeper: asyncio.Task[None] | None = None

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def deliver(
        self, data: bytes, source: Address, transport: TransportName, local: Address
    ) -> None:
        try:
            self.receiver(data, source, transport, local)
        except Exception:
            # The core must never raise; if it does, the message is lost but the server lives on.
            logger.exception("SIP core failed on a message from %s/%s", source, transport)

    async def listen_udp(self, host: str, port: int) -> Address:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Call setups arrive in bursts faster than one loop turn: a larger buffer avoids drops.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.bind((host, port))
        sock.setblocking(False)
        bound = sock.getsockname()
        local: Address = (str(bound[0]), int(bound[1]))
        udp, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self, local), sock=sock)
        self._udp[local] = udp
        if family in self._udp_by_family:
            self.udp_multihomed = True
        self._udp_by_family.setdefault(family, udp)
        return local

    def remember_udp_peer(self, host: str, udp: asyncio.DatagramTransport) -> None:
        """``host`` talks to us on ``udp``: what we send it goes out of that listener."""
        peers = self._udp_by_peer
        if peers.get(host) is udp:
            return
        peers.pop(host, None)
        peers[host] = udp
        if len(peers) > _MAX_UDP_PEERS:
            del peers[next(iter(peers))]  # the longest silent

    def _udp_for(self, host: str, family: int) -> asyncio.DatagramTransport | None:
        """The UDP listener to send to ``host`` from. With one per family, that one. With
        several: the one ``host`` last sent to, so that a response leaves from the address and
        port its request came to (RFC 3581 §4; RFC 3261 §18.2.2 sends it back over the same
        transport), and a request to a peer we have not heard from leaves from the listener on
        the address the kernel would choose for it (a listener on 127.0.0.1 cannot send to the
        carrier's network); the first listener when neither is known."""
        default = self._udp_by_family.get(family)
        if not self.udp_multihomed:
            return default
        known = self._udp_by_peer.get(host)
        if known is not None:
            return known
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect((host, 9))  # no datagram is sent: a route lookup
                source = str(probe.getsockname()[0])
        except OSError:
            return default
        wildcard = None
        for (address, _), udp in self._udp.items():
            if address == source:
                self.remember_udp_peer(host, udp)
                return udp
            if address in ("0.0.0.0", "::") and wildcard is None:
                wildcard = udp
        return wildcard if wildcard is not None else default

    async def listen_tcp(self, host: str, port: int) -> Address:
        loop = asyncio.get_running_loop()
        holder: list[Address] = []

        def factory() -> _TcpProtocol:
            return _TcpProtocol(self, holder[0], self.max_message)

        server = await loop.create_server(factory, host=host, port=port, reuse_address=True)
        bound = server.sockets[0].getsockname()
        local: Address = (str(bound[0]), int(bound[1]))
        holder.append(local)
        self._servers.append(server)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_tcp())
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._local_tcp.setdefault(family, local)
        return local

    @property
    def tcp_connections_open(self) -> int:
        return len(self._connections)

    def register_connection(
        self, peer: Address, transport: asyncio.Transport, protocol: _TcpProtocol
    ) -> bool:
        """Track a new connection; False (and counted) when the limit is reached."""
        if len(self._connections) >= self.max_tcp_connections and peer not in self._connections:
            self.counters.tcp_refused += 1
            logger.debug("TCP connection from %s refused: %d open", peer, len(self._connections))
            return False
        self._connections[peer] = transport
        self._protocols[peer] = protocol
        return True

    def forget_connection(self, peer: Address) -> None:
        self._connections.pop(peer, None)
        self._protocols.pop(peer, None)

    async def _sweep_tcp(self) -> None:
        """Close idle and stalled connections; one pass every few seconds serves them all."""
        period = max(0.2, min(self.tcp_idle_timeout, self.partial_message_timeout) / 4)
        while True:
            await asyncio.sleep(min(period, 5.0))
            now = self.now()
            idle, partial = self.tcp_idle_timeout, self.partial_message_timeout
            for peer, protocol in list(self._protocols.items()):
                if protocol.expired(now, idle, partial):
                    self.counters.tcp_idle_closed += 1
                    logger.debug("closing TCP connection from %s: idle or stalled", peer)
                    self.forget_connection(peer)
                    protocol.close()

    def send(self, data: bytes, destination: Address, transport: TransportName) -> None:
        """Send one message; failures are counted and left to the transaction timers."""
        try:
            if transport == "udp":
                family = socket.AF_INET6 if ":" in destination[0] else socket.AF_INET
                udp = self._udp_for(destination[0], family)
                if udp is None:
                    raise OSError(f"no UDP socket for {destination[0]}")
                udp.sendto(data, destination)
            else:
                connection = self._connections.get(destination)
                if connection is None or connection.is_closing():
                    asyncio.get_running_loop().create_task(
                        self._connect_and_send(data, destination)
                    )
                    return
                connection.write(data)
                protocol = self._protocols.get(destination)
                if protocol is not None:
                    protocol.last_activity = self.now()
            self.counters.sent += 1
        except OSError as exc:
            self.counters.send_errors += 1
            logger.debug("send to %s/%s failed: %s", destination, transport, exc)

    async def _connect_and_send(self, data: bytes, destination: Address) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in destination[0] else socket.AF_INET
        local = self._local_tcp.get(family, ("0.0.0.0", 0))
        try:
            connection, _ = await loop.create_connection(
                lambda: _TcpProtocol(self, local, self.max_message),
                host=destination[0],
                port=destination[1],
            )
        except OSError as exc:
            self.counters.send_errors += 1
            logger.debug("TCP connect to %s failed: %s", destination, exc)
            return
        connection.write(data)
        self.counters.sent += 1

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for server in self._servers:
            server.close()
        for connection in list(self._connections.values()):
            connection.close()
        for udp in self._udp.values():
            udp.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self._servers.clear()
        self._udp.clear()
        self._udp_by_family.clear()
        self._udp_by_peer.clear()
        self._connections.clear()
        self._protocols.clear()
