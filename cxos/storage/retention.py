"""Retention: the event log and the webhook delivery log are pruned by age, a batch at a time.

``storage.retention`` in server.yaml says how long each keeps its rows (``events_days``, default
90; ``delivered_webhooks_days``, default 7; 0 keeps them for ever). ``RetentionTask`` prunes every
``interval`` seconds while the server runs. Each batch is one ``DELETE`` of at most
``batch_size`` rows in a transaction of its own, found through an index on the age column
(``events_time``; the BRIN index ``webhook_delivered_at``), with a pause between batches: the
writer's inserts never wait behind a long delete, and a backlog of old rows (a first run on a
database kept for years) is worked off across many short statements instead of one that holds
locks and bloats the tables at once.

Only history goes: CDRs stay, and deliveries still pending or dead letters are not touched. A
dead letter whose event was pruned can no longer be replayed (it is dead-lettered again with
"the event is no longer in the event log").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from config.settings import RetentionSettings
from cxos.storage.database import Pool

logger = logging.getLogger(__name__)

#: Seconds between two batches of one prune, so other statements get the database in between.
BATCH_PAUSE = 0.05
#: Seconds after start-up before the first prune: start-up itself is busy enough.
FIRST_PRUNE_AFTER = 60.0

_PRUNE_EVENTS = """
DELETE FROM events
WHERE id = ANY (ARRAY(SELECT id FROM events WHERE time < $1 ORDER BY time LIMIT $2))
"""

_PRUNE_DELIVERED = """
DELETE FROM webhook_delivered
WHERE ctid = ANY (ARRAY(SELECT ctid FROM webhook_delivered WHERE delivered_at < $1 LIMIT $2))
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneReport:
    events: int
    """Events deleted from the event log."""
    delivered_webhooks: int
    """Rows deleted from the webhook delivery log."""
    batches: int


def _deleted(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1]) if status.startswith("DELETE") else 0


async def _prune_table(
    pool: Pool, statement: str, cutoff: datetime, batch_size: int, pause: float
) -> tuple[int, int]:
    deleted = batches = 0
    while True:
        async with pool.acquire() as connection:
            count = _deleted(await connection.execute(statement, cutoff, batch_size))
        batches += 1
        deleted += count
        if count < batch_size:
            return deleted, batches
        await asyncio.sleep(pause)


async def prune_history(
    pool: Pool, settings: RetentionSettings, now: datetime, *, pause: float = BATCH_PAUSE
) -> PruneReport:
    """Delete what ``settings`` no longer keeps at ``now``, in batches."""
    events = delivered = batches = 0
    if settings.events_days > 0:
        cutoff = now - timedelta(days=settings.events_days)
        events, n = await _prune_table(pool, _PRUNE_EVENTS, cutoff, settings.batch_size, pause)
        batches += n
    if settings.delivered_webhooks_days > 0:
        cutoff = now - timedelta(days=settings.delivered_webhooks_days)
        delivered, n = await _prune_table(
            pool, _PRUNE_DELIVERED, cutoff, settings.batch_size, pause
        )
        batches += n
    return PruneReport(events=events, delivered_webhooks=delivered, batches=batches)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class RetentionTask:
    """Prunes every ``settings.interval`` seconds until stopped; a failed prune is logged and
    tried again at the next interval."""

    def __init__(
        self,
        pool: Pool,
        settings: RetentionSettings,
        *,
        first_after: float = FIRST_PRUNE_AFTER,
        wall_clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._first_after = first_after
        self._wall_clock = wall_clock
        self._task: asyncio.Task[None] | None = None
        self.last: PruneReport | None = None
        """What the latest prune deleted."""

    def start(self) -> None:
        if self._settings.events_days == 0 and self._settings.delivered_webhooks_days == 0:
            return  # everything is kept
        self._task = asyncio.create_task(self._run(), name="storage-retention")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait((task,))

    async def _run(self) -> None:
        delay = min(self._first_after, self._settings.interval)
        while True:
            await asyncio.sleep(delay)
            delay = self._settings.interval
            try:
                report = await prune_history(self._pool, self._settings, self._wall_clock())
            except Exception as exc:
                logger.warning(
                    "pruning old history failed (%s: %s); retrying later", type(exc).__name__, exc
                )
                continue
            self.last = report
            if report.events or report.delivered_webhooks:
                logger.info(
                    "pruned %d events and %d webhook deliveries past their retention",
                    report.events,
                    report.delivered_webhooks,
                )
