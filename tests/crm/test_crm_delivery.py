"""Webhook delivery from the outbox to the reference receiver, on a real PostgreSQL.

The receiver fails (500, then no answer), the server restarts mid-backlog, deliveries run out of
attempts: every event still arrives, once or with the same ``webhook-id``, in order per call.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from config.crm import DeliverySettings, WebhookEndpoint
from crm_bridge.backoff import BreakerState
from crm_bridge.deadletters import (
    DeadLetterNotFoundError,
    list_dead_letters,
    replay,
    replay_all,
)
from crm_bridge.delivery import DeliveryWorker
from crm_bridge.outbox import Outbox
from crm_bridge.signing import WebhookSecret
from cxos.storage.database import Pool
from examples.crm_receiver import CrmReceiver, serve
from tests.crm.crm_db import (
    OTHER_SECRET,
    SECRET,
    endpoint,
    event_log,
    first_arrival_steps,
    fresh_database,
    interleaved_calls,
    migrated_pool,
)

FAST = DeliverySettings(poll_interval=0.02, lease=30)


@pytest.fixture
async def database() -> AsyncIterator[str]:
    async with fresh_database() as url:
        yield url


@pytest.fixture
async def pool(database: str) -> AsyncIterator[Pool]:
    pool = await migrated_pool(database)
    yield pool
    await pool.close()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[CrmReceiver, str]]:
    crm = CrmReceiver([WebhookSecret.parse(SECRET)])
    async with serve(crm) as url:
        yield crm, url


async def until(condition: Callable[[], bool], within: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def worker_for(ep: WebhookEndpoint, outbox: Outbox) -> DeliveryWorker:
    return DeliveryWorker(ep, outbox, settings=FAST, rng=random.Random(7))


async def test_receiver_failing_then_hanging_gets_every_event_in_order_per_call(
    pool: Pool, tmp_path: Path, receiver: tuple[CrmReceiver, str]
) -> None:
    crm, url = receiver
    ep = endpoint(url)
    outbox = Outbox(pool, owner="node-a")
    await outbox.sync_endpoints([ep])
    crm.fail_with(500)
    worker = worker_for(ep, outbox)
    worker.start()
    async with event_log(pool, tmp_path / "spool") as (bus, writer):
        published = [bus.publish(event) for event in interleaved_calls(calls=8, steps=6)]
        assert await writer.wait_idle(10)
        await until(lambda: worker.breaker.state is not BreakerState.CLOSED, 5, "the breaker")
        # Then the CRM stops answering at all: requests time out (0.3 s) while it hangs.
        crm.fail_with(None)
        crm.hang(0.5)
        attempts = crm.attempts
        await until(lambda: crm.attempts >= attempts + 3, 5, "attempts during the hang")
        crm.heal()
        assert await crm.wait_for(len(published), within=20)
    await worker.stop(grace=2)

    assert set(crm.unique) == {str(p.id) for p in published}
    assert first_arrival_steps(crm.envelopes()) == {f"call-{c}": list(range(6)) for c in range(8)}
    for delivery in crm.accepted:  # a repeat is the same message: same id, same body
        assert delivery.envelope == crm.unique[delivery.webhook_id].envelope
    opened = [t for t in worker.transitions if t.after is BreakerState.OPEN]
    closed = [t for t in worker.transitions if t.before is BreakerState.HALF_OPEN]
    assert opened and closed and closed[-1].after is BreakerState.CLOSED
    assert worker.breaker.state is BreakerState.CLOSED
    assert (await outbox.counts()) == {"crm": {"delivered": len(published)}}
    stats = worker.stats()
    assert stats.delivered == len(published) and stats.failed_attempts > 0
    assert crm.attempts > len(published)  # the failures really reached the receiver


async def test_dead_letters_after_max_attempts_and_replay_delivers_them(
    pool: Pool, tmp_path: Path, receiver: tuple[CrmReceiver, str]
) -> None:
    crm, url = receiver
    ep = endpoint(
        url,
        retry={"initial_delay": 0.01, "max_delay": 0.02, "max_attempts": 3},
        circuit_breaker={"failure_threshold": 1000},
    )
    outbox = Outbox(pool, owner="node-a")
    await outbox.sync_endpoints([ep])
    crm.fail_with(500)
    worker = worker_for(ep, outbox)
    worker.start()
    async with event_log(pool, tmp_path / "spool") as (bus, writer):
        published = [bus.publish(event) for event in interleaved_calls(calls=2, steps=2)]
        assert await writer.wait_idle(10)
    dead: list[object] = []

    async def dead_letters() -> int:
        dead[:] = await list_dead_letters(pool)
        return len(dead)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while await dead_letters() < 4:
        assert loop.time() < deadline, "deliveries did not become dead letters"
        await asyncio.sleep(0.02)
    letters = await list_dead_letters(pool, endpoint="crm")
    assert [letter.event_id for letter in letters] == [str(p.id) for p in published]
    assert {(letter.attempts, letter.last_status) for letter in letters} == {(3, 500)}
    assert all("HTTP 500 (attempt 3 of 3)" in (letter.last_error or "") for letter in letters)
    assert await list_dead_letters(pool, endpoint="other") == []
    assert [x.id for x in await list_dead_letters(pool, after_id=letters[1].id)] == [
        x.id for x in letters[2:]
    ]
    assert crm.unique == {}

    crm.heal()
    assert await replay(pool, letters[0].id) == "crm"
    worker.wake()
    assert await crm.wait_for(1, within=5)
    assert list(crm.unique) == [letters[0].event_id]
    while (await outbox.counts())["crm"].get("delivered") != 1:  # the result is being recorded
        assert loop.time() < deadline + 10, "the delivery was not recorded"
        await asyncio.sleep(0.01)
    with pytest.raises(DeadLetterNotFoundError, match="is delivered, not a dead letter"):
        await replay(pool, letters[0].id)
    with pytest.raises(DeadLetterNotFoundError, match="no webhook delivery 999999"):
        await replay(pool, 999_999)
    assert await replay_all(pool, endpoint="crm") == 3
    worker.wake()
    assert await crm.wait_for(4, within=5)
    await worker.stop(grace=1)
    assert first_arrival_steps(crm.envelopes()) == {"call-0": [0, 1], "call-1": [0, 1]}
    assert await list_dead_letters(pool) == []
    assert (await outbox.counts())["crm"] == {"delivered": 4}


async def test_restart_mid_backlog_loses_nothing(
    database: str,
    pool: Pool,
    tmp_path: Path,
    receiver: tuple[CrmReceiver, str],
) -> None:
    crm, url = receiver
    ep = endpoint(url, max_in_flight=4, timeout=2.0)
    crm.hang(0.02)  # slow enough that a backlog builds up
    async with event_log(pool, tmp_path / "spool") as (bus, writer):
        await Outbox(pool, owner="node-a").sync_endpoints([ep])
        published = [bus.publish(event) for event in interleaved_calls(calls=10, steps=5)]
        assert await writer.wait_idle(10)

    # First run: its database connections die abruptly (like a SIGKILL of the server), with
    # requests in flight and results not yet recorded.
    first_pool = await migrated_pool(database)
    first = worker_for(ep, Outbox(first_pool, owner="node-a"))
    first.start()
    await until(lambda: len(crm.unique) >= 10, 10, "the first deliveries")
    first_pool.terminate()
    await first.stop(grace=0)
    arrived_before = len(crm.unique)
    assert arrived_before < len(published)

    # Second run of the same node: it takes its leases back and finishes the backlog.
    outbox = Outbox(pool, owner="node-a")
    await outbox.release_own_leases()
    second = worker_for(ep, outbox)
    second.start()
    assert await crm.wait_for(len(published), within=20)
    await second.stop(grace=1)
    assert set(crm.unique) == {str(p.id) for p in published}
    assert first_arrival_steps(crm.envelopes()) == {f"call-{c}": list(range(5)) for c in range(10)}
    assert (await outbox.counts())["crm"] == {"delivered": len(published)}


async def test_signatures_are_checked_by_the_receiver_and_rotation_signs_with_both(
    pool: Pool, tmp_path: Path, receiver: tuple[CrmReceiver, str]
) -> None:
    crm, url = receiver
    wrong = endpoint(
        url,
        name="wrong",
        secret=OTHER_SECRET,
        retry={"initial_delay": 0.01, "max_delay": 0.02, "max_attempts": 2},
        circuit_breaker={"failure_threshold": 1},
    )
    rotating = endpoint(url, name="rotating", secret=OTHER_SECRET, previous_secrets=[SECRET])
    outbox = Outbox(pool, owner="node-a")
    await outbox.sync_endpoints([wrong, rotating])
    async with event_log(pool, tmp_path / "spool") as (bus, writer):
        published = bus.publish(interleaved_calls(calls=1, steps=1)[0])
        assert await writer.wait_idle(10)

    refused = worker_for(wrong, outbox)
    refused.start()
    await until(lambda: crm.rejected >= 2, 5, "two refused attempts")
    await refused.stop(grace=1)
    [letter] = await list_dead_letters(pool, endpoint="wrong")
    assert letter.last_status == 401
    # A 4xx shows the endpoint is up: it never opens the breaker, even at threshold 1.
    assert refused.breaker.state is BreakerState.CLOSED
    assert crm.unique == {}

    accepted = worker_for(rotating, outbox)
    accepted.start()
    assert await crm.wait_for(1, within=5)
    await accepted.stop(grace=1)
    assert list(crm.unique) == [str(published.id)]
    assert crm.rejected == 2


async def test_two_nodes_share_an_endpoint_while_calls_keep_publishing(
    database: str,
    pool: Pool,
    tmp_path: Path,
    receiver: tuple[CrmReceiver, str],
) -> None:
    """Lanes empty and fill again while two nodes deliver: each call's events still arrive in
    order, all of them, and no lane is left behind once the outbox is empty."""
    crm, url = receiver
    ep = endpoint(url, max_in_flight=8)
    crm.hang(0.003)
    await Outbox(pool, owner="node-a").sync_endpoints([ep])
    other_pool = await migrated_pool(database)
    workers = [
        worker_for(ep, Outbox(pool, owner="node-a")),
        worker_for(ep, Outbox(other_pool, owner="node-b")),
    ]
    for worker in workers:
        worker.start()
    try:
        async with event_log(pool, tmp_path / "spool") as (bus, writer):
            published = []
            events = interleaved_calls(calls=12, steps=10)
            for start in range(0, len(events), 6):  # a few events at a time, as calls go on
                published += [bus.publish(event) for event in events[start : start + 6]]
                await asyncio.sleep(0.01)
            assert await writer.wait_idle(10)
        assert await crm.wait_for(len(published), within=30)
    finally:
        for worker in workers:
            await worker.stop(grace=2)
        await other_pool.close()

    assert set(crm.unique) == {str(p.id) for p in published}
    assert first_arrival_steps(crm.envelopes()) == {f"call-{c}": list(range(10)) for c in range(12)}
    assert sum(worker.stats().delivered for worker in workers) >= len(published)
    assert all(worker.stats().delivered > 0 for worker in workers)  # both nodes took part
    async with pool.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM webhook_lanes") == 0
    assert (await Outbox(pool, owner="node-a").counts())["crm"] == {"delivered": len(published)}
