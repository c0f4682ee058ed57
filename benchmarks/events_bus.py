"""Event bus and envelope throughput on this machine.

    python benchmarks/events_bus.py [--events N]

Measures (1) publish throughput with three subscribers whose consumers drain their queues on
the event loop, checking that none lost an event, and (2) the rate of envelope JSON encoding.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar

from machine import cpu_model

from cxos.bus import EventBus, Published, Subscription
from cxos.envelope import to_json


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueJoined:
    """A representative call event."""

    TYPE: ClassVar[str] = "queue.joined"
    VERSION: ClassVar[int] = 1
    call_id: str
    queue_id: str
    priority: int
    position: int
    skills: tuple[str, ...] = ()
    attributes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def sample_event(n: int) -> QueueJoined:
    return QueueJoined(
        call_id=f"call-{n % 500}",
        queue_id="sales",
        priority=n % 10,
        position=n % 7,
        skills=("french", "billing"),
        attributes=MappingProxyType({"tier": "gold", "lang": "fr"}),
    )


async def consume(subscription: Subscription, expected: int) -> int:
    received = 0
    async for _ in subscription:
        received += 1
        if received == expected:
            break
    return received


async def bench_publish(count: int, batch: int) -> tuple[float, list[int]]:
    bus = EventBus(clock=time.time, replay_size=10_000)
    subscriptions = [bus.subscribe(name, maxsize=batch * 2) for name in ("a", "b", "c")]
    consumers = [asyncio.create_task(consume(s, count)) for s in subscriptions]
    await asyncio.sleep(0)
    events = [sample_event(n) for n in range(batch)]
    start = time.perf_counter()
    published = 0
    while published < count:
        for event in events[: count - published]:
            bus.publish(event)
        published += min(batch, count - published)
        await asyncio.sleep(0)  # let the consumers drain, as the loop would between calls
    received = await asyncio.gather(*consumers)
    elapsed = time.perf_counter() - start
    lost = [s.stats().dropped for s in subscriptions]
    assert all(r == count for r in received), received
    return elapsed, lost


def bench_json(count: int) -> float:
    bus = EventBus(clock=time.time, replay_size=0)
    items: list[Published] = [bus.publish(sample_event(n)) for n in range(1000)]
    start = time.perf_counter()
    for n in range(count):
        to_json(items[n % 1000], "node-a")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()

    print(f"machine: {platform.platform()}, {cpu_model()}, Python {platform.python_version()}")
    elapsed, lost = asyncio.run(bench_publish(args.events, args.batch))
    print(
        f"publish, 3 subscribers drained on the loop: {args.events / elapsed:,.0f} events/s "
        f"({elapsed * 1e6 / args.events:.2f} µs per event incl. delivery), dropped {lost}"
    )
    json_count = max(1, args.events // 2)
    elapsed = bench_json(json_count)
    print(
        f"envelope to JSON: {json_count / elapsed:,.0f} envelopes/s "
        f"({elapsed * 1e6 / json_count:.2f} µs each)"
    )


if __name__ == "__main__":
    main()
