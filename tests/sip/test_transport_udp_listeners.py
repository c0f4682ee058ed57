"""UDP listeners on several addresses: what the server sends leaves from the right one.

A server listening on a carrier-facing address and on another (here two loopback addresses)
must answer each request from the address and port it came to (RFC 3581 §4, RFC 3261 §18.2.2);
a listener on 127.0.0.1 cannot even reach the carrier's network."""

from __future__ import annotations

import asyncio
import socket

from telephony.sip.transport import Address, SipTransport, TransportName


class _Echo:
    """A receiver that answers every datagram to its source, as the core answers requests."""

    def __init__(self) -> None:
        self.transport: SipTransport | None = None
        self.arrived_on: list[Address] = []

    def __call__(self, data: bytes, source: Address, kind: TransportName, local: Address) -> None:
        self.arrived_on.append(local)
        assert self.transport is not None
        self.transport.send(b"answer to " + data, source, kind)


def _client(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


async def _exchange(sock: socket.socket, to: Address) -> tuple[bytes, Address]:
    loop = asyncio.get_running_loop()
    await loop.sock_sendto(sock, b"request", to)
    data, source = await asyncio.wait_for(loop.sock_recvfrom(sock, 2048), timeout=5.0)
    return data, (str(source[0]), int(source[1]))


async def test_each_request_is_answered_from_the_listener_it_came_to() -> None:
    echo = _Echo()
    transport = echo.transport = SipTransport(echo)
    first = await transport.listen_udp("127.0.0.1", 0)
    second = await transport.listen_udp("127.0.0.2", 0)
    to_first, to_second = _client("127.0.0.3"), _client("127.0.0.4")
    try:
        assert await _exchange(to_second, second) == (b"answer to request", second)
        assert await _exchange(to_first, first) == (b"answer to request", first)
        # The peer that used the second address is still answered from it.
        assert await _exchange(to_second, second) == (b"answer to request", second)
    finally:
        to_first.close()
        to_second.close()
        await transport.close()
    assert echo.arrived_on == [second, first, second]


async def test_a_peer_not_heard_from_is_sent_to_from_the_address_the_route_gives() -> None:
    # The first listener is on 127.0.0.2; the kernel sends to other loopback addresses from
    # 127.0.0.1, so a request to a new peer leaves from the listener there, not the first one.
    transport = SipTransport(lambda data, source, kind, local: None)
    await transport.listen_udp("127.0.0.2", 0)
    routed = await transport.listen_udp("127.0.0.1", 0)
    peer = _client("127.0.0.5")
    loop = asyncio.get_running_loop()
    try:
        transport.send(b"OPTIONS", (str(peer.getsockname()[0]), peer.getsockname()[1]), "udp")
        data, source = await asyncio.wait_for(loop.sock_recvfrom(peer, 2048), timeout=5.0)
    finally:
        peer.close()
        await transport.close()
    assert (data, (str(source[0]), int(source[1]))) == (b"OPTIONS", routed)
