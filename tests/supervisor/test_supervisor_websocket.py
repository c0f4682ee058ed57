"""The WebSocket event stream: order, filters, resume, heartbeat and slow-client disconnect."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from config.api import StreamSettings
from tests.supervisor.supervisor_app import AGENT_A1, SUPERVISOR, bearer, build, client_for
from tests.supervisor.supervisor_timeline import (
    Timeline,
    ended,
    joined,
    left,
    sales_morning,
    started,
    state,
)

Client = TestClient[web.Request, web.Application]
AUTH = bearer(SUPERVISOR)


async def frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await ws.receive(timeout=2)
    assert message.type is WSMsgType.TEXT, message
    value: dict[str, Any] = json.loads(message.data)
    return value


async def events(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    return [await frame(ws) for _ in range(count)]


async def test_events_arrive_in_order_as_envelopes(client: Client, timeline: Timeline) -> None:
    async with client.ws_connect("/api/events", headers=AUTH) as ws:
        hello = await frame(ws)
        assert hello == {"control": "hello", "node": "node-a", "next_seq": 1, "resume_from": None}
        sales_morning(timeline)
        received = await events(ws, len(timeline.published))
    assert [e["seq"] for e in received] == [p.seq for p in timeline.published]
    first = received[0]
    assert list(first) == ["id", "type", "version", "time", "node", "seq", "call_id", "data"]
    assert first["type"] == "agent.state_changed" and first["node"] == "node-a"
    assert first["time"] == "2024-05-01T12:00:00.000Z"


async def test_queue_filter_follows_that_queues_calls(client: Client, timeline: Timeline) -> None:
    async with client.ws_connect("/api/events?queue_id=sales", headers=AUTH) as ws:
        await frame(ws)
        timeline.at(0, started("s1"), joined("s1"), started("o1"), joined("o1", queue="support"))
        timeline.at(5, left("s1", "abandoned", 5), ended("s1"), ended("o1"))
        timeline.at(6, state("a2", "available", "paused", 3))  # no queue: not sent
        timeline.at(7, joined("s2"))
        received = await events(ws, 4)
    assert [(e["type"], e["call_id"]) for e in received] == [
        ("queue.joined", "s1"),
        ("queue.left", "s1"),
        ("call.ended", "s1"),
        ("queue.joined", "s2"),
    ]


async def test_type_and_agent_filters(client: Client, timeline: Timeline) -> None:
    path = "/api/events?types=agent.*&agent_id=a1"
    async with client.ws_connect(path, headers=AUTH) as ws:
        await frame(ws)
        sales_morning(timeline)
        received = await events(ws, 7)
    assert {e["type"] for e in received} <= {
        "agent.state_changed",
        "agent.offered",
        "agent.answered",
    }
    assert all(e["data"]["agent_id"] == "a1" for e in received)


async def test_agent_token_only_sees_its_own_agent(client: Client, timeline: Timeline) -> None:
    response = await client.get("/api/events?agent_id=a2", headers=bearer(AGENT_A1))
    assert response.status == 403
    # The browser way to pass a token: a WebSocket subprotocol.
    async with client.ws_connect(
        "/api/events", protocols=("cxos.events.v1", f"bearer.{AGENT_A1}")
    ) as ws:
        assert ws.protocol == "cxos.events.v1"
        await frame(ws)
        timeline.at(0, state("a2", "logged_out", "available", 0))
        timeline.at(1, state("a1", "logged_out", "available", 0))
        (only,) = await events(ws, 1)
    assert only["data"]["agent_id"] == "a1"


async def test_resume_after_reconnect_loses_and_repeats_nothing(
    client: Client, timeline: Timeline
) -> None:
    async with client.ws_connect("/api/events", headers=AUTH) as ws:
        await frame(ws)
        timeline.at(0, started("r1"), joined("r1"))
        seen = await events(ws, 2)
    # While disconnected, more happens.
    timeline.at(3, left("r1", "abandoned", 3), ended("r1"))
    resume = seen[-1]["seq"] + 1
    async with client.ws_connect(f"/api/events?resume_from={resume}", headers=AUTH) as ws:
        assert (await frame(ws))["resume_from"] == resume
        timeline.at(4, started("r2"))
        after = await events(ws, 3)
    assert [e["seq"] for e in seen + after] == [1, 2, 3, 4, 5]


async def test_resume_from_a_sequence_gone_from_the_ring(timeline: Timeline) -> None:
    from cxos.bus import EventBus

    small = Timeline(EventBus(clock=lambda: small.now, replay_size=2))
    harness = build(small.bus, lambda: small.now)
    small.at(0, *(started(f"g{i}") for i in range(5)))
    async for client in client_for(harness):
        async with client.ws_connect("/api/events?resume_from=1", headers=AUTH) as ws:
            error = await frame(ws)
            assert error["control"] == "error" and error["error"] == "replay_unavailable"
            assert error["oldest_seq"] == 4
            closing = await ws.receive(timeout=2)
            assert closing.type is WSMsgType.CLOSE


@pytest.fixture
async def tight_client(timeline: Timeline) -> AsyncIterator[Client]:
    harness = build(
        timeline.bus,
        lambda: timeline.now,
        stream=StreamSettings(client_buffer=5, heartbeat_seconds=0.05),
    )
    async for client in client_for(harness):
        yield client


async def test_slow_client_is_disconnected_with_a_reason(
    tight_client: Client, timeline: Timeline
) -> None:
    async with tight_client.ws_connect("/api/events", headers=AUTH) as ws:
        await frame(ws)
        # A burst larger than the client's buffer, published without yielding to the loop:
        # the publisher never waits, the client is cut off instead.
        timeline.at(0, *(started(f"b{i}") for i in range(20)))
        message = await ws.receive(timeout=2)
        assert message.type is WSMsgType.CLOSE
        assert message.data == aiohttp.WSCloseCode.POLICY_VIOLATION
        assert message.extra is not None and "queue full" in message.extra
    assert timeline.bus.next_seq == 21


async def test_idle_stream_sends_heartbeats(tight_client: Client, timeline: Timeline) -> None:
    async with tight_client.ws_connect("/api/events", headers=AUTH) as ws:
        await frame(ws)
        beat = await frame(ws)
    assert beat["control"] == "heartbeat" and beat["next_seq"] == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [("resume_from=0", "query.resume_from"), ("types=*", "query.types"), ("x=1", "query.x")],
)
async def test_bad_stream_parameters_are_400(client: Client, query: str, field: str) -> None:
    response = await client.get(f"/api/events?{query}", headers=AUTH)
    assert response.status == 400
    assert (await response.json())["field"] == field


async def test_plain_http_get_is_told_to_upgrade(client: Client) -> None:
    response = await client.get("/api/events", headers=AUTH)
    assert response.status == 426
    assert (await response.json())["error"] == "upgrade_required"


async def test_server_shutdown_closes_streams_going_away(timeline: Timeline) -> None:
    harness = build(timeline.bus, lambda: timeline.now)
    async for client in client_for(harness):
        ws = await client.ws_connect("/api/events", headers=AUTH)
        await frame(ws)
        await client.server.close()
        message = await ws.receive(timeout=2)
        assert message.type is WSMsgType.CLOSE
        assert message.data == aiohttp.WSCloseCode.GOING_AWAY
        await ws.close()
