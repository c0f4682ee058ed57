"""Event stream latency with many supervisor WebSocket clients.

    python benchmarks/supervisor.py [--clients 500] [--rate 50] [--seconds 10]
                                    [--client-processes 1]

The API runs in this process on 127.0.0.1 with its event bus; the clients run in other
processes (``--client-processes``, sharing the clients out) so that their work does not share
the server's core. Events are published at ``rate`` per second while every client is
subscribed; each event's latency is the time from its publication on the bus to its arrival at
a client (both read from the same wall clock). Prints the machine and load average, the
percentiles over every (event, client) pair, any event lost, and the CPU time of the server and
of the client processes (a client side that needs a whole core is itself adding latency).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import numpy as np
from aiohttp import web

from config.api import ApiAccessSettings, ApiToken, Role
from cxos.bus import EventBus
from supervisor_api.actions import MonitorMode
from supervisor_api.app import create_app
from supervisor_api.state import STATE, ApiDependencies

TOKEN = "benchmark-token-0123456789"


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuePosition:
    """A representative, frequent call event."""

    TYPE: ClassVar[str] = "queue.position"
    VERSION: ClassVar[int] = 1
    call_id: str
    queue_id: str
    position: int
    ewt_seconds: float | None


class NoActions:
    """The benchmark sends no actions."""

    async def agent_login(self, agent_id: str, *, by: str) -> None: ...
    async def agent_logout(self, agent_id: str, *, by: str) -> None: ...
    async def agent_pause(self, agent_id: str, reason: str, *, by: str) -> None: ...
    async def agent_unpause(self, agent_id: str, *, by: str) -> None: ...
    async def set_priority(self, call_id: str, priority: int, *, by: str) -> None: ...
    async def move_call(self, call_id: str, queue_id: str, *, by: str) -> None: ...
    async def hangup(self, call_id: str, *, by: str) -> None: ...
    async def start_recording(self, call_id: str, *, by: str, layout: str = "stereo") -> None: ...
    async def stop_recording(self, call_id: str, *, by: str) -> None: ...
    async def monitor(self, call_id: str, mode: MonitorMode, agent_id: str, *, by: str) -> None: ...
    async def end_monitor(self, call_id: str, *, by: str) -> None: ...


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# Client process -------------------------------------------------------------------------------


async def _client(
    session: aiohttp.ClientSession, url: str, events: int, ready: asyncio.Queue[None]
) -> tuple[np.ndarray, str | None]:
    received = np.full(events + 1, np.nan)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with session.ws_connect(url, headers=headers, max_msg_size=0) as ws:
        ready.put_nowait(None)
        count = 0
        async for message in ws:
            text = message.data
            if text.startswith('{"control"'):
                continue
            now = time.time()
            start = text.index('"seq":') + 6
            seq = int(text[start : text.index(",", start)])
            if seq <= events:
                received[seq] = now
            count += 1
            if count == events:
                break
        reason = None if count == events else f"closed {ws.close_code}: {message.extra}"
    return received, reason


async def _clients(url: str, clients: int, events: int, pipe: Connection) -> None:
    ready: asyncio.Queue[None] = asyncio.Queue()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.create_task(_client(session, url, events, ready)) for _ in range(clients)]
        for _ in range(clients):
            await ready.get()
        pipe.send("connected")
        cpu_before = time.process_time()
        results = await asyncio.gather(*tasks)
        cpu = time.process_time() - cpu_before
    pipe.send(([r for r, _ in results], [reason for _, reason in results if reason], cpu))


def client_process(url: str, clients: int, events: int, pipe: Connection) -> None:
    _runner()(_clients(url, clients, events, pipe))


def _runner() -> Any:
    """uvloop where available, as ``cxos run`` uses it."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


# Server process -------------------------------------------------------------------------------


async def run(clients: int, rate: float, seconds: float, processes: int) -> None:
    bus = EventBus(clock=time.time, replay_size=10_000)
    settings = ApiAccessSettings(
        tokens=(ApiToken(name="bench", role=Role.SUPERVISOR, token=TOKEN),),
        stream={"max_clients": clients + 10},  # type: ignore[arg-type]
    )
    app = create_app(ApiDependencies(bus=bus, node="bench", settings=settings, actions=NoActions()))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=clients)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/events"
    events = int(rate * seconds)
    pipes = []
    children = []
    for index in range(processes):
        ours, theirs = multiprocessing.Pipe()
        share = clients // processes + (1 if index < clients % processes else 0)
        process = multiprocessing.get_context("spawn").Process(
            target=client_process, args=(url, share, events, theirs)
        )
        process.start()
        pipes.append(ours)
        children.append(process)
    loop = asyncio.get_running_loop()
    for ours in pipes:
        assert await loop.run_in_executor(None, ours.recv) == "connected"
    hub = app[STATE].hub
    print(
        f"{len(hub.sockets)} clients in {processes} process(es), {len(hub.fanout.groups)} "
        f"filter group(s); publishing {events} events at {rate:g}/s; "
        f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    published_at = np.zeros(events + 1)
    # CPU of this process only (the clients run in their own): unlike latency, it does not
    # depend much on what else the machine is running.
    cpu_before = time.process_time()
    start = loop.time()
    for n in range(events):
        await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
        published = bus.publish(
            QueuePosition(
                call_id=f"call-{n % 300}", queue_id="sales", position=1 + n % 9, ewt_seconds=12.5
            )
        )
        published_at[published.seq] = published.time
    received: list[np.ndarray] = []
    failures: list[str] = []
    client_cpu = []
    for ours in pipes:
        some, failed, used = await loop.run_in_executor(None, ours.recv)
        received += some
        failures += failed
        client_cpu.append(used)
    cpu = time.process_time() - cpu_before
    wall = loop.time() - start
    for process in children:
        process.join()
    await runner.cleanup()

    latencies = np.concatenate([r[1:] - published_at[1:] for r in received])
    lost = int(np.isnan(latencies).sum())
    ms = latencies[~np.isnan(latencies)] * 1000
    p50, p90, p99, p999 = np.percentile(ms, [50, 90, 99, 99.9])
    print(
        f"latency publish → client over {ms.size:,} deliveries: p50 {p50:.1f} ms, "
        f"p90 {p90:.1f} ms, p99 {p99:.1f} ms, p99.9 {p999:.1f} ms, max {ms.max():.1f} ms"
    )
    print(
        f"server CPU {cpu:.2f} s for {events * clients:,} deliveries: "
        f"{cpu / (events * clients) * 1e6:.1f} µs each, "
        f"{cpu / wall:.0%} of a core over {wall:.1f} s"
    )
    print(
        "client CPU "
        + ", ".join(f"{used:.2f} s ({used / wall:.0%} of a core)" for used in client_cpu)
    )
    print(f"lost deliveries: {lost}; clients disconnected early: {len(failures)}")
    for reason in failures[:5]:
        print(f"  {reason}")
    print(f"target p99 < 100 ms: {'met' if p99 < 100 and lost == 0 else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--client-processes", type=int, default=1)
    args = parser.parse_args()
    print(
        f"machine: {platform.platform()}, {cpu_model()}, {multiprocessing.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    _runner()(run(args.clients, args.rate, args.seconds, args.client_processes))


if __name__ == "__main__":
    main()
