"""One call leg's RTP socket on the server (media anchoring, RFC 3550 §11 port pairs).

This is the socket a leg's SDP answer points at. It receives the caller's RTP, validates each
packet and counts what arrives and what is dropped; the media engine (playout, DTMF, bridging)
works on top of it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass, field

from telephony.rtp.packet import RtpParseError, parse
from telephony.sdp import Negotiated

logger = logging.getLogger(__name__)

Address = tuple[str, int]


@dataclass(slots=True)
class MediaCounters:
    received: int = 0
    octets: int = 0
    malformed: int = 0
    wrong_payload_type: int = 0


class _RtpProtocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: MediaEndpoint) -> None:
        self._endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._endpoint.on_datagram(data)


@dataclass(slots=True)
class MediaEndpoint:
    local: Address
    negotiated: Negotiated
    counters: MediaCounters = field(default_factory=MediaCounters)
    _transport: asyncio.DatagramTransport | None = None
    _payload_types: frozenset[int] = frozenset()

    async def open(self) -> None:
        self._payload_types = frozenset(
            pt
            for pt in (self.negotiated.codec.payload_type, self.negotiated.telephone_event)
            if pt is not None
        )
        family = socket.AF_INET6 if ":" in self.local[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind(self.local)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _RtpProtocol(self), sock=sock)
        self._transport = transport

    def on_datagram(self, data: bytes) -> None:
        counters = self.counters
        try:
            packet = parse(data)
        except RtpParseError:
            counters.malformed += 1
            return
        if packet.payload_type not in self._payload_types:
            counters.wrong_payload_type += 1
            return
        counters.received += 1
        counters.octets += len(packet.payload)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
