"""Retention against a real PostgreSQL: old events and old webhook deliveries are pruned in
batches, by the server's own periodic task; recent history, CDRs and the outbox stay."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from config.settings import RetentionSettings, StorageSettings
from cxos.bus import EventBus
from cxos.storage.database import Pool
from cxos.storage.retention import prune_history
from cxos.storage.service import StorageService
from tests.storage.storage_scenarios import SettableClock, agent_state, started

DAY = 86_400.0


async def counts(pool: Pool) -> tuple[int, int, int]:
    async with pool.acquire() as connection:
        events = await connection.fetchval("SELECT count(*) FROM events")
        delivered = await connection.fetchval("SELECT count(*) FROM webhook_delivered")
        cdrs = await connection.fetchval("SELECT count(*) FROM cdrs")
    return int(events), int(delivered), int(cdrs)


async def fill_delivery_log(pool: Pool, ages_in_days: list[float]) -> None:
    """Acknowledged deliveries, as the delivery worker logs them, delivered that long ago."""
    async with pool.acquire() as connection:
        await connection.executemany(
            "INSERT INTO webhook_delivered (id, endpoint, event_id, event_type, ordering_key, "
            "attempts, status, replays, created_at, delivered_at) "
            "VALUES ($1, 'crm', gen_random_uuid(), 'call.started', 'c', 1, 204, 0, "
            "now() - make_interval(days => $2), now() - make_interval(days => $2))",
            [(n + 1, age) for n, age in enumerate(ages_in_days)],
        )


async def publish_history(service: StorageService, ages_in_days: list[float]) -> None:
    """One call start and one agent state change per age, published that long ago."""
    clock = SettableClock(time.time())
    bus = EventBus(clock=clock, first_seq=service.next_seq)
    service.attach(bus)
    now = clock.now
    for n, age in enumerate(ages_in_days):
        clock.now = now - age * DAY
        bus.publish(started(f"call-{n}"))
        bus.publish(agent_state("alice", "available", "paused", 1.0, None))
    clock.now = now
    assert await service.writer.wait_idle(within=10)


async def test_old_rows_are_pruned_in_batches_and_the_rest_is_kept(
    database_url: str, tmp_path: Path
) -> None:
    kept_forever = RetentionSettings(events_days=0, delivered_webhooks_days=0)
    service = StorageService(
        StorageSettings(database_url=database_url, retention=kept_forever),
        node="node-a",
        config_dir=tmp_path,
    )
    await service.start()
    try:
        pool = service.database.pool
        await publish_history(service, [200.0] * 15 + [91.0] * 5 + [89.0] * 4 + [0.0] * 3)
        await fill_delivery_log(pool, [30.0] * 9 + [8.0] * 3 + [6.0, 0.0])
        assert await counts(pool) == (54, 14, 27)

        settings = RetentionSettings(events_days=90, delivered_webhooks_days=7, batch_size=7)
        report = await prune_history(pool, settings, datetime.now(UTC), pause=0)
        assert (report.events, report.delivered_webhooks) == (40, 12)
        # 40 events: 6 batches (5 full, the last short); 12 deliveries: 2.
        assert report.batches == 8
        assert await counts(pool) == (14, 2, 27)  # CDRs are kept

        async with pool.acquire() as connection:
            oldest = await connection.fetchval("SELECT min(time) FROM events")
        assert datetime.now(UTC) - oldest < timedelta(days=90)
        again = await prune_history(pool, settings, datetime.now(UTC), pause=0)
        assert (again.events, again.delivered_webhooks) == (0, 0)
    finally:
        await service.stop(grace=1)


async def test_the_running_server_prunes_by_itself(database_url: str, tmp_path: Path) -> None:
    settings = RetentionSettings(events_days=30, delivered_webhooks_days=1, interval=0.1)
    service = StorageService(
        StorageSettings(database_url=database_url, retention=settings),
        node="node-a",
        config_dir=tmp_path,
    )
    await service.start()
    try:
        pool = service.database.pool
        await publish_history(service, [45.0, 45.0, 2.0])
        await fill_delivery_log(pool, [3.0, 0.5])
        for _ in range(200):  # the task runs every 0.1 s; bounded wait, not a timing claim
            if await counts(pool) == (2, 1, 3):
                break
            await asyncio.sleep(0.05)
        assert await counts(pool) == (2, 1, 3)
        assert service.retention.last is not None
    finally:
        await service.stop(grace=1)
