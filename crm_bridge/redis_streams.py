"""Publishing the event envelopes to a Redis Stream, for consumers inside the network.

Each envelope (the same JSON as the webhooks and the event log) becomes one stream entry with
the fields ``type``, ``call_id`` (empty for none) and ``envelope``; Redis gives it the entry id.
The stream is trimmed to about ``maxlen`` entries on every write (``XADD … MAXLEN ~``), so it
holds recent history only: the durable record is PostgreSQL, and a consumer that needs every
event resumes from the event log by ``(node, seq)``.

This is a live feed, so it is best effort: the publisher reads the bus through a bounded queue
that drops its oldest events when Redis is down or slow (each one counted in ``dropped``), and
it retries a failed write with backoff. Entries of one node are written in publication order.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from config.crm import RedisStreamSettings
from cxos.bus import EventBus, EventFilter, OverflowPolicy, Published, Subscription
from cxos.envelope import EnvelopeError, to_json

logger = logging.getLogger(__name__)

SUBSCRIBER_NAME = "crm-redis-stream"
_BATCH = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamStats:
    published: int
    """Entries written to the stream."""
    dropped: int
    """Events the bounded queue dropped while Redis lagged."""
    failures: int
    """Failed writes (each retried)."""
    queued: int
    redis_ok: bool


class RedisStreamPublisher:
    """One bus subscriber writing envelopes to ``settings.stream``."""

    def __init__(
        self, settings: RedisStreamSettings, *, node: str, client: Redis | None = None
    ) -> None:
        self.settings = settings
        self._node = node
        self._client = client if client is not None else Redis.from_url(settings.url)
        self._owns_client = client is None
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._published = self._failures = self._unrenderable = 0
        self._redis_ok = True
        self._drained = asyncio.Event()
        """Set while nothing is queued or being written."""
        self._drained.set()

    def attach(self, bus: EventBus) -> None:
        if self._subscription is not None:
            raise RuntimeError("the Redis stream publisher is already attached")
        patterns = frozenset(self.settings.events)
        self._subscription = bus.subscribe(
            SUBSCRIBER_NAME,
            maxsize=self.settings.queue_size,
            filter=None if not patterns or "*" in patterns else EventFilter(types=patterns),
            overflow_policy=OverflowPolicy.DROP_OLDEST,
        )
        self._task = asyncio.create_task(self._run(), name="crm-redis-stream")

    async def close(self, grace: float) -> None:
        """Write what is queued for up to ``grace`` seconds, then stop."""
        subscription, task = self._subscription, self._task
        if subscription is not None and task is not None:
            try:
                async with asyncio.timeout(max(grace, 0.0)):
                    while len(subscription) or not self._drained.is_set():
                        await asyncio.sleep(0)  # the writer task takes what was just queued
                        await self._drained.wait()
            except TimeoutError:
                logger.warning(
                    "Redis stream %r: %d events not written",
                    self.settings.stream,
                    len(subscription),
                )
            subscription.close("redis stream publisher stopped")
            task.cancel()
            await asyncio.wait((task,))
        if self._owns_client:
            await self._client.aclose()

    def stats(self) -> StreamStats:
        subscription = self._subscription
        return StreamStats(
            published=self._published,
            dropped=subscription.dropped if subscription is not None else 0,
            failures=self._failures,
            queued=len(subscription) if subscription is not None else 0,
            redis_ok=self._redis_ok,
        )

    async def _run(self) -> None:
        subscription = self._subscription
        assert subscription is not None
        async for first in subscription:
            self._drained.clear()
            batch = [first]
            while len(batch) < _BATCH and (more := subscription.get_nowait()) is not None:
                batch.append(more)
            entries = self._entries(batch)
            if entries:
                await self._write(entries)
            if not len(subscription):
                self._drained.set()

    def _entries(self, batch: list[Published]) -> list[dict[str, bytes | str]]:
        entries: list[dict[str, bytes | str]] = []
        for published in batch:
            try:
                body = to_json(published, self._node)
            except EnvelopeError:
                self._unrenderable += 1
                logger.exception("event seq %d cannot be rendered", published.seq)
                continue
            entries.append(
                {"type": published.type, "call_id": published.call_id or "", "envelope": body}
            )
        return entries

    async def _write(self, entries: list[dict[str, bytes | str]]) -> None:
        delay = 0.05
        while True:
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    for fields in entries:
                        pipe.xadd(
                            self.settings.stream,
                            fields,  # type: ignore[arg-type]
                            maxlen=self.settings.maxlen,
                            approximate=True,
                        )
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                self._failures += 1
                if self._redis_ok:
                    self._redis_ok = False
                    logger.warning(
                        "Redis stream %r: write failed (%s); retrying, oldest events are "
                        "dropped meanwhile",
                        self.settings.stream,
                        exc,
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if not self._redis_ok:
                self._redis_ok = True
                logger.info("Redis stream %r: writing again", self.settings.stream)
            self._published += len(entries)
            return
