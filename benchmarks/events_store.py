"""Events per second sustained from the bus into PostgreSQL, with nothing lost.

    python benchmarks/events_store.py [--rate 2000] [--seconds 10] [--database-url URL]

Publishes whole calls (12 events each: start, IVR, queue, agent, end, wrap-up) at ``--rate``
events/s in 10 ms ticks, as call handling would, for ``--seconds``; the storage writer stores
them (and rebuilds each call's CDR) while they are published. Then it checks that every event
is in the ``events`` table exactly once and every call has a closed CDR, and reports the rate
achieved, how far the writer lagged, and how much went to the spool. ``--rate 0`` publishes as
fast as the loop allows, to find the ceiling.

Without ``--database-url`` it creates a temporary database on 127.0.0.1:5432 and drops it after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench_setup import temporary_database
from machine import cpu_model

from acd.events import AgentAnswered, AgentOffered, AgentStateChanged, QueueJoined, QueueLeft
from config.settings import StorageSettings
from cxos.bus import DomainEvent, EventBus
from cxos.storage.service import StorageService
from ivr.events import IvrEntered, IvrExited
from telephony.events import CallAnswered, CallEnded, CallStarted


def call_events(n: int) -> list[DomainEvent]:
    call_id, agent = f"bench-{n}", f"agent-{n % 50}"
    return [
        CallStarted(
            call_id=call_id,
            trunk_id="carrier",
            did="+33100000000",
            caller_id=f"+336{n:08d}",
            caller_name="",
            sip_call_id=call_id,
        ),
        CallAnswered(call_id=call_id, codec="PCMU"),
        IvrEntered(call_id=call_id, tree_id="main", node_id="welcome", language="en"),
        IvrExited(
            call_id=call_id,
            tree_id="main",
            node_id="to-sales",
            destination="queue",
            target="sales",
            route=("welcome", "menu", "to-sales"),
            seconds_in_ivr=8.5,
        ),
        QueueJoined(call_id=call_id, queue_id="sales", priority=5, position=1 + n % 7),
        AgentOffered(
            call_id=call_id, agent_id=agent, queue_id="sales", lease_seconds=15, wait_seconds=3
        ),
        AgentStateChanged(
            agent_id=agent,
            state="on_call",
            previous_state="ringing",
            reason="answered",
            seconds_in_previous=4.0,
            call_id=call_id,
        ),
        AgentAnswered(
            call_id=call_id, agent_id=agent, queue_id="sales", wait_seconds=7.0, ring_seconds=4.0
        ),
        QueueLeft(
            call_id=call_id, queue_id="sales", reason="answered", wait_seconds=7.0, agent_id=agent
        ),
        CallEnded(
            call_id=call_id,
            cause="normal",
            hangup_by="caller",
            duration_seconds=120.0,
            talk_seconds=100.0,
        ),
        AgentStateChanged(
            agent_id=agent,
            state="wrap_up",
            previous_state="on_call",
            reason="call_ended",
            seconds_in_previous=100.0,
            call_id=call_id,
        ),
        AgentStateChanged(
            agent_id=agent,
            state="available",
            previous_state="wrap_up",
            reason="wrap_up_done",
            seconds_in_previous=10.0,
            call_id=call_id,
        ),
    ]


def event_stream() -> Iterator[DomainEvent]:
    n = 0
    while True:
        yield from call_events(n)
        n += 1


async def run(database_url: str, rate: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as config_dir:
        service = StorageService(
            StorageSettings(database_url=database_url), node="bench", config_dir=Path(config_dir)
        )
        await service.start()
        bus = EventBus(clock=time.time, first_seq=service.next_seq)
        service.attach(bus)
        writer = service.writer
        stream = event_stream()
        published = 0
        max_backlog = 0
        start = time.perf_counter()
        if rate > 0:
            per_tick = rate / 100
            due = 0.0
            tick = 0
            while time.perf_counter() - start < seconds:
                due += per_tick
                while published < int(due):
                    bus.publish(next(stream))
                    published += 1
                tick += 1
                max_backlog = max(max_backlog, writer.stats().queued)
                delay = start + tick * 0.01 - time.perf_counter()
                await asyncio.sleep(max(0.0, delay))
        else:
            while time.perf_counter() - start < seconds:
                for _ in range(1000):
                    bus.publish(next(stream))
                published += 1000
                max_backlog = max(max_backlog, writer.stats().queued)
                await asyncio.sleep(0)
        published_in = time.perf_counter() - start
        drained = await writer.wait_idle(within=120)
        stored_in = time.perf_counter() - start
        stats = writer.stats()
        async with service.database.pool.acquire() as connection:
            rows = await connection.fetchval("SELECT count(*) FROM events")
            distinct = await connection.fetchval("SELECT count(DISTINCT seq) FROM events")
            closed = await connection.fetchval(
                "SELECT count(*) FROM cdrs WHERE ended_at IS NOT NULL"
            )
            version = await connection.fetchval("SHOW server_version")
        await service.stop(grace=5)

    calls = published // len(call_events(0))
    lost = published - rows
    print(
        f"machine: {platform.platform()}, {cpu_model()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, PostgreSQL {version}"
    )
    print(
        f"published {published:,} events in {published_in:.1f} s "
        f"({published / published_in:,.0f}/s offered); all stored after {stored_in:.1f} s "
        f"({published / stored_in:,.0f} events/s sustained into PostgreSQL)"
    )
    print(
        f"stored rows {rows:,} (distinct seq {distinct:,}), lost {lost}, duplicates in table "
        f"{rows - distinct}, spilled to spool {stats.spilled:,}, write failures "
        f"{stats.failures}, peak writer backlog {max_backlog:,} events, drained {drained}"
    )
    print(f"CDRs: {closed:,} closed of ~{calls:,} calls, {stats.cdrs:,} CDR writes")


async def with_temporary_database(rate: int, seconds: float) -> None:
    async with temporary_database() as url:
        await run(url, rate, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=2000, help="events/s offered (0: flat out)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    if args.database_url:
        asyncio.run(run(args.database_url, args.rate, args.seconds))
    else:
        asyncio.run(with_temporary_database(args.rate, args.seconds))


if __name__ == "__main__":
    main()
