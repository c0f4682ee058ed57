"""Persisting bus events: one bounded subscriber, batched writes, a spool when the database lags.

How an event reaches the ``events`` table:

1. The bus queues it for the ``storage`` subscriber (never blocking ``publish``). When that
   queue is full, the bus hands the overflow to ``on_spill``, which appends it to the spool.
2. The writer task takes whatever is queued (up to ``batch_size``, waiting at most ``linger``
   for more) and inserts it in one statement, ``ON CONFLICT (id) DO NOTHING``, so writing the
   same event twice (a replay after a crash) stores it once.
3. If the database fails, the batch is retried with exponential backoff while new events fill
   the queue and then the spool. Nothing is dropped; a row the database refuses for its content
   is set aside in the spool's ``rejected.jsonl``.
4. Spooled runs are replayed in publication order: a run ends when the queue next runs empty
   (that is when the bus stops spilling), and it is written before anything queued after it.

CDRs are rebuilt in the same transaction as the events that complete or amend them
(``cxos.storage.cdr_store``); a failure there is logged and never holds events back. Calls in
progress that the writer has stored from their start are folded from the events it keeps in
memory (``cxos.storage.cdr_cache``); any other call is folded from its stored events.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple

from cxos.bus import EventBus, OverflowPolicy, Published, Subscription
from cxos.envelope import EnvelopeError, published_time, to_envelope, to_json, to_json_text
from cxos.storage.cdr_cache import CallEventCache, Envelope, fold_staged
from cxos.storage.cdr_store import closed_calls, rebuild_cdrs, write_cdrs
from cxos.storage.database import Connection, Pool, Record, is_connection_error, is_data_error
from cxos.storage.spool import Spool, SpoolFullError

logger = logging.getLogger(__name__)

SUBSCRIBER_NAME = "storage"

_INSERT_EVENTS = """
INSERT INTO events (id, node, seq, type, version, call_id, time, envelope)
SELECT u.id::uuid, u.node, u.seq, u.type, u.version, u.call_id, u.time::timestamptz,
       u.envelope::jsonb
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::integer[], $6::text[],
            $7::text[], $8::text[]) AS u(id, node, seq, type, version, call_id, time, envelope)
ON CONFLICT (id) DO NOTHING
RETURNING call_id, type
"""

#: Event types that open or close a CDR, so their call's CDR is rebuilt when they are stored.
_CDR_TRIGGERS = frozenset({"call.started", "call.agent_started", "call.ended"})


@dataclass(frozen=True, slots=True, kw_only=True)
class WriterOptions:
    batch_size: int = 500
    """Most events written by one statement."""
    linger: float = 0.05
    """Seconds to wait for more events after the first of a batch (bounds the added latency).

    Each batch is one transaction with its CDR rebuild, on the server's event loop: at a few
    hundred calls a second, 50 ms gathers some hundred events per statement where 10 ms cost
    five times the round trips and commits for the same events. Events wait this long in memory
    only; the other subscribers of the bus get them at once."""
    queue_size: int = 10_000
    """Events held in memory for the writer before the bus spills to the spool."""
    retry_initial: float = 0.05
    """First delay, in seconds, before retrying a failed write; doubled up to ``retry_max``."""
    retry_max: float = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class WriterStats:
    written: int
    """Events newly stored."""
    duplicates: int
    """Events offered again (replays) and ignored because already stored."""
    spilled: int
    """Events the bus handed to the spool because the queue was full."""
    replayed: int
    """Events read back from the spool and written."""
    set_aside: int
    """Events refused by the database for their content, kept in ``rejected.jsonl``."""
    lost: int
    """Events that could not be rendered or did not fit in the spool (logged as errors)."""
    failures: int
    """Failed write attempts (each retried)."""
    cdrs: int
    """CDR rows written or rewritten."""
    queued: int
    spool_bytes: int
    database_ok: bool


class EventRow(NamedTuple):
    id: str
    node: str
    seq: int
    type: str
    version: int
    call_id: str | None
    time: str
    envelope: str
    parsed: Envelope | None = None
    """``envelope`` as the dict it was encoded from, when the row was rendered here (not a
    column: it spares the CDR fold decoding what was just encoded)."""


#: The columns of `EventRow` that are stored, in `_INSERT_EVENTS`'s parameter order.
_STORED_COLUMNS = 8


def row_from_published(published: Published, node: str) -> EventRow:
    """The row for a published event (raises ``EnvelopeError`` if it cannot be rendered)."""
    envelope = to_envelope(published, node)
    return EventRow(
        id=str(envelope["id"]),
        node=node,
        seq=published.seq,
        type=published.event.TYPE,
        version=published.event.VERSION,
        call_id=published.call_id,
        time=published_time(published),
        envelope=to_json_text(published, node),
        parsed=envelope,
    )


def row_from_line(line: bytes) -> EventRow:
    """The row for a spooled envelope; ValueError says what is wrong with the line."""
    try:
        envelope = json.loads(line)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(envelope, dict):
        raise ValueError("not a JSON object")
    try:
        call_id = envelope["call_id"]
        return EventRow(
            id=str(envelope["id"]),
            node=str(envelope["node"]),
            seq=int(envelope["seq"]),
            type=str(envelope["type"]),
            version=int(envelope["version"]),
            call_id=call_id if isinstance(call_id, str) else None,
            time=str(envelope["time"]),
            envelope=line.decode(),
            parsed=envelope,
        )
    except KeyError as exc:
        raise ValueError(f"envelope has no {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad envelope field: {exc}") from None


def _envelope_of(row: EventRow) -> Envelope | str:
    """The row's envelope as a dict when it has one, else as the JSON to decode."""
    return row.envelope if row.parsed is None else row.parsed


async def insert_events(connection: Connection, rows: Sequence[EventRow]) -> list[Record]:
    """Insert rows, ignoring ids already stored; returns ``(call_id, type)`` of the new ones."""
    columns: list[list[Any]] = [
        list(column) for column in islice(zip(*rows, strict=True), _STORED_COLUMNS)
    ]
    return await connection.fetch(_INSERT_EVENTS, *columns)


async def store_events(
    connection: Connection,
    rows: Sequence[EventRow],
    *,
    replay: bool,
    cache: CallEventCache | None = None,
) -> tuple[int, int]:
    """Insert rows and rebuild the CDRs they affect, in one transaction: (new rows, CDRs).

    With a ``cache``, the CDRs of calls it knows are folded from memory rather than read back.
    """
    if replay and cache is not None:
        cache.forget({row.call_id for row in rows})
    async with connection.transaction():
        inserted = await insert_events(connection, rows)
        rebuild: set[str] = set()
        maybe: set[str] = set()
        new_per_call: Counter[str] = Counter()
        for record in inserted:
            call_id = record["call_id"]
            if call_id is None:
                continue
            new_per_call[call_id] += 1
            if replay or record["type"] in _CDR_TRIGGERS:
                rebuild.add(call_id)
            else:
                maybe.add(call_id)
        staged: dict[str, list[Envelope]] = {}
        if cache is not None and not replay:
            staged = cache.staged([(row.call_id, row.type, _envelope_of(row)) for row in rows])
            offered = Counter(row.call_id for row in rows if row.call_id is not None)
            for call_id in [c for c in staged if offered[c] != new_per_call[c]]:
                del staged[call_id]  # some of its rows were stored before: read it back
                cache.forget([call_id])
        cdrs = 0
        if rebuild or maybe:
            try:
                async with connection.transaction():  # a savepoint: CDRs never block events
                    rebuild |= await closed_calls(connection, maybe - rebuild - staged.keys())
                    records, missing = fold_staged(staged, rebuild)
                    await write_cdrs(connection, records)
                    cdrs = len(records) + len(await rebuild_cdrs(connection, missing))
            except Exception as exc:
                if is_connection_error(exc):
                    raise
                logger.exception("CDR rebuild failed for calls %s", sorted(rebuild)[:10])
    if cache is not None:
        cache.commit(staged)  # only once the events are committed
    return len(inserted), cdrs


class EventWriter:
    """The ``storage`` bus subscriber and its writer task."""

    def __init__(
        self, pool: Pool, spool: Spool, *, node: str, options: WriterOptions | None = None
    ) -> None:
        self._pool = pool
        self._spool = spool
        self._node = node
        self._options = options or WriterOptions()
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._pending: list[Published] = []
        """Events taken from the queue and not yet stored: in memory only."""
        self._sealed_pending = True
        self._cache = CallEventCache()
        """Calls in progress whose CDRs are folded from memory rather than read back."""
        self._database_ok = True
        self._written = self._duplicates = self._spilled = self._replayed = 0
        self._set_aside = self._lost = self._failures = self._cdrs = 0

    # Life cycle --------------------------------------------------------------------------------

    def attach(self, bus: EventBus) -> None:
        """Subscribe to every event on ``bus`` and start writing."""
        if self._subscription is not None:
            raise RuntimeError("the event writer is already attached to a bus")
        self._subscription = bus.subscribe(
            SUBSCRIBER_NAME,
            maxsize=self._options.queue_size,
            overflow_policy=OverflowPolicy.SPILL,
            on_spill=self._on_spill,
        )
        self._task = asyncio.create_task(self._run(), name="storage-writer")
        self._task.add_done_callback(self._writer_done)

    def _writer_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # Events keep flowing to the queue and then the spool; nothing more is written
            # until the next start, which replays the spool.
            logger.error("storage writer stopped", exc_info=task.exception())

    async def replay_spool(self) -> int:
        """Write every spooled run now (at start-up, before anything else is stored)."""
        replayed = self._replayed
        await self._replay_sealed_runs()
        return self._replayed - replayed

    async def close(self, grace: float) -> None:
        """Write what is queued within ``grace`` seconds; spool whatever is left."""
        self._stop.set()
        task = self._task
        if task is not None:
            done, _ = await asyncio.wait((task,), timeout=max(grace, 0.0))
            if not done:
                task.cancel()
                await asyncio.wait((task,))
                logger.warning("database did not take every event within %.1f s", grace)
        self._spool_leftovers()
        if self._subscription is not None:
            self._subscription.close("storage stopped")
        self._spool.seal()

    def stats(self) -> WriterStats:
        subscription = self._subscription
        return WriterStats(
            written=self._written,
            duplicates=self._duplicates,
            spilled=self._spilled,
            replayed=self._replayed,
            set_aside=self._set_aside,
            lost=self._lost,
            failures=self._failures,
            cdrs=self._cdrs,
            queued=len(subscription) if subscription is not None else 0,
            spool_bytes=self._spool.bytes_used,
            database_ok=self._database_ok,
        )

    def is_idle(self) -> bool:
        """Nothing queued, being written or spooled: every published event is stored."""
        subscription = self._subscription
        return (
            (subscription is None or len(subscription) == 0)
            and not self._pending
            and self._spool.active_records == 0
            and not self._spool.has_sealed()
        )

    async def wait_idle(self, within: float) -> bool:
        """Wait until ``is_idle()``; False if that did not happen within ``within`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not self.is_idle():
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    # Bus side ----------------------------------------------------------------------------------

    def _on_spill(self, published: Published) -> None:
        """Called by ``publish`` when the queue is full: append the event to the spool."""
        self._cache.forget([published.call_id])  # its history now has a gap until the replay
        try:
            self._spool.append(str(published.id), to_json(published, self._node))
        except (EnvelopeError, SpoolFullError):
            self._lost += 1
            raise  # the bus counts it as dropped and logs it
        self._spilled += 1

    # Writer task -------------------------------------------------------------------------------

    async def _run(self) -> None:
        subscription = self._subscription
        assert subscription is not None
        while True:
            if self._sealed_pending and not self._stop.is_set():
                await self._replay_sealed_runs()
                continue
            batch = await self._collect(subscription)
            if batch is None:
                return
            if batch:
                await self._write_live(batch)

    async def _collect(self, subscription: Subscription) -> list[Published] | None:
        """The next batch (kept in ``_pending`` until stored); [] when a spool run just ended;
        None when stopping and drained."""
        item = subscription.get_nowait()
        if item is None:
            if await self._seal_run():
                return []
            if self._stop.is_set():
                return None
            item = await self._next_or_stop(subscription)
            if item is None:
                return None if self._stop.is_set() or subscription.closed else []
        batch = self._pending
        batch.append(item)
        lingered = False
        while len(batch) < self._options.batch_size:
            item = subscription.get_nowait()
            if item is None:
                if await self._seal_run():
                    break  # the spilled run comes right after this batch, before newer events
                if lingered or self._options.linger <= 0 or self._stop.is_set():
                    break
                lingered = True
                await asyncio.sleep(self._options.linger)
                continue
            batch.append(item)
        return batch

    async def _seal_run(self) -> bool:
        """The queue is empty, so the bus has stopped spilling: close the spool's run."""
        run = self._spool.seal(sync=False)
        if run is None:
            return False
        self._sealed_pending = True
        await asyncio.to_thread(Spool.sync_file, run)
        return True

    async def _next_or_stop(self, subscription: Subscription) -> Published | None:
        """Wait for the next event, or for ``close()``; an event is never consumed and lost."""
        getter: asyncio.Future[Published] = asyncio.ensure_future(anext(subscription))
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait((getter, stopper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not getter.done():
                getter.cancel()
                await asyncio.wait((getter,))
        if getter.cancelled():
            return None
        error = getter.exception()
        if isinstance(error, StopAsyncIteration):
            return None
        if error is not None:
            raise error
        return getter.result()

    async def _write_live(self, batch: list[Published]) -> None:
        rows: list[EventRow] = []
        for published in batch:
            try:
                rows.append(row_from_published(published, self._node))
            except EnvelopeError:
                self._lost += 1
                logger.exception("event seq %d cannot be stored", published.seq)
        if rows:
            await self._write(rows, replay=False)
        self._pending = []

    async def _replay_sealed_runs(self) -> None:
        for run in self._spool.sealed_runs():
            logger.info("replaying spooled events from %s", run.name)
            rows: list[EventRow] = []
            for line in self._spool.read_run(run):
                try:
                    rows.append(row_from_line(line))
                except ValueError as exc:
                    self._set_aside += 1
                    self._spool.set_aside(line, f"unreadable spool line in {run.name}: {exc}")
                    continue
                if len(rows) >= self._options.batch_size:
                    await self._write(rows, replay=True)
                    rows = []
            if rows:
                await self._write(rows, replay=True)
            self._spool.remove_run(run)
        self._sealed_pending = False

    async def _write(self, rows: list[EventRow], *, replay: bool) -> None:
        """Store ``rows``, retrying until the database takes them."""
        delay = self._options.retry_initial
        one_by_one = False
        while True:
            try:
                if one_by_one:
                    await self._write_each(rows, replay=replay)
                else:
                    await self._write_batch(rows, replay=replay)
            except Exception as exc:
                if not one_by_one and is_data_error(exc):
                    one_by_one = True  # find the rows at fault and set them aside
                    continue
                self._failures += 1
                if self._database_ok:
                    self._database_ok = False
                    logger.warning(
                        "storing events failed (%s: %s); retrying, events wait in memory "
                        "and in the spool",
                        type(exc).__name__,
                        exc,
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._options.retry_max)
                continue
            if not self._database_ok:
                self._database_ok = True
                logger.info("storing events again")
            return

    async def _write_batch(self, rows: Sequence[EventRow], *, replay: bool) -> None:
        async with self._pool.acquire() as connection:
            new, cdrs = await store_events(connection, rows, replay=replay, cache=self._cache)
        self._count(len(rows), new, cdrs, replay=replay)

    async def _write_each(self, rows: Sequence[EventRow], *, replay: bool) -> None:
        async with self._pool.acquire() as connection:
            for row in rows:
                try:
                    new, cdrs = await store_events(
                        connection, [row], replay=replay, cache=self._cache
                    )
                except Exception as exc:
                    if not is_data_error(exc):
                        raise
                    self._set_aside += 1
                    self._spool.set_aside(row.envelope.encode(), f"refused by the database: {exc}")
                    continue
                self._count(1, new, cdrs, replay=replay)

    def _count(self, offered: int, new: int, cdrs: int, *, replay: bool) -> None:
        self._written += new
        self._duplicates += offered - new
        self._cdrs += cdrs
        if replay:
            self._replayed += offered

    def _spool_leftovers(self) -> None:
        """At close: what is still only in memory goes to a spool run of its own."""
        pending, self._pending = self._pending, []
        subscription = self._subscription
        while subscription is not None and (published := subscription.get_nowait()) is not None:
            pending.append(published)
        records: list[tuple[str, bytes]] = []
        for published in pending:
            try:
                records.append((str(published.id), to_json(published, self._node)))
            except EnvelopeError:
                self._lost += 1
                logger.exception("event seq %d cannot be stored", published.seq)
        if not records:
            return
        try:
            path: Path | None = self._spool.write_run(records)
        except SpoolFullError:
            self._lost += len(records)
            logger.error("spool full: %d events not stored", len(records))
            return
        logger.warning("%d events kept in %s for the next start", len(records), path)
