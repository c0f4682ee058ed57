"""End-to-end events per second: bus → PostgreSQL → webhook outbox → signed POST → CRM receiver.

    python benchmarks/events.py [--rate 2000] [--seconds 10] [--backlog N] [--database-url URL]

Publishes whole calls (12 events each, see ``events_store.py``) at ``--rate`` events/s in 10 ms
ticks for ``--seconds``. The storage writer stores them; the database enqueues a webhook
delivery for each (subscription ``*``); the delivery worker signs and POSTs them, one call's
events in order, to the reference receiver (``examples/crm_receiver.py``) running in its own
process, which verifies every signature and appends each new delivery to a file. The server
side runs on uvloop, as ``cxos run`` does; so does the receiver.

Then it checks that every event is in ``events`` once, every delivery is ``delivered``, the
receiver holds every event id exactly once and each call's events in publication order, and
reports the rate sustained end to end, the peak outbox backlog, the time to drain, and the CPU
per event of each process (this one, the PostgreSQL backends serving its database, the
receiver; read from /proc) from the start of delivery to the last result recorded.

``--backlog N`` first stores N events with no worker running (as a receiver that was down
leaves them), then starts delivery: with ``--rate 0`` it measures how fast a backlog drains,
which must not depend on how large it is.

Without ``--database-url`` it creates a temporary database on 127.0.0.1:5432 and drops it after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bench_setup import temporary_database
from events_store import event_stream
from machine import this_machine
from report import load_average
from sip_cps import cpu_seconds

from config.crm import CrmSettings, DeliverySettings, WebhookEndpoint
from config.settings import StorageSettings
from crm_bridge.outbox import Outbox
from crm_bridge.service import CrmBridgeService
from crm_bridge.signing import WebhookSecret
from cxos.bus import EventBus
from cxos.storage.database import Pool
from cxos.storage.service import StorageOptions, StorageService

RECEIVER = Path(__file__).resolve().parent.parent / "examples" / "crm_receiver.py"
#: The receiver runs on uvloop when it is installed: it stands for a CRM's own server, and the
#: default event loop would make it, not CXOS, the slowest part of the machine.
RUN_RECEIVER = """
import runpy, sys
try:
    import uvloop
except ImportError:
    pass
else:
    uvloop.install()
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def wait_listening(port: int, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
        else:
            writer.close()
            return


async def database_cpu(pool: Pool) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving this database."""
    async with pool.acquire() as connection:
        pids = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        )
    used: dict[int, float] = {}
    for record in pids:
        try:
            used[record["pid"]] = cpu_seconds(record["pid"])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile, or another machine's server
    return used


def acknowledged(crm: CrmBridgeService) -> int:
    """Deliveries the receiver acknowledged so far (the worker's count)."""
    return sum(worker.delivered for worker in crm.stats())


async def fill_backlog(bus: EventBus, storage: StorageService, count: int) -> None:
    """Store ``count`` events (whole calls) before any worker runs: an outbox backlog, as a
    receiver that was down for a while leaves it."""
    stream = event_stream()
    for n in range(count):
        bus.publish(next(stream))
        if n % 1000 == 999:
            await storage.writer.wait_idle(within=120)
    await storage.writer.wait_idle(within=120)


async def run(database_url: str, rate: int, seconds: float, in_flight: int, backlog: int) -> int:
    secret = WebhookSecret.generate().serialize()
    port = free_port()
    out = sys.stdout.write
    with tempfile.TemporaryDirectory() as work:
        store = Path(work) / "deliveries.jsonl"
        receiver = await asyncio.create_subprocess_exec(
            *(sys.executable, "-c", RUN_RECEIVER, str(RECEIVER)),
            *("--secret", secret, "--port", str(port)),
            *("--store", str(store)),
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await wait_listening(port)
            storage = StorageService(
                StorageSettings(database_url=database_url),
                node="bench",
                config_dir=Path(work),
                options=StorageOptions(pool_size=6),
            )
            await storage.start()
            bus = EventBus(clock=time.time, first_seq=storage.next_seq)
            storage.attach(bus)
            endpoint = WebhookEndpoint(
                name="receiver",
                url=f"http://127.0.0.1:{port}/webhooks",
                secret=secret,
                events=("*",),
                max_in_flight=in_flight,
            )
            crm = CrmBridgeService(
                CrmSettings(webhooks=(endpoint,), delivery=DeliverySettings(poll_interval=0.02)),
                node="bench",
                pool=storage.database.pool,
                bus=bus,
            )
            pool = storage.database.pool
            if backlog:
                await Outbox(pool, owner="bench").sync_endpoints([endpoint])
                await fill_backlog(bus, storage, backlog)
            database_before = await database_cpu(pool)
            server_before, receiver_before = time.process_time(), cpu_seconds(receiver.pid)
            await crm.start()
            stream = event_stream()
            for _ in range(backlog):  # the calls of the backlog are not published again
                next(stream)
            published = backlog
            peak_backlog = backlog
            start = time.perf_counter()
            per_tick = rate / 100
            tick = 0
            next_sample = start
            while rate and time.perf_counter() - start < seconds:
                tick += 1
                while published < int(per_tick * tick):
                    bus.publish(next(stream))
                    published += 1
                if time.perf_counter() >= next_sample:
                    next_sample += 0.5
                    peak_backlog = max(peak_backlog, published - acknowledged(crm))
                await asyncio.sleep(max(0.0, start + tick * 0.01 - time.perf_counter()))
            published_in = time.perf_counter() - start
            delivered_in_window = acknowledged(crm)
            # Progress from the worker's own counter: counting the delivery log in the database
            # every few milliseconds would cost the database more than the deliveries do.
            deadline = time.perf_counter() + 300
            while time.perf_counter() < deadline:
                if acknowledged(crm) >= published:
                    break
                await asyncio.sleep(0.01)
            delivered = 0
            while time.perf_counter() < deadline:  # the last results being recorded
                async with pool.acquire() as connection:
                    delivered = await connection.fetchval("SELECT count(*) FROM webhook_delivered")
                if delivered >= published:
                    break
                await asyncio.sleep(0.05)
            done_in = time.perf_counter() - start
            server_cpu = time.process_time() - server_before
            receiver_cpu = cpu_seconds(receiver.pid) - receiver_before
            database_after = await database_cpu(pool)
            postgres_cpu = sum(
                used - database_before.get(pid, 0.0) for pid, used in database_after.items()
            )
            load = load_average()
            async with pool.acquire() as connection:
                rows = await connection.fetchval("SELECT count(*) FROM events")
                other = await connection.fetchval("SELECT count(*) FROM webhook_deliveries")
                version = await connection.fetchval("SHOW server_version")
            worker = crm.stats()[0]
            await crm.stop(grace=5)
            await storage.stop(grace=5)
        finally:
            receiver.terminate()
            await receiver.wait()
        received = [json.loads(line) for line in store.read_text().splitlines()]

    ids = [envelope["id"] for envelope in received]
    last_seq: dict[str, int] = {}
    out_of_order = 0
    for envelope in received:
        key = envelope["call_id"] or envelope["data"].get("agent_id", "")
        if envelope["seq"] < last_seq.get(key, 0):
            out_of_order += 1
        last_seq[key] = envelope["seq"]
    lost = published - len(set(ids))
    out(f"{this_machine()}; PostgreSQL {version}\n")
    if backlog:
        out(f"a backlog of {backlog:,} events was stored before delivery started\n")
    if rate:
        live = published - backlog
        out(
            f"published {live:,} events in {published_in:.1f} s "
            f"({live / published_in:,.0f}/s offered); "
            f"{delivered_in_window / published_in:,.0f}/s delivered meanwhile; "
            f"all delivered {done_in - published_in:.2f} s after the last publish\n"
        )
    out(
        f"{published:,} events delivered in {done_in:.1f} s: {published / done_in:,.0f} events/s "
        f"sustained bus → PostgreSQL → webhook receiver\n"
    )
    out(
        f"events stored {rows:,}; deliveries delivered {delivered:,}, left in the outbox {other}; "
        f"receiver got {len(ids):,} deliveries, {len(set(ids)):,} distinct, lost {lost}, "
        f"out of order per call {out_of_order}\n"
    )
    out(
        f"peak outbox backlog {peak_backlog:,} events; worker: {worker.failed_attempts} failed "
        f"attempts, breaker {worker.breaker}; max in flight {in_flight}\n"
    )
    # From the start of delivery to the last result recorded; a backlog's storing is before.
    per_event = 1000 / max(published, 1)
    out(
        f"CPU per event delivered: server {server_cpu * per_event:.3f} ms, PostgreSQL backends "
        f"{postgres_cpu * per_event:.3f} ms, receiver {receiver_cpu * per_event:.3f} ms, "
        f"total {(server_cpu + postgres_cpu + receiver_cpu) * per_event:.3f} ms; "
        f"load average {load}\n"
    )
    return 0 if lost == 0 and out_of_order == 0 and rows == published else 1


async def with_temporary_database(rate: int, seconds: float, in_flight: int, backlog: int) -> int:
    async with temporary_database() as url:
        return await run(url, rate, seconds, in_flight, backlog)


def event_loop_runner() -> Callable[[Coroutine[Any, Any, int]], int]:
    """uvloop where available, as ``cxos run`` uses it."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a Linux/macOS dependency
        return asyncio.run
    return uvloop.run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=2000, help="events/s offered")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--in-flight", type=int, default=128, help="requests in flight at once")
    parser.add_argument(
        "--backlog", type=int, default=0, help="events stored before delivery starts"
    )
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    runner = event_loop_runner()
    if args.database_url:
        return runner(run(args.database_url, args.rate, args.seconds, args.in_flight, args.backlog))
    return runner(with_temporary_database(args.rate, args.seconds, args.in_flight, args.backlog))


if __name__ == "__main__":
    raise SystemExit(main())
