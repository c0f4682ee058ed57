"""Ordered SQL migrations, applied at start-up and recorded in ``schema_migrations``.

Files in ``cxos/storage/migrations/`` are named ``NNNN_what.sql``; each is applied once, in
version order, inside its own transaction, and recorded with a SHA-256 checksum of its text.

Several nodes may start at once against one database: the whole run holds a session-level
advisory lock (PostgreSQL docs §13.3.5), so the second node waits, then finds nothing to do.
An applied file whose text has changed since is refused: migrations are append-only, a change
ships as a new file.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from cxos.storage.database import Connection

logger = logging.getLogger(__name__)

#: Advisory lock key: the first 8 bytes of SHA-256("cxos.schema_migrations"), as a signed bigint.
ADVISORY_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"cxos.schema_migrations").digest()[:8], "big", signed=True
)

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """The migration files or the recorded schema history are inconsistent; says which file."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Traversable | None = None) -> tuple[Migration, ...]:
    """The migrations shipped with CXOS (or in ``directory``), in version order."""
    folder = directory or resources.files("cxos.storage").joinpath("migrations")
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"{entry.name}: migration files are named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(
                f"{entry.name}: version {version} is also used by {found[version].name}"
            )
        found[version] = Migration(version=version, name=entry.name, sql=entry.read_text())
    return tuple(found[v] for v in sorted(found))


async def apply_migrations(
    connection: Connection, migrations: tuple[Migration, ...] | None = None
) -> list[Migration]:
    """Bring the schema up to date; returns the migrations applied by this call."""
    wanted = load_migrations() if migrations is None else migrations
    await connection.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
    try:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY,"
            " name text NOT NULL,"
            " checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        rows = await connection.fetch("SELECT version, name, checksum FROM schema_migrations")
        applied = {int(row["version"]): (str(row["name"]), str(row["checksum"])) for row in rows}
        known = {m.version for m in wanted}
        for migration in wanted:
            recorded = applied.get(migration.version)
            if recorded is not None and recorded[1] != migration.checksum:
                raise MigrationError(
                    f"{migration.name} was changed after it was applied (as {recorded[0]}); "
                    f"add a new migration instead of editing an applied one"
                )
        newer = sorted(v for v in applied if v not in known)
        if newer:
            logger.warning(
                "the database has migrations this version does not know: %s",
                ", ".join(applied[v][0] for v in newer),
            )
        done: list[Migration] = []
        for migration in wanted:
            if migration.version in applied:
                continue
            async with connection.transaction():
                await connection.execute(migration.sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            logger.info("applied migration %s", migration.name)
            done.append(migration)
        return done
    finally:
        try:
            await connection.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)
        except Exception:
            # A lost session has released its advisory locks already; keep the first error.
            logger.debug("advisory unlock failed", exc_info=True)
