"""In-process event bus: every domain event, stamped once, fanned out to bounded queues.

Rules this module keeps:

- ``EventBus.publish`` is synchronous and never awaits, so call handling can report what
  happened without yielding to the loop. It must be called from the event loop's thread.
- Publication stamps each event once: a per-node sequence number ``seq`` (strictly increasing,
  the order every consumer sees), the wall-clock ``time`` from the injected clock, and a UUIDv7
  ``id`` (RFC 9562 §5.7) that every external rendering of the event reuses.
- Every subscriber queue is bounded and its ``OverflowPolicy`` says what happens when it is full:
  ``drop_oldest`` (counted), ``disconnect`` (the subscriber is closed with a reason; for slow
  WebSocket clients) or ``spill`` (overflow is handed to a callback; for durable consumers).
- A bounded replay ring keeps the last published events so a consumer can resume from a
  sequence number, and is told plainly when that number has left the ring.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import Field, dataclass, field
from typing import Any, ClassVar, Protocol

logger = logging.getLogger(__name__)


class DomainEvent(Protocol):
    """What the bus needs from an event: a frozen dataclass with ``TYPE`` and ``VERSION``."""

    TYPE: ClassVar[str]
    VERSION: ClassVar[int]
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Published:
    """One event as published on this node: its identity and order are fixed here."""

    seq: int
    """Per-node sequence number, strictly increasing in publication order."""
    time: float
    """Wall-clock publication time, seconds since the Unix epoch (UTC)."""
    id: uuid.UUID
    """UUIDv7 whose timestamp is ``time`` in milliseconds; the event's identity everywhere."""
    event: DomainEvent
    rendering: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """Renderings of ``event`` made once and shared by every consumer (the envelope's ``data``
    and ``time``, its JSON): `cxos.envelope` fills it. The event is frozen, so they never go
    stale; storing, projecting and streaming an event each rendered it again."""

    @property
    def type(self) -> str:
        return self.event.TYPE

    @property
    def call_id(self) -> str | None:
        value = getattr(self.event, "call_id", None)
        return value if isinstance(value, str) else None


class Uuid7Generator:
    """UUIDv7 values, time ordered even within one millisecond.

    RFC 9562 §5.7 layout: 48-bit Unix milliseconds, version 7, 12 bits ``rand_a``, variant
    ``10``, 62 bits ``rand_b``. ``rand_a`` is a counter (RFC 9562 §6.2, method 1): seeded with
    random bits and its top bit clear on each new millisecond so it has room to count, and
    incremented within the same millisecond. When the counter is exhausted, or the clock steps
    back, the timestamp is advanced past the last one used (§6.2 allows this) so that values
    stay strictly increasing.
    """

    __slots__ = ("_counter", "_last_ms", "_pool", "_pool_at", "_random_bytes")

    #: Random bytes drawn from ``random_bytes`` at once, ten per UUID: one system call for 64
    #: ids rather than one each (the bytes are the same kind, only fetched ahead).
    POOL_BYTES = 640

    def __init__(self, random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self._random_bytes = random_bytes
        self._last_ms = -1
        self._counter = 0
        self._pool = b""
        self._pool_at = 0

    def next(self, unix_ms: int) -> uuid.UUID:
        if unix_ms < 0 or unix_ms >= 1 << 48:
            raise ValueError(f"UUIDv7 timestamp out of range: {unix_ms} ms")
        at = self._pool_at
        if at + 10 > len(self._pool):
            self._pool = self._random_bytes(self.POOL_BYTES)
            at = 0
        self._pool_at = at + 10
        rand = int.from_bytes(self._pool[at : at + 10], "big")
        if unix_ms > self._last_ms:
            self._last_ms = unix_ms
            self._counter = (rand >> 64) & 0x7FF  # 11 random bits: the counter's top bit is 0
        else:
            self._counter += 1
            if self._counter > 0xFFF:
                self._last_ms += 1
                self._counter = (rand >> 64) & 0x7FF
        rand_b = rand & ((1 << 62) - 1)
        value = (self._last_ms << 80) | (0x7 << 76) | (self._counter << 64) | (0b10 << 62) | rand_b
        return uuid.UUID(int=value)


class OverflowPolicy(enum.Enum):
    """What a full subscriber queue does with the next event."""

    DROP_OLDEST = "drop_oldest"
    """Discard the oldest queued event to make room; counted in ``dropped``."""
    DISCONNECT = "disconnect"
    """Close the subscriber with a reason; its consumer gets ``SubscriberDisconnectedError``."""
    SPILL = "spill"
    """Hand overflow to the subscriber's ``on_spill`` callback, which must keep it (spool)."""


class BusClosedError(RuntimeError):
    """The bus was closed; publishing or subscribing is a shutdown-order bug."""


class SubscriberDisconnectedError(Exception):
    """The bus closed this subscriber because it did not keep up."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"subscriber {name!r} disconnected: {reason}")
        self.name = name
        self.reason = reason


class ReplayUnavailableError(LookupError):
    """The requested sequence number cannot be replayed from the ring."""

    def __init__(self, requested: int, oldest: int | None, next_seq: int, reason: str) -> None:
        super().__init__(reason)
        self.requested = requested
        self.oldest = oldest
        """Oldest sequence number still in the ring (None when the ring is empty)."""
        self.next_seq = next_seq
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class EventFilter:
    """Selects events by type and/or call.

    ``types`` holds exact type names (``"queue.joined"``) or family prefixes ending in ``.*``
    (``"queue.*"``). An empty ``types`` matches every type; ``call_id=None`` matches every call.
    """

    types: frozenset[str] = frozenset()
    call_id: str | None = None

    def __post_init__(self) -> None:
        for name in self.types:
            if not name or name == ".*" or "*" in name.removesuffix(".*"):
                raise ValueError(f"bad event type pattern {name!r}: use 'a.b' or 'a.*'")

    def __call__(self, published: Published) -> bool:
        if self.call_id is not None and published.call_id != self.call_id:
            return False
        if not self.types:
            return True
        event_type = published.event.TYPE
        if event_type in self.types:
            return True
        return any(
            pattern.endswith(".*") and event_type.startswith(pattern[:-1]) for pattern in self.types
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriberStats:
    """A snapshot of one subscriber's counters."""

    name: str
    policy: OverflowPolicy
    maxsize: int
    queued: int
    delivered: int
    """Events handed to the consumer by iteration."""
    dropped: int
    """Events this subscriber will never see (drop_oldest, disconnect, or a failed spill)."""
    spilled: int
    """Events handed to ``on_spill`` instead of the queue."""
    closed_reason: str | None


SpillHandler = Callable[[Published], None]
Filter = Callable[[Published], bool]


class Subscription:
    """One consumer's bounded queue; consume with ``async for published in subscription``.

    Iteration ends when the subscription is closed by its consumer (``close()``) or when the
    bus closes (after the queued events have been delivered). When the bus disconnects a slow
    subscriber, iteration raises ``SubscriberDisconnectedError``.
    """

    __slots__ = (
        "_bus",
        "_closed_reason",
        "_disconnected",
        "_queue",
        "_spilling",
        "_waiter",
        "delivered",
        "dropped",
        "filter",
        "maxsize",
        "name",
        "on_spill",
        "policy",
        "spilled",
    )

    def __init__(
        self,
        bus: EventBus,
        *,
        name: str,
        maxsize: int,
        event_filter: Filter | None,
        policy: OverflowPolicy,
        on_spill: SpillHandler | None,
    ) -> None:
        self._bus = bus
        self.name = name
        self.maxsize = maxsize
        self.filter = event_filter
        self.policy = policy
        self.on_spill = on_spill
        self._queue: deque[Published] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed_reason: str | None = None
        self._disconnected = False
        self._spilling = False
        self.delivered = 0
        self.dropped = 0
        self.spilled = 0

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    @property
    def closed_reason(self) -> str | None:
        return self._closed_reason

    def __len__(self) -> int:
        return len(self._queue)

    def stats(self) -> SubscriberStats:
        return SubscriberStats(
            name=self.name,
            policy=self.policy,
            maxsize=self.maxsize,
            queued=len(self._queue),
            delivered=self.delivered,
            dropped=self.dropped,
            spilled=self.spilled,
            closed_reason=self._closed_reason,
        )

    def close(self, reason: str = "unsubscribed") -> None:
        """Unsubscribe: queued events are discarded and iteration ends."""
        if self.closed:
            return
        self._queue.clear()
        self._finish(reason)

    def get_nowait(self) -> Published | None:
        """The next queued event, or None when the queue is empty (for batch draining)."""
        if self._disconnected:
            raise SubscriberDisconnectedError(self.name, self._closed_reason or "disconnected")
        if not self._queue:
            return None
        self.delivered += 1
        published = self._queue.popleft()
        if not self._queue:
            self._spilling = False
        return published

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Published:
        while True:
            published = self.get_nowait()
            if published is not None:
                return published
            if self.closed:
                raise StopAsyncIteration
            if self._waiter is not None:
                raise RuntimeError(f"subscriber {self.name!r} is already being consumed")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    # Called by the bus -------------------------------------------------------------------

    def _offer(self, published: Published) -> None:
        if self._spilling:
            # Once overflow started, later events follow it to the spill handler until the
            # consumer has drained the queue, so the queue and the spool each hold contiguous
            # runs of sequence numbers rather than interleaved ones.
            self._spill(published)
            return
        queue = self._queue
        if len(queue) < self.maxsize:
            queue.append(published)
            self._wake()
            return
        policy = self.policy
        if policy is OverflowPolicy.DROP_OLDEST:
            queue.popleft()
            queue.append(published)
            self.dropped += 1
            self._wake()
        elif policy is OverflowPolicy.SPILL:
            self._spilling = True
            self._spill(published)
        else:
            self.dropped += len(queue) + 1
            queue.clear()
            self._disconnected = True
            self._finish(f"queue full ({self.maxsize} events): consumer too slow")
            logger.warning("bus subscriber %r disconnected: queue full", self.name)

    def _spill(self, published: Published) -> None:
        assert self.on_spill is not None  # guaranteed by EventBus.subscribe
        try:
            self.on_spill(published)
        except Exception:
            # publish() must never raise into call handling; the loss is counted and logged.
            self.dropped += 1
            logger.exception(
                "spill handler of %r failed; event seq %d lost", self.name, published.seq
            )
        else:
            self.spilled += 1

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _finish(self, reason: str) -> None:
        self._closed_reason = reason
        self._bus._forget(self)
        self._wake()


class EventBus:
    """Per-node publish/subscribe with sequence numbers, bounded queues and a replay ring."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        replay_size: int = 10_000,
        first_seq: int = 1,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        """``clock`` returns wall-clock seconds since the epoch (``time.time`` in production).

        ``first_seq`` lets a restarted node continue after the last sequence number it stored.
        """
        if replay_size < 0:
            raise ValueError(f"replay_size must be >= 0, got {replay_size}")
        if first_seq < 1:
            raise ValueError(f"first_seq must be >= 1, got {first_seq}")
        self._clock = clock
        self._next_seq = first_seq
        self._ring: deque[Published] = deque(maxlen=replay_size)
        self._subscribers: dict[str, Subscription] = {}
        self._ids = Uuid7Generator(random_bytes)
        self._closed = False

    @property
    def next_seq(self) -> int:
        """The sequence number the next published event will get."""
        return self._next_seq

    @property
    def closed(self) -> bool:
        return self._closed

    def publish(self, event: DomainEvent) -> Published:
        """Stamp ``event`` and queue it for every matching subscriber. Never blocks."""
        if self._closed:
            raise BusClosedError(f"event {event.TYPE} published after the bus was closed")
        now = self._clock()
        seq = self._next_seq
        self._next_seq = seq + 1
        published = Published(seq=seq, time=now, id=self._ids.next(int(now * 1000)), event=event)
        self._ring.append(published)
        # Copy: a disconnect during fan-out removes the subscriber from the dict.
        for subscription in tuple(self._subscribers.values()):
            event_filter = subscription.filter
            if event_filter is not None:
                try:
                    if not event_filter(published):
                        continue
                except Exception:
                    logger.exception("filter of subscriber %r failed", subscription.name)
                    continue
            subscription._offer(published)
        return published

    def subscribe(
        self,
        name: str,
        maxsize: int = 1000,
        filter: Filter | None = None,
        overflow_policy: OverflowPolicy | str = OverflowPolicy.DROP_OLDEST,
        *,
        on_spill: SpillHandler | None = None,
        resume_from: int | None = None,
    ) -> Subscription:
        """Add a subscriber.

        ``overflow_policy`` ``spill`` requires ``on_spill``, which receives (synchronously, on
        the loop) every event that did not fit; it must store it (e.g. append it to a spool
        file) and not raise. Once a queue overflows, events keep going to ``on_spill`` until
        the consumer has emptied its queue, so the consumer sees a gap in ``seq`` exactly
        where the spool holds the missing run.

        ``resume_from`` first queues the matching events with ``seq >= resume_from`` from the
        replay ring (raising ``ReplayUnavailableError`` if they are gone), atomically with joining
        the live stream, so nothing is missed or repeated between the two.
        """
        if self._closed:
            raise BusClosedError(f"subscriber {name!r} added after the bus was closed")
        if maxsize < 1:
            raise ValueError(f"subscriber {name!r}: maxsize must be >= 1, got {maxsize}")
        if name in self._subscribers:
            raise ValueError(f"a subscriber named {name!r} already exists")
        policy = OverflowPolicy(overflow_policy)
        if policy is OverflowPolicy.SPILL and on_spill is None:
            raise ValueError(f"subscriber {name!r}: overflow policy 'spill' needs on_spill")
        backlog = self.replay_from(resume_from) if resume_from is not None else []
        subscription = Subscription(
            self,
            name=name,
            maxsize=maxsize,
            event_filter=filter,
            policy=policy,
            on_spill=on_spill,
        )
        self._subscribers[name] = subscription
        for published in backlog:
            if filter is None or filter(published):
                subscription._offer(published)
        return subscription

    def replay_from(self, seq: int) -> list[Published]:
        """The retained events with sequence number ``>= seq``, oldest first.

        ``seq == next_seq`` means the caller is up to date (empty list). Raises
        ``ReplayUnavailableError`` when ``seq`` has already left the ring or was never published.
        """
        ring = self._ring
        oldest = ring[0].seq if ring else None
        if seq > self._next_seq or seq < 1:
            raise ReplayUnavailableError(
                seq,
                oldest,
                self._next_seq,
                f"seq {seq} was never published on this node (next is {self._next_seq})",
            )
        if seq == self._next_seq:
            return []
        if oldest is None or seq < oldest:
            raise ReplayUnavailableError(
                seq,
                oldest,
                self._next_seq,
                f"seq {seq} is too old: the replay ring starts at "
                f"{oldest if oldest is not None else self._next_seq}",
            )
        # Sequence numbers in the ring are contiguous, so the position is arithmetic.
        start = seq - oldest
        return [ring[i] for i in range(start, len(ring))]

    def subscribers(self) -> Iterable[Subscription]:
        return tuple(self._subscribers.values())

    def stats(self) -> list[SubscriberStats]:
        return [subscription.stats() for subscription in self._subscribers.values()]

    def close(self) -> None:
        """Stop the bus: subscribers deliver what they hold, then their iteration ends."""
        if self._closed:
            return
        self._closed = True
        for subscription in tuple(self._subscribers.values()):
            subscription._finish("bus closed")

    def _forget(self, subscription: Subscription) -> None:
        if self._subscribers.get(subscription.name) is subscription:
            del self._subscribers[subscription.name]
