"""Event stream fan-out: clients with the same filter share one subscription, yet one of them
falling behind is cut off alone, and frames of every length reach a real WebSocket client."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from config.api import StreamSettings
from tests.supervisor.supervisor_app import SUPERVISOR, bearer, build, client_for
from tests.supervisor.supervisor_timeline import Timeline, started

Client = TestClient[web.Request, web.Application]
AUTH = bearer(SUPERVISOR)
#: Large events fill the slow client's socket buffers in fewer events.
BIG_CALL = "c" * 4000


@pytest.fixture
async def buffered_client(timeline: Timeline) -> AsyncIterator[Client]:
    harness = build(
        timeline.bus,
        lambda: timeline.now,
        stream=StreamSettings(client_buffer=50, heartbeat_seconds=3600),
    )
    async for client in client_for(harness):
        yield client


async def read_stream(ws: aiohttp.ClientWebSocketResponse, until_call: str) -> list[int]:
    """The seq of every event up to the first of call ``until_call``."""
    seqs: list[int] = []
    while True:
        message = await ws.receive(timeout=30)
        assert message.type is WSMsgType.TEXT, message
        frame = json.loads(message.data)
        if "control" not in frame:
            seqs.append(frame["seq"])
            if frame["call_id"] == until_call:
                return seqs


class RawWebSocket:
    """A WebSocket client on a plain socket with tiny buffers that reads only when told to."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, path: str) -> RawWebSocket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        # A small stream limit: the reader stops taking bytes from the kernel at once.
        reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nAuthorization: {AUTH['Authorization']}\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def frame(self) -> tuple[int, bytes]:
        """The next frame's opcode and payload (RFC 6455 §5.2; a server does not mask)."""
        first, second = await self.reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(size)

    def close(self) -> None:
        self.writer.close()


async def too_slow_count(client: Client) -> float:
    response = await client.get("/metrics", headers=AUTH)
    for line in (await response.text()).splitlines():
        if line.startswith('cxos_websocket_disconnects_total{reason="too_slow"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_one_slow_client_of_a_shared_filter_is_cut_off_alone(
    buffered_client: Client, timeline: Timeline
) -> None:
    client = buffered_client
    subscribers_before = len(timeline.bus.stats())
    fast = [await client.ws_connect("/api/events", headers=AUTH) for _ in range(2)]
    assert client.port is not None
    slow = await RawWebSocket.connect(client.port, "/api/events")
    try:
        # Three clients of the whole stream: one subscription between them.
        assert len(timeline.bus.stats()) == subscribers_before + 1
        readers = [asyncio.create_task(read_stream(ws, "end")) for ws in fast]
        # Publish in bursts smaller than the buffer, letting the loop run in between, until
        # the client that does not read has been cut off.
        n = 0
        while await too_slow_count(client) == 0:
            for _ in range(100):
                timeline.at(0, *(started(f"{BIG_CALL}{n + i}") for i in range(10)))
                n += 10
                await asyncio.sleep(0)
            assert n < 9000, "the client that never reads was not cut off"
        (end,) = timeline.at(1, started("end"))
        # The others lost nothing, are still open and keep receiving.
        for seen in await asyncio.gather(*readers):
            assert seen == list(range(1, end.seq + 1))
        timeline.at(2, started("after"))
        for ws in fast:
            assert not ws.closed
            assert await read_stream(ws, "after") == [end.seq + 1]
        # The slow client finally reads: the events that were sent, in order, then a close
        # saying where to resume.
        seqs: list[int] = []
        while True:
            opcode, payload = await asyncio.wait_for(slow.frame(), 30)
            if opcode == 0x8:
                break
            envelope: dict[str, Any] = json.loads(payload)
            if "control" not in envelope:
                seqs.append(envelope["seq"])
        code = struct.unpack("!H", payload[:2])[0]
        reason = payload[2:].decode()
        assert code == aiohttp.WSCloseCode.POLICY_VIOLATION
        assert reason == f"queue full: resume_from={len(seqs) + 1}"
        assert seqs == list(range(1, len(seqs) + 1))
        assert len(seqs) < end.seq
    finally:
        slow.close()
        for ws in fast:
            await ws.close()
    # Resuming from there gives the rest, nothing missing.
    async with client.ws_connect(f"/api/events?resume_from={len(seqs) + 1}", headers=AUTH) as ws:
        rest = await read_stream(ws, "after")
    assert rest == list(range(len(seqs) + 1, end.seq + 2))


async def test_clients_with_different_filters_get_their_own_events(
    client: Client, timeline: Timeline
) -> None:
    subscribers_before = len(timeline.bus.stats())
    async with (
        client.ws_connect("/api/events?call_id=k1", headers=AUTH) as one,
        client.ws_connect("/api/events?call_id=k1", headers=AUTH) as same,
        client.ws_connect("/api/events?call_id=k2", headers=AUTH) as other,
    ):
        assert len(timeline.bus.stats()) == subscribers_before + 2
        timeline.at(0, started("k1"), started("k2"), started("k3"))
        for ws, call in ((one, "k1"), (same, "k1"), (other, "k2")):
            hello = json.loads((await ws.receive(timeout=2)).data)
            assert hello["control"] == "hello"
            event = json.loads((await ws.receive(timeout=2)).data)
            assert event["call_id"] == call
    # The last client of a filter gone, its subscription goes too (once the server has seen
    # the sockets close).
    for _ in range(1000):
        if len(timeline.bus.stats()) == subscribers_before:
            break
        await asyncio.sleep(0.01)
    assert len(timeline.bus.stats()) == subscribers_before


@pytest.mark.parametrize("size", [10, 200, 70_000])
async def test_frames_of_every_length_encoding(
    client: Client, timeline: Timeline, size: int
) -> None:
    # RFC 6455 §5.2: payload lengths under 126, up to 65535 and beyond are encoded differently.
    call = "x" * size
    async with client.ws_connect("/api/events", headers=AUTH, max_msg_size=0) as ws:
        await ws.receive(timeout=2)
        timeline.at(0, started(call), started("next"))
        first = json.loads((await ws.receive(timeout=2)).data)
        second = json.loads((await ws.receive(timeout=2)).data)
    assert first["call_id"] == call and second["call_id"] == "next"
