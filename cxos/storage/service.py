"""The storage component: database, migrations, spool replay, event writer, restart closure.

Start-up, in this order:

1. connect to ``storage.database_url``, or start the embedded PostgreSQL in the data directory;
2. apply pending migrations (safe when several nodes start at once);
3. replay the spool left by the previous run, so every event it holds is stored;
4. find the calls this node started and never ended (it was killed): each gets a
   ``call.ended`` with cause ``server restart`` once a bus is attached, which closes its CDR;
   likewise the agents this node last saw logged in get an ``agent.state_changed`` to
   ``logged_out`` with reason ``server restart`` (``cxos.storage.agent_history``);
5. with a bus, subscribe and start writing;
6. prune the history past its retention every ``storage.retention.interval`` seconds
   (``cxos.storage.retention``).

``next_seq`` is known after step 3: a bus created after ``start()`` with
``EventBus(first_seq=storage.next_seq)`` keeps ``(node, seq)`` unique across restarts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from acd.events import AgentStateChanged
from config.loader import Configuration
from config.settings import StorageSettings
from cxos.bus import EventBus
from cxos.storage.agent_history import open_agent_states, restart_logout
from cxos.storage.cdr import SERVER_RESTART, restart_closure
from cxos.storage.cdr_store import last_event_time, next_seq, open_calls
from cxos.storage.database import Database, connect, open_database
from cxos.storage.events_store import EventWriter, WriterOptions, WriterStats
from cxos.storage.migrations import apply_migrations
from cxos.storage.retention import RetentionTask
from cxos.storage.spool import Spool
from telephony.events import CallEnded

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageOptions:
    writer: WriterOptions = field(default_factory=WriterOptions)
    spool_max_bytes: int = 1 << 30
    """Largest total size of the spool, in bytes; beyond it events are lost and logged."""
    connect_timeout: float = 15.0
    """Seconds to keep trying to reach the database at start-up."""
    pool_size: int = 4


def resolve_data_dir(settings: StorageSettings, config_dir: Path) -> Path:
    """``storage.data_dir``, relative to the configuration directory unless absolute."""
    path = Path(settings.data_dir).expanduser()
    return path if path.is_absolute() else (config_dir / path).absolute()


class StorageService:
    """The component ``cxos.app`` starts first and stops last."""

    name = "storage"

    def __init__(
        self,
        settings: StorageSettings,
        *,
        node: str,
        config_dir: Path,
        bus: EventBus | None = None,
        options: StorageOptions | None = None,
    ) -> None:
        self._settings = settings
        self._node = node
        self._options = options or StorageOptions()
        self.data_dir = resolve_data_dir(settings, config_dir)
        self._bus = bus
        self._database: Database | None = None
        self._spool: Spool | None = None
        self._writer: EventWriter | None = None
        self._retention: RetentionTask | None = None
        self._interrupted: list[CallEnded | AgentStateChanged] = []
        self._next_seq = 1

    @property
    def database(self) -> Database:
        if self._database is None:
            raise RuntimeError("storage is not started")
        return self._database

    @property
    def writer(self) -> EventWriter:
        if self._writer is None:
            raise RuntimeError("storage is not started")
        return self._writer

    @property
    def next_seq(self) -> int:
        """The first sequence number this node's bus should use (after ``start()``)."""
        return self._next_seq

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        database = await open_database(
            self._settings,
            data_dir=self.data_dir,
            connect_timeout=self._options.connect_timeout,
            pool_size=self._options.pool_size,
        )
        spool = Spool(self.data_dir / "spool", max_bytes=self._options.spool_max_bytes)
        try:
            # A connection of its own, without the pool's command timeout: building an index
            # on a large table takes as long as it takes.
            migrating = await connect(database.dsn)
            try:
                await apply_migrations(migrating)
            finally:
                await migrating.close()
            spool.open()
            writer = EventWriter(
                database.pool, spool, node=self._node, options=self._options.writer
            )
            replayed = await writer.replay_spool()
            if replayed:
                logger.info("stored %d events kept in the spool by the previous run", replayed)
            async with database.pool.acquire() as connection:
                self._next_seq = await next_seq(connection, self._node)
                interrupted = await open_calls(connection, self._node)
                agents = await open_agent_states(connection, self._node)
                last_alive = await last_event_time(connection, self._node)
        except BaseException:
            spool.close()
            await database.close(grace=5.0)
            raise
        self._database, self._spool, self._writer = database, spool, writer
        self._interrupted = [
            CallEnded(
                call_id=record.call_id,
                cause=SERVER_RESTART,
                hangup_by="server",
                duration_seconds=duration,
                talk_seconds=talk,
            )
            for record in interrupted
            for duration, talk in [restart_closure(record, last_alive or record.started_at)]
        ]
        if self._interrupted:
            logger.warning(
                "%d calls were in progress when this node stopped; closing their CDRs",
                len(self._interrupted),
            )
        if agents:
            logger.warning(
                "%d agents were logged in when this node stopped; logging them out in the history",
                len(agents),
            )
        self._interrupted.extend(
            restart_logout(agent, last_alive or agent.since) for agent in agents
        )
        self._retention = RetentionTask(database.pool, self._settings.retention)
        self._retention.start()
        if self._bus is not None:
            self.attach(self._bus)

    @property
    def retention(self) -> RetentionTask:
        if self._retention is None:
            raise RuntimeError("storage is not started")
        return self._retention

    def attach(self, bus: EventBus) -> None:
        """Store every event published on ``bus`` from now on; close interrupted calls."""
        writer = self.writer
        self._bus = bus
        if bus.next_seq < self._next_seq:
            logger.warning(
                "the bus starts at seq %d but this node has stored events up to seq %d: "
                "create it with first_seq=%d to keep (node, seq) unique",
                bus.next_seq,
                self._next_seq - 1,
                self._next_seq,
            )
        writer.attach(bus)
        for event in self._interrupted:
            bus.publish(event)
        self._interrupted = []

    async def stop(self, grace: float) -> None:
        if self._retention is not None:
            await self._retention.stop()
            self._retention = None
        if self._writer is not None:
            await self._writer.close(grace)
        if self._spool is not None:
            self._spool.close()
        if self._database is not None:
            await self._database.close(grace)
        self._writer = self._spool = self._database = None

    def reconfigure(self, configuration: Configuration) -> None:
        if configuration.server.storage != self._settings:
            logger.warning("storage settings changed: they take effect at the next start")

    def stats(self) -> WriterStats:
        return self.writer.stats()
