"""Storing bus events: round trip, duplicates, outages, spool and replay, refused rows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from acd.events import QueueJoined
from cxos.bus import EventBus
from cxos.envelope import format_time
from cxos.storage.database import Pool, create_pool
from cxos.storage.events_store import (
    EventWriter,
    WriterOptions,
    row_from_line,
    row_from_published,
    store_events,
)
from cxos.storage.spool import REJECTED_FILE, Spool
from tests.storage.pg_proxy import OutageProxy
from tests.storage.storage_scenarios import (
    NODE,
    SettableClock,
    Teller,
    numbered_events,
    tell_transfer_call,
)

FAST_RETRY = WriterOptions(queue_size=50, retry_initial=0.01, retry_max=0.05)


def open_spool(directory: Path) -> Spool:
    spool = Spool(directory)
    spool.open()
    return spool


@pytest.fixture
async def proxy(database_url: str, pool: Pool) -> AsyncIterator[OutageProxy]:
    """A pluggable route to the (already migrated) test database."""
    relay = OutageProxy(database_url)
    await relay.start()
    yield relay
    await relay.cut()


async def stored_seqs(pool: Pool) -> list[int]:
    async with pool.acquire() as connection:
        rows = await connection.fetch("SELECT seq FROM events ORDER BY seq")
    return [int(r["seq"]) for r in rows]


async def publish_slowly(bus: EventBus, count: int, chunk: int = 25) -> None:
    """Publish in chunks, letting the writer run in between as call handling would."""
    events = list(numbered_events(count))
    for start in range(0, count, chunk):
        for event in events[start : start + chunk]:
            bus.publish(event)
        await asyncio.sleep(0.002)


async def test_published_events_are_stored_with_their_envelope(pool: Pool, tmp_path: Path) -> None:
    teller = Teller()
    writer = EventWriter(pool, open_spool(tmp_path / "spool"), node=NODE)
    writer.attach(teller.bus)

    tell_transfer_call(teller)
    assert await writer.wait_idle(within=10)

    async with pool.acquire() as connection:
        rows = await connection.fetch(
            "SELECT id::text AS id, node, seq, type, version, call_id, time, envelope::text "
            "AS envelope FROM events ORDER BY seq"
        )
        segments = await connection.fetch(
            "SELECT kind FROM cdr_segments WHERE call_id = 'call-1' ORDER BY segment_index"
        )
    expected = teller.published
    assert [
        (r["id"], r["node"], r["seq"], r["type"], r["version"], r["call_id"]) for r in rows
    ] == [(str(p.id), NODE, p.seq, p.event.TYPE, p.event.VERSION, p.call_id) for p in expected]
    assert [format_time(r["time"].timestamp()) for r in rows] == [
        format_time(p.time) for p in expected
    ]
    assert [json.loads(r["envelope"]) for r in rows] == teller.envelopes()
    # The CDR was written as the events arrived.
    assert [r["kind"] for r in segments] == ["ivr", "queue", "agent", "transfer", "queue", "agent"]
    stats = writer.stats()
    assert (stats.written, stats.duplicates, stats.spilled, stats.lost) == (len(expected), 0, 0, 0)
    await writer.close(grace=1)


async def test_storing_the_same_events_again_changes_nothing(pool: Pool) -> None:
    teller = Teller()
    tell_transfer_call(teller)
    rows = [row_from_published(p, NODE) for p in teller.published]

    async with pool.acquire() as connection:
        first = await store_events(connection, rows, replay=True)
        second = await store_events(connection, rows[5:], replay=True)
        count = await connection.fetchval("SELECT count(*) FROM events")
        cdrs = await connection.fetchval("SELECT count(*) FROM cdrs")

    assert first == (len(rows), 1)
    assert second == (0, 0)
    assert (count, cdrs) == (len(rows), 1)


def test_a_spooled_line_reads_back_as_the_same_row() -> None:
    teller = Teller()
    tell_transfer_call(teller)
    for published in teller.published:
        row = row_from_published(published, NODE)
        assert row_from_line(row.envelope.encode()) == row
    with pytest.raises(ValueError, match="envelope has no 'seq'"):
        row_from_line(b'{"id": "x", "type": "t", "node": "n", "call_id": null}')
    with pytest.raises(ValueError, match="not JSON"):
        row_from_line(b'{"id": ')


async def test_database_outage_spills_to_the_spool_and_loses_nothing(
    proxy: OutageProxy, pool: Pool, tmp_path: Path
) -> None:
    bus = EventBus(clock=SettableClock())
    proxied = await create_pool(proxy.dsn)
    writer = EventWriter(proxied, open_spool(tmp_path / "spool"), node=NODE, options=FAST_RETRY)
    writer.attach(bus)

    await publish_slowly(bus, 100)
    assert await writer.wait_idle(within=10)
    await proxy.cut()
    await publish_slowly(bus, 1000)
    during = writer.stats()
    await proxy.restore()
    assert await writer.wait_idle(within=30)

    assert not during.database_ok
    assert during.spilled > 0  # the queue (50) overflowed to the spool during the outage
    assert await stored_seqs(pool) == list(range(1, 1101))
    after = writer.stats()
    assert (after.written, after.lost, after.set_aside) == (1100, 0, 0)
    assert after.replayed >= during.spilled
    assert after.database_ok and after.failures > 0
    assert list((tmp_path / "spool").glob("*.jsonl")) == []
    await writer.close(grace=1)
    await proxied.close()


async def test_terminated_connections_are_retried_without_duplicates(
    pool: Pool, database_url: str, tmp_path: Path
) -> None:
    bus = EventBus(clock=SettableClock())
    writer_pool = await create_pool(database_url)
    writer = EventWriter(writer_pool, open_spool(tmp_path / "spool"), node=NODE, options=FAST_RETRY)
    writer.attach(bus)
    database = database_url.rpartition("/")[2]

    async def terminate_backends() -> int:
        async with pool.acquire() as connection:
            killed = await connection.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'",
                database,
            )
        return len(killed)

    for _ in range(5):
        await publish_slowly(bus, 200)
        await terminate_backends()
    assert await writer.wait_idle(within=30)

    assert await stored_seqs(pool) == list(range(1, 1001))
    assert writer.stats().lost == 0
    await writer.close(grace=1)
    await writer_pool.close()


async def test_closing_during_an_outage_keeps_events_for_the_next_start(
    proxy: OutageProxy, pool: Pool, tmp_path: Path
) -> None:
    bus = EventBus(clock=SettableClock())
    proxied = await create_pool(proxy.dsn)
    spool = open_spool(tmp_path / "spool")
    writer = EventWriter(proxied, spool, node=NODE, options=FAST_RETRY)
    writer.attach(bus)
    await proxy.cut()
    await publish_slowly(bus, 300)

    await writer.close(grace=0.2)
    spool.close()
    spooled = sum(
        len(list(Spool.read_run(run))) for run in sorted((tmp_path / "spool").glob("*.jsonl"))
    )
    assert spooled == 300
    assert await stored_seqs(pool) == []

    await proxy.restore()
    next_run = EventWriter(proxied, open_spool(tmp_path / "spool"), node=NODE)
    assert await next_run.replay_spool() == 300
    assert await stored_seqs(pool) == list(range(1, 301))
    assert list((tmp_path / "spool").glob("*.jsonl")) == []
    await proxied.close()


async def test_rows_the_database_refuses_are_set_aside_and_the_rest_stored(
    pool: Pool, tmp_path: Path
) -> None:
    bus = EventBus(clock=SettableClock())
    writer = EventWriter(pool, open_spool(tmp_path / "spool"), node=NODE)
    writer.attach(bus)

    bus.publish(QueueJoined(call_id="c1", queue_id="sales", priority=1, position=1))
    # PostgreSQL text and jsonb cannot hold U+0000.
    bus.publish(QueueJoined(call_id="c2", queue_id="sa\x00les", priority=1, position=1))
    bus.publish(QueueJoined(call_id="c3", queue_id="support", priority=1, position=1))
    assert await writer.wait_idle(within=10)

    assert await stored_seqs(pool) == [1, 3]
    assert writer.stats().set_aside == 1
    (entry,) = (tmp_path / "spool" / REJECTED_FILE).read_text().splitlines()
    rejected = json.loads(entry)
    assert rejected["reason"].startswith("refused by the database")
    assert json.loads(rejected["envelope"])["seq"] == 2
    await writer.close(grace=1)


async def test_unreadable_spool_lines_are_set_aside_during_replay(
    pool: Pool, tmp_path: Path
) -> None:
    teller = Teller()
    tell_transfer_call(teller)
    spool = open_spool(tmp_path / "spool")
    for published in teller.published[:3]:
        row = row_from_published(published, NODE)
        spool.append(row.id, row.envelope.encode())
    spool.append(str(teller.published[3].id), b'{"id": "truncated')
    spool.seal()

    writer = EventWriter(pool, spool, node=NODE)
    assert await writer.replay_spool() == 3
    assert await stored_seqs(pool) == [1, 2, 3]
    assert writer.stats().set_aside == 1
    reason = json.loads((tmp_path / "spool" / REJECTED_FILE).read_text())["reason"]
    assert reason.startswith("unreadable spool line")


async def test_cdr_is_right_after_an_outage_in_the_middle_of_a_call(
    proxy: OutageProxy, pool: Pool, tmp_path: Path
) -> None:
    teller = Teller()
    proxied = await create_pool(proxy.dsn)
    options = WriterOptions(queue_size=2, retry_initial=0.01, retry_max=0.05)
    writer = EventWriter(proxied, open_spool(tmp_path / "spool"), node=NODE, options=options)
    writer.attach(teller.bus)

    everything = Teller()
    tell_transfer_call(everything)
    events = [p.event for p in everything.published]
    offsets = [p.time - everything.published[0].time for p in everything.published]
    for index, (offset, event) in enumerate(zip(offsets, events, strict=True)):
        if index == 10:
            await proxy.cut()
        if index == 25:
            await proxy.restore()
        teller.at(offset, event)
        await asyncio.sleep(0.005)
    assert await writer.wait_idle(within=30)

    async with pool.acquire() as connection:
        cdr = await connection.fetchrow("SELECT * FROM cdrs WHERE call_id = 'call-1'")
        segments = await connection.fetch(
            "SELECT kind, outcome, agent_id, talk_seconds FROM cdr_segments "
            "WHERE call_id = 'call-1' ORDER BY segment_index"
        )
    assert writer.stats().spilled > 0
    assert cdr is not None
    assert (cdr["disposition"], cdr["talk_seconds"], cdr["wrap_up_seconds"]) == (
        "answered",
        110.0,
        35.0,
    )
    assert [(s["kind"], s["outcome"], s["agent_id"], s["talk_seconds"]) for s in segments] == [
        ("ivr", "queue", None, 0.0),
        ("queue", "answered", "a1", 0.0),
        ("agent", "transferred", "a1", 50.0),
        ("transfer", "connected", None, 0.0),
        ("queue", "answered", "a2", 0.0),
        ("agent", "completed", "a2", 60.0),
    ]
    await writer.close(grace=1)
    await proxied.close()


async def test_refused_connection_is_reported_with_the_address() -> None:
    from cxos.storage.database import DatabaseUnavailableError, wait_for_server

    with pytest.raises(DatabaseUnavailableError, match=r"127\.0\.0\.1:9"):
        await wait_for_server("postgresql://postgres:secret@127.0.0.1:9/x", within=0.3)
    with pytest.raises(DatabaseUnavailableError) as error:
        await wait_for_server("postgresql://postgres:secret@127.0.0.1:9/x", within=0.1)
    assert "secret" not in str(error.value)
