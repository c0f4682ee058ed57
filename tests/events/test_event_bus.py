"""The in-process event bus: order, stamping, bounded queues, replay and filters."""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass
from typing import ClassVar

import pytest

from cxos.bus import (
    BusClosedError,
    EventBus,
    EventFilter,
    OverflowPolicy,
    Published,
    ReplayUnavailableError,
    SubscriberDisconnectedError,
    Subscription,
    Uuid7Generator,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueJoined:
    TYPE: ClassVar[str] = "queue.joined"
    VERSION: ClassVar[int] = 1
    call_id: str
    queue_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueLeft:
    TYPE: ClassVar[str] = "queue.left"
    VERSION: ClassVar[int] = 1
    call_id: str
    queue_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStateChanged:
    TYPE: ClassVar[str] = "agent.state_changed"
    VERSION: ClassVar[int] = 1
    agent_id: str
    state: str


class FakeClock:
    """Wall clock that advances 10 ms on every read."""

    def __init__(self, start: float = 1_714_564_800.0) -> None:
        self.now = start

    def __call__(self) -> float:
        value = self.now
        self.now += 0.010
        return value


def make_bus(**kwargs: object) -> EventBus:
    return EventBus(clock=FakeClock(), **kwargs)  # type: ignore[arg-type]


def joined(n: int, call_id: str = "c1") -> QueueJoined:
    return QueueJoined(call_id=call_id, queue_id=f"q{n}")


def drain(subscription: Subscription) -> list[Published]:
    items = []
    while (item := subscription.get_nowait()) is not None:
        items.append(item)
    return items


def take_seq(subscription: Subscription) -> int | None:
    item = subscription.get_nowait()
    return None if item is None else item.seq


def test_publish_stamps_seq_time_and_time_ordered_uuid7() -> None:
    clock = FakeClock(start=1_714_564_800.0)
    bus = EventBus(clock=clock)
    published = [bus.publish(joined(i)) for i in range(5)]

    assert [p.seq for p in published] == [1, 2, 3, 4, 5]
    assert published[0].time == 1_714_564_800.0
    assert published[1].time == pytest.approx(1_714_564_800.010)
    assert [p.id.version for p in published] == [7] * 5
    assert [p.id.variant for p in published] == [uuid.RFC_4122] * 5
    # The UUIDv7 timestamp is the publication time in milliseconds (RFC 9562 §5.7).
    assert published[0].id.int >> 80 == 1_714_564_800_000
    assert sorted(p.id for p in published) == [p.id for p in published]
    assert bus.next_seq == 6


def test_seq_continues_from_first_seq_after_restart() -> None:
    bus = make_bus(first_seq=1001)
    assert bus.publish(joined(0)).seq == 1001
    assert bus.publish(joined(1)).seq == 1002


async def test_subscribers_receive_every_event_in_publication_order() -> None:
    bus = make_bus()
    first = bus.subscribe("storage", maxsize=100)
    second = bus.subscribe("outbox", maxsize=100)

    async def consume(subscription: Subscription, count: int) -> list[int]:
        seqs = []
        async for item in subscription:
            seqs.append(item.seq)
            if len(seqs) == count:
                break
        return seqs

    tasks = [asyncio.create_task(consume(s, 20)) for s in (first, second)]
    await asyncio.sleep(0)  # both consumers are now waiting on empty queues
    for i in range(20):
        bus.publish(joined(i))
        if i % 7 == 0:
            await asyncio.sleep(0)
    assert await asyncio.gather(*tasks) == [list(range(1, 21))] * 2
    assert first.stats().delivered == 20
    assert first.stats().dropped == 0


def test_drop_oldest_keeps_the_newest_and_counts_drops() -> None:
    bus = make_bus()
    subscription = bus.subscribe("wallboard", maxsize=3, overflow_policy="drop_oldest")
    for i in range(5):
        bus.publish(joined(i))

    assert [p.seq for p in drain(subscription)] == [3, 4, 5]
    stats = subscription.stats()
    assert (stats.delivered, stats.dropped, stats.queued) == (3, 2, 0)


async def test_disconnect_closes_only_the_slow_subscriber_with_a_reason() -> None:
    bus = make_bus()
    slow = bus.subscribe("ws-client-1", maxsize=2, overflow_policy=OverflowPolicy.DISCONNECT)
    healthy = bus.subscribe("storage", maxsize=10)
    for i in range(3):
        bus.publish(joined(i))

    assert slow.closed
    assert slow.closed_reason is not None and "queue full" in slow.closed_reason
    with pytest.raises(SubscriberDisconnectedError) as excinfo:
        await anext(slow)
    assert excinfo.value.name == "ws-client-1"
    assert slow.stats().dropped == 3
    assert [s.name for s in bus.stats()] == ["storage"]
    assert [p.seq for p in drain(healthy)] == [1, 2, 3]
    # Publishing goes on; the name can be reused by a reconnecting client.
    bus.publish(joined(4))
    assert bus.subscribe("ws-client-1", maxsize=2) is not slow


def test_spill_hands_overflow_to_the_callback_in_contiguous_runs() -> None:
    bus = make_bus()
    spooled: list[int] = []
    subscription = bus.subscribe(
        "storage", maxsize=2, overflow_policy="spill", on_spill=lambda p: spooled.append(p.seq)
    )
    for i in range(5):
        bus.publish(joined(i))
    assert spooled == [3, 4, 5]

    # Still spilling while the consumer has a backlog: the queue keeps a contiguous run.
    assert take_seq(subscription) == 1
    bus.publish(joined(5))
    assert spooled == [3, 4, 5, 6]
    assert take_seq(subscription) == 2
    # Drained: live events go to the queue again.
    bus.publish(joined(6))
    assert [p.seq for p in drain(subscription)] == [7]
    stats = subscription.stats()
    assert (stats.delivered, stats.spilled, stats.dropped) == (3, 4, 0)


def test_a_failing_spill_handler_never_breaks_publish_and_is_counted_as_loss() -> None:
    bus = make_bus()

    def broken(published: Published) -> None:
        raise OSError("disk full")

    subscription = bus.subscribe("storage", maxsize=1, overflow_policy="spill", on_spill=broken)
    bus.publish(joined(0))
    bus.publish(joined(1))
    assert subscription.stats().dropped == 1
    assert subscription.stats().spilled == 0


def test_spill_policy_requires_a_handler() -> None:
    with pytest.raises(ValueError, match="on_spill"):
        make_bus().subscribe("storage", overflow_policy="spill")


def test_replay_ring_resumes_from_a_seq_and_says_when_it_is_too_old() -> None:
    bus = make_bus(replay_size=3)
    for i in range(5):
        bus.publish(joined(i))

    assert [p.seq for p in bus.replay_from(3)] == [3, 4, 5]
    assert [p.seq for p in bus.replay_from(5)] == [5]
    assert bus.replay_from(6) == []
    with pytest.raises(ReplayUnavailableError, match="too old") as excinfo:
        bus.replay_from(2)
    assert excinfo.value.oldest == 3
    with pytest.raises(ReplayUnavailableError, match="never published"):
        bus.replay_from(7)


def test_subscribe_with_resume_from_joins_backlog_and_live_stream_without_gap() -> None:
    bus = make_bus(replay_size=10)
    for i in range(4):
        bus.publish(joined(i, call_id="c1" if i % 2 else "c2"))
    subscription = bus.subscribe(
        "ws-client", maxsize=10, filter=EventFilter(call_id="c1"), resume_from=2
    )
    bus.publish(joined(9, call_id="c1"))
    assert [p.seq for p in drain(subscription)] == [2, 4, 5]


def test_resume_from_a_seq_that_left_the_ring_is_refused() -> None:
    bus = make_bus(replay_size=2)
    for i in range(5):
        bus.publish(joined(i))
    with pytest.raises(ReplayUnavailableError):
        bus.subscribe("ws-client", resume_from=1)
    assert bus.stats() == []


def test_filters_by_type_family_and_call() -> None:
    bus = make_bus()
    exact = bus.subscribe("exact", filter=EventFilter(types=frozenset({"queue.left"})))
    family = bus.subscribe("family", filter=EventFilter(types=frozenset({"queue.*"})))
    agents = bus.subscribe("agents", filter=EventFilter(types=frozenset({"agent.*"})))
    call = bus.subscribe("call", filter=EventFilter(call_id="c7"))
    custom = bus.subscribe("custom", filter=lambda p: p.seq % 2 == 0)

    bus.publish(QueueJoined(call_id="c7", queue_id="sales"))
    bus.publish(QueueLeft(call_id="c8", queue_id="sales"))
    bus.publish(AgentStateChanged(agent_id="a1", state="available"))
    bus.publish(QueueLeft(call_id="c7", queue_id="sales"))

    assert [p.seq for p in drain(exact)] == [2, 4]
    assert [p.seq for p in drain(family)] == [1, 2, 4]
    assert [p.seq for p in drain(agents)] == [3]
    assert [p.seq for p in drain(call)] == [1, 4]
    assert [p.seq for p in drain(custom)] == [2, 4]


def test_event_filter_rejects_malformed_patterns() -> None:
    for pattern in ("", ".*", "queue*", "*.joined"):
        with pytest.raises(ValueError, match="pattern"):
            EventFilter(types=frozenset({pattern}))


def test_a_failing_filter_skips_that_subscriber_only() -> None:
    bus = make_bus()

    def broken(published: Published) -> bool:
        raise KeyError("oops")

    bad = bus.subscribe("bad", filter=broken)
    good = bus.subscribe("good")
    bus.publish(joined(0))
    assert len(bad) == 0
    assert len(good) == 1


async def test_closing_the_bus_delivers_what_is_queued_then_ends_iteration() -> None:
    bus = make_bus()
    subscription = bus.subscribe("storage")
    for i in range(3):
        bus.publish(joined(i))
    bus.close()
    assert [p.seq async for p in subscription] == [1, 2, 3]
    assert subscription.closed_reason == "bus closed"
    with pytest.raises(BusClosedError):
        bus.publish(joined(9))
    with pytest.raises(BusClosedError):
        bus.subscribe("late")


async def test_unsubscribing_wakes_a_waiting_consumer() -> None:
    bus = make_bus()
    subscription = bus.subscribe("ws-client")
    consumer = asyncio.create_task(anext(subscription))
    await asyncio.sleep(0)
    subscription.close()
    with pytest.raises(StopAsyncIteration):
        await consumer
    bus.publish(joined(0))
    assert len(subscription) == 0


async def test_one_subscription_has_one_consumer() -> None:
    bus = make_bus()
    subscription = bus.subscribe("storage")
    first = asyncio.create_task(anext(subscription))
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="already being consumed"):
        await anext(subscription)
    bus.publish(joined(0))
    assert (await first).seq == 1


def test_subscriber_names_are_unique_and_sizes_positive() -> None:
    bus = make_bus()
    bus.subscribe("storage")
    with pytest.raises(ValueError, match="already exists"):
        bus.subscribe("storage")
    with pytest.raises(ValueError, match="maxsize"):
        bus.subscribe("other", maxsize=0)


def test_uuid7_stays_ordered_within_a_millisecond_and_when_the_clock_steps_back() -> None:
    generator = Uuid7Generator(random_bytes=lambda n: b"\xff" * n)
    first = generator.next(1000)
    # Counter seeded with 11 random bits, top bit clear: 0x7ff.
    assert (first.int >> 64) & 0xFFF == 0x7FF
    ids = [first] + [generator.next(1000) for _ in range(3000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    # 0x7ff + 3000 exceeds 12 bits, so the timestamp moved on by one millisecond.
    assert ids[-1].int >> 80 == 1001
    earlier = generator.next(500)
    assert earlier > ids[-1]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in [*ids, earlier])


def test_uuid7_rejects_timestamps_outside_48_bits() -> None:
    generator = Uuid7Generator()
    with pytest.raises(ValueError, match="out of range"):
        generator.next(1 << 48)


def test_uuid7_draws_random_bytes_ahead_for_many_ids() -> None:
    draws: list[int] = []

    def random_bytes(size: int) -> bytes:
        draws.append(size)
        return os.urandom(size)

    generator = Uuid7Generator(random_bytes=random_bytes)
    ids = [generator.next(2000 + n // 10) for n in range(200)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in ids)
    # Ten random bytes per id, fetched 64 ids at a time.
    assert draws == [Uuid7Generator.POOL_BYTES] * 4
