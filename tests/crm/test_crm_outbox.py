"""The outbox: what the database enqueues when events are stored, and the pure decisions."""

from __future__ import annotations

import email.utils
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crm_bridge.backoff import RetryPolicy
from crm_bridge.delivery import Attempt, decide, parse_retry_after
from crm_bridge.outbox import ClaimedDelivery, DeliveryResult, DeliveryState, Outbox, render_body
from cxos.envelope import ENVELOPE_KEYS
from cxos.storage.database import Pool
from cxos.storage.events_store import row_from_published, store_events
from tests.crm.crm_db import (
    AgentNote,
    CallProgress,
    endpoint,
    event_log,
    fresh_database,
    migrated_pool,
)


@pytest.fixture
async def pool() -> AsyncIterator[Pool]:
    async with fresh_database() as url:
        pool = await migrated_pool(url)
        yield pool
        await pool.close()


async def outbox_rows(pool: Pool) -> list[tuple[str, str, str]]:
    async with pool.acquire() as connection:
        records = await connection.fetch(
            "SELECT endpoint, event_type, ordering_key FROM webhook_deliveries ORDER BY id"
        )
    return [(r["endpoint"], r["event_type"], r["ordering_key"]) for r in records]


async def test_storing_an_event_enqueues_one_delivery_per_subscribed_endpoint(
    pool: Pool, tmp_path: Path
) -> None:
    url = "http://127.0.0.1:9/hook"
    outbox = Outbox(pool, owner="node-a")
    await outbox.sync_endpoints(
        [
            endpoint(url, name="calls", events=["call.*"]),
            endpoint(url, name="notes", events=["agent.note", "call.progress"]),
            endpoint(url, name="all", events=["*"]),
            endpoint(url, name="none", events=["queue.joined"]),
        ]
    )
    async with event_log(pool, tmp_path / "spool") as (bus, writer):
        first = bus.publish(CallProgress(call_id="c1", step=0))
        bus.publish(AgentNote(agent_id="a7", text="break"))
        assert await writer.wait_idle(5)
        assert sorted(await outbox_rows(pool)) == sorted(
            [
                ("all", "call.progress", "c1"),
                ("calls", "call.progress", "c1"),
                ("notes", "call.progress", "c1"),
                ("all", "agent.note", "agent:a7"),
                ("notes", "agent.note", "agent:a7"),
            ]
        )
        # The same event stored again (a spool replay after a crash) is not enqueued again.
        async with pool.acquire() as connection:
            assert await store_events(
                connection, [row_from_published(first, "node-a")], replay=True
            ) == (0, 0)
        assert len(await outbox_rows(pool)) == 5

        # An endpoint dropped from the configuration gets nothing more; one changed follows.
        await outbox.sync_endpoints(
            [
                endpoint(url, name="calls", events=["agent.*"]),
                endpoint(url, name="notes", events=["agent.note"]),
            ]
        )
        bus.publish(AgentNote(agent_id="a7", text="back"))
        bus.publish(CallProgress(call_id="c1", step=1))
        assert await writer.wait_idle(5)
    assert (await outbox_rows(pool))[5:] == [
        ("calls", "agent.note", "agent:a7"),
        ("notes", "agent.note", "agent:a7"),
    ]
    async with pool.acquire() as connection:
        active = await connection.fetch("SELECT name FROM webhook_endpoints WHERE active")
    assert sorted(r["name"] for r in active) == ["calls", "notes"]


async def test_claim_hands_out_the_head_of_each_lane_only(pool: Pool, tmp_path: Path) -> None:
    outbox = Outbox(pool, owner="node-a")
    await outbox.sync_endpoints([endpoint("http://127.0.0.1:9/", name="crm")])
    async with event_log(pool, tmp_path / "spool") as (bus, writer):
        for step in range(3):
            bus.publish(CallProgress(call_id="c1", step=step))
            bus.publish(CallProgress(call_id="c2", step=step))
        assert await writer.wait_idle(5)
    claimed = await outbox.claim("crm", 10, lease=30)
    assert [(c.ordering_key, json.loads(c.body or b"")["data"]["step"]) for c in claimed] == [
        ("c1", 0),
        ("c2", 0),
    ]
    # Leased heads block their lanes: nothing more until a result is recorded.
    assert await outbox.claim("crm", 10, lease=30) == []
    await outbox.complete(
        [
            DeliveryResult(id=claimed[0].id, state=DeliveryState.DELIVERED, status=204),
            DeliveryResult(
                id=claimed[1].id, state=DeliveryState.PENDING, retry_in=60, error="HTTP 503"
            ),
        ]
    )
    again = await outbox.claim("crm", 10, lease=30)
    assert [(c.ordering_key, json.loads(c.body or b"")["data"]["step"]) for c in again] == [
        ("c1", 1)
    ]
    # A worker that stops gives its lease back; its lane is due again at once.
    await outbox.release([again[0].id])
    assert [c.id for c in await outbox.claim("crm", 10, lease=30)] == [again[0].id]
    assert await outbox.release_own_leases() == 1
    assert await Outbox(pool, owner="node-b").release_own_leases() == 0


def test_body_keeps_the_envelope_key_order_whatever_jsonb_did() -> None:
    stored = json.dumps(
        {"seq": 3, "id": "x", "data": {"b": 1, "a": [1.5]}, "call_id": None, "time": "t"}
    )
    body = render_body(stored)
    assert list(json.loads(body)) == [k for k in ENVELOPE_KEYS if k in json.loads(stored)]
    assert body == b'{"id":"x","time":"t","seq":3,"call_id":null,"data":{"b":1,"a":[1.5]}}'


class NoJitter:
    def random(self) -> float:
        return 0.0


def delivery(attempts: int) -> ClaimedDelivery:
    return ClaimedDelivery(
        id=1,
        endpoint="crm",
        event_id="e",
        event_type="call.ended",
        ordering_key="c",
        attempts=attempts,
        body=b"{}",
    )


def test_decide_delivered_retry_and_dead_letter() -> None:
    policy = RetryPolicy(initial_delay=2, multiplier=2, max_delay=60, jitter=0, max_attempts=3)
    ok = decide(delivery(0), Attempt(status=204), policy, NoJitter())
    assert ok.state is DeliveryState.DELIVERED
    retry = decide(delivery(1), Attempt(status=503), policy, NoJitter())
    assert (retry.state, retry.retry_in, retry.error) == (DeliveryState.PENDING, 4, "HTTP 503")
    slow = decide(delivery(0), Attempt(status=429, retry_after=30), policy, NoJitter())
    assert slow.retry_in == 30  # Retry-After is a lower bound
    dead = decide(delivery(2), Attempt(error="no answer within 10 s"), policy, NoJitter())
    assert dead.state is DeliveryState.DEAD
    assert dead.error == "no answer within 10 s (attempt 3 of 3)"


@pytest.mark.parametrize(
    ("attempt", "unwell"),
    [
        (Attempt(error="timeout"), True),
        (Attempt(status=500), True),
        (Attempt(status=503), True),
        (Attempt(status=429), True),
        (Attempt(status=408), True),
        (Attempt(status=400), False),
        (Attempt(status=401), False),
        (Attempt(status=302), False),
        (Attempt(status=200), False),
    ],
)
def test_only_an_unwell_endpoint_counts_against_the_breaker(attempt: Attempt, unwell: bool) -> None:
    assert attempt.endpoint_unwell is unwell
    assert attempt.succeeded is (attempt.status == 200)


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after(email.utils.formatdate(now + 90, usegmt=True), now) == 90
    assert parse_retry_after(email.utils.formatdate(now - 90, usegmt=True), now) == 0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
