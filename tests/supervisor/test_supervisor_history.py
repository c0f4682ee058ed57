"""History from PostgreSQL: KPIs per hour or day and CDR pages, from the stored event log.

The events of a scripted morning are published on a bus and stored as the server stores them
(event rows and CDRs in one transaction); the history endpoints must give, for every bucket,
exactly what the KPI code gives over the whole morning in memory, including where the live
journal no longer reaches.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from cxos.envelope import format_time
from cxos.storage.database import Pool
from cxos.storage.events_store import row_from_published, store_events
from supervisor_api.kpi import compute_kpis
from supervisor_api.rest import agent_rows, queue_rows
from tests.supervisor.supervisor_app import SUPERVISOR, bearer, build, client_for, settings
from tests.supervisor.supervisor_timeline import (
    T0,
    Timeline,
    busy_morning,
    sales_morning,
    state,
)

Client = TestClient[web.Request, web.Application]
AUTH = bearer(SUPERVISOR)


async def store(pool: Pool, timeline: Timeline) -> None:
    rows = [row_from_published(p, "node-a") for p in timeline.published]
    async with pool.acquire() as connection:
        for first in range(0, len(rows), 500):
            await store_events(connection, rows[first : first + 500], replay=False)


def iso(offset: float) -> str:
    return format_time(T0 + offset)


async def history_client(
    timeline: Timeline, pool: Pool | None, **overrides: Any
) -> AsyncIterator[Client]:
    harness = build(timeline.bus, lambda: timeline.now, history=pool, **overrides)
    async for client in client_for(harness):
        yield client


@pytest.fixture
async def busy(history_pool: Pool) -> AsyncIterator[tuple[Timeline, Client]]:
    timeline = Timeline()
    busy_morning(timeline, calls=300)  # about six hours, over 1,000 of the events KPIs read
    await store(history_pool, timeline)
    timeline.now = T0 + 6 * 3600
    # The smallest journal the settings allow: the live KPIs forget the start of the morning.
    async for client in history_client(timeline, history_pool, kpi_journal_events=1000):
        yield timeline, client


async def get(client: Client, path: str, **query: str) -> dict[str, Any]:
    response = await client.get(path, params=query, headers=AUTH)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


def in_memory(timeline: Timeline, start: float, end: float) -> Any:
    # The whole morning in memory: what the live KPIs would say with a journal large enough.
    return compute_kpis(
        timeline.records, start, end, timeline.now, settings().targets_for, ["sales", "support"]
    )


async def test_hourly_queue_and_agent_kpis_equal_the_kpi_code_over_every_event(
    busy: tuple[Timeline, Client],
) -> None:
    timeline, client = busy
    assert len(timeline.published) > 1000  # more than the live journal keeps
    queues = await get(client, "/api/history/queues", to=iso(4 * 3600), interval="hour")
    agents = await get(client, "/api/history/agents", to=iso(4 * 3600), interval="hour")
    # Today so far, cut at each hour: midnight to T0 (noon) is twelve empty hours, then four.
    assert queues["interval"] == "hour" and len(queues["buckets"]) == 16
    for queue_bucket, agent_bucket in zip(queues["buckets"], agents["buckets"], strict=True):
        start = datetime.datetime.fromisoformat(queue_bucket["from"]).timestamp()
        end = datetime.datetime.fromisoformat(queue_bucket["to"]).timestamp()
        assert end - start == 3600
        expected = in_memory(timeline, start, end)
        assert queue_bucket["queues"] == queue_rows(expected, None)
        history_agents = {row["agent_id"]: row for row in agent_bucket["agents"]}
        # An agent is listed once it has changed state; in memory, for any change at all.
        for row in agent_rows(expected, None):
            if row["agent_id"] in history_agents or row["seconds_by_state"]:
                assert history_agents[row["agent_id"]] == row
    sales_by_hour = [
        next(q for q in bucket["queues"] if q["queue_id"] == "sales")
        for bucket in queues["buckets"]
    ]
    offered = [q["offered"] for q in sales_by_hour]
    left = [r for r in timeline.records if r.type == "queue.left" and r.time < T0 + 4 * 3600]
    assert sum(offered[12:]) == len(left) > 200 and sum(offered[:12]) == 0
    assert all(q["handled"] > 0 for q in sales_by_hour[12:15])


async def test_history_reaches_where_the_live_journal_does_not(
    busy: tuple[Timeline, Client],
) -> None:
    timeline, client = busy
    first_hour = {"from": iso(0), "to": iso(3600)}
    live = await get(client, "/api/kpis/queues", queue_id="sales", **first_hour)
    assert live["complete"] is False
    history = await get(client, "/api/history/queues", queue_id="sales", **first_hour)
    (bucket,) = history["buckets"]
    (sales,) = bucket["queues"]
    assert sales == queue_rows(in_memory(timeline, T0, T0 + 3600), "sales")[0]
    assert sales["offered"] > live["queues"][0]["offered"]


async def test_day_buckets_follow_the_configured_time_zone(
    history_pool: Pool,
) -> None:
    timeline = Timeline()
    sales_morning(timeline)  # 12:00 UTC, 08:00 in New York
    await store(history_pool, timeline)
    timeline.now = T0 + 86_400
    async for client in history_client(timeline, history_pool, timezone="America/New_York"):
        body = await get(
            client,
            "/api/history/queues",
            interval="day",
            queue_id="sales",
            **{"from": "2024-04-30T00:00:00Z", "to": "2024-05-02T12:00:00Z"},
        )
    spans = [(b["from"], b["to"]) for b in body["buckets"]]
    assert spans == [
        ("2024-04-30T00:00:00.000Z", "2024-04-30T04:00:00.000Z"),
        ("2024-04-30T04:00:00.000Z", "2024-05-01T04:00:00.000Z"),
        ("2024-05-01T04:00:00.000Z", "2024-05-02T04:00:00.000Z"),
        ("2024-05-02T04:00:00.000Z", "2024-05-02T12:00:00.000Z"),
    ]
    offered = [b["queues"][0]["offered"] for b in body["buckets"]]
    assert offered == [0, 0, 4, 0]


async def test_a_wrap_up_after_the_bucket_counts_in_its_handle_time(history_pool: Pool) -> None:
    timeline = Timeline()
    sales_morning(timeline)  # a1 talks on c1 from +20 s to +80 s, wraps up until +90 s
    await store(history_pool, timeline)
    timeline.now = T0 + 3600
    async for client in history_client(timeline, history_pool):
        body = await get(
            client, "/api/history/agents", agent_id="a1", **{"from": iso(0), "to": iso(85)}
        )
    (a1,) = body["buckets"][0]["agents"]
    assert a1["handled"] == 1
    assert a1["aht_seconds"] == 70  # 60 s talk + the 10 s wrap-up that ended after 'to'
    assert a1["seconds_by_state"]["wrap_up"] == 5  # clipped to the bucket


async def test_agents_logged_in_days_before_the_interval_and_configured_ones_are_listed(
    history_pool: Pool,
) -> None:
    timeline = Timeline()
    two_days = -2 * 86_400
    # a2 (configured) and yy (not) log in two days before and stay in; zz logs in and out.
    timeline.at(two_days, state("a2", "logged_out", "available", 0))
    timeline.at(two_days, state("yy", "logged_out", "available", 0))
    timeline.at(two_days, state("zz", "logged_out", "available", 0))
    timeline.at(two_days + 10, state("zz", "available", "logged_out", 10))
    await store(history_pool, timeline)
    timeline.now = T0 + 3600
    async for client in history_client(timeline, history_pool):
        body = await get(client, "/api/history/agents", **{"from": iso(0), "to": iso(3600)})
    rows = {row["agent_id"]: row for row in body["buckets"][0]["agents"]}
    assert sorted(rows) == ["a1", "a2", "a3", "yy"]  # zz was logged out the whole hour
    assert rows["a2"]["seconds_by_state"] == {"available": 3600}
    assert rows["yy"]["seconds_by_state"] == {"available": 3600}
    assert rows["a1"]["seconds_by_state"] == {} and rows["a1"]["handled"] == 0


async def test_call_records_page_by_page(history_pool: Pool) -> None:
    timeline = Timeline()
    sales_morning(timeline)
    await store(history_pool, timeline)
    timeline.now = T0 + 3600
    interval = {"from": iso(0), "to": iso(3600)}
    async for client in history_client(timeline, history_pool):
        first = await get(client, "/api/history/calls", limit="3", **interval)
        second = await get(
            client, "/api/history/calls", limit="3", cursor=first["next_cursor"], **interval
        )
        of_a1 = await get(client, "/api/history/calls", agent_id="a1", **interval)
        of_support = await get(client, "/api/history/calls", queue_id="support", **interval)
    assert [c["call_id"] for c in first["calls"]] == ["c1", "c2", "c3"]
    assert [c["call_id"] for c in second["calls"]] == ["c4"]
    assert second["next_cursor"] is None
    c1 = first["calls"][0]
    assert c1["started_at"] == iso(10) and c1["agents"] == ["a1"]
    assert c1["talk_seconds"] == 60 and c1["ended_at"] == iso(80)
    assert [s["kind"] for s in c1["segments"]] == ["queue", "agent"]
    assert first["calls"][1]["disposition"] != c1["disposition"]  # abandoned, not answered
    assert [c["call_id"] for c in of_a1["calls"]] == ["c1", "c4"]
    assert of_support["calls"] == []


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/api/history/queues", {"interval": "week"}, "query.interval"),
        ("/api/history/agents", {"interval": "hour", "from": "2000-01-01T00:00:00Z"}, None),
        ("/api/history/calls", {"limit": "0"}, "query.limit"),
        ("/api/history/calls", {"cursor": "not-a-cursor"}, "query.cursor"),
        ("/api/history/calls", {"agent_id": ""}, "query.agent_id"),
        ("/api/history/queues", {"queue": "sales"}, "query.queue"),
    ],
)
async def test_bad_history_requests_name_the_parameter(
    history_pool: Pool, path: str, query: dict[str, str], field: str | None
) -> None:
    timeline = Timeline()
    async for client in history_client(timeline, history_pool):
        response = await client.get(path, params=query, headers=AUTH)
        body = await response.json()
    assert response.status == 400, body
    assert body["field"] == (field or "query.interval"), body


async def test_without_a_database_history_is_not_found() -> None:
    timeline = Timeline()
    async for client in history_client(timeline, None):
        response = await client.get("/api/history/queues", headers=AUTH)
        body = await response.json()
    assert response.status == 404 and "history" in body["message"]
