"""Ordered SQL migrations, applied at start-up and recorded in ``schema_migrations``.

Files in ``cxos/storage/migrations/`` are named ``NNNN_what.sql``; each is applied once, in
version order, inside its own transaction, and recorded with a SHA-256 checksum of its text.

Several nodes may start at once against one database: the whole run holds a session-level
advisory lock (PostgreSQL docs §13.3.5), so the second node waits, then finds nothing to do.
An applied file whose text has changed since is refused: migrations are append-only, a change
ships as a new file.

A file may open with directive comments:

``-- migration: no-transaction``
    Its statements run one at a time outside any transaction, for those PostgreSQL refuses
    inside one: ``CREATE INDEX CONCURRENTLY`` builds an index on a large table without blocking
    its writers (PostgreSQL docs, CREATE INDEX, "Building Indexes Concurrently"). Such a file is
    recorded only when all its statements have run, so a node killed half-way runs it again at
    its next start: every statement must be idempotent. Index builds must read ``CREATE INDEX
    CONCURRENTLY IF NOT EXISTS name``; an index of that name left INVALID by an interrupted build
    is dropped (concurrently) and built again.
``-- migration: supersedes <sha256>``
    The checksum of an earlier text of this file that leaves the same schema; a database that
    applied that text is accepted as it is.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from cxos.storage.database import Connection, quote_identifier

logger = logging.getLogger(__name__)

#: Advisory lock key: the first 8 bytes of SHA-256("cxos.schema_migrations"), as a signed bigint.
ADVISORY_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"cxos.schema_migrations").digest()[:8], "big", signed=True
)

#: How often a node waiting for another node's migrations tries the lock again, in seconds.
LOCK_POLL_SECONDS = 0.2

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_DIRECTIVE = re.compile(r"^--\s*migration:\s*(.+?)\s*$")
_SUPERSEDES = re.compile(r"^supersedes\s+([0-9a-f]{64})$")
_CREATE_INDEX = re.compile(r"^CREATE\s+(?:UNIQUE\s+)?INDEX\b", re.IGNORECASE)
_CREATE_INDEX_CONCURRENTLY = re.compile(
    r"^CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\s+"
    r'("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)',
    re.IGNORECASE,
)
# SQL lexical elements a semicolon inside does not end a statement (PostgreSQL docs §4.1):
# comments, string constants, quoted identifiers and dollar-quoted strings.
_SQL_TOKEN = re.compile(
    r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|(\$[A-Za-z_0-9]*\$).*?\1|;",
    re.DOTALL,
)


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

    @property
    def directives(self) -> tuple[str, ...]:
        """The ``-- migration: …`` lines at the top of the file, before any statement."""
        found: list[str] = []
        for line in self.sql.splitlines():
            stripped = line.strip()
            if not stripped:
                continue
            if not stripped.startswith("--"):
                break
            match = _DIRECTIVE.match(stripped)
            if match is not None:
                found.append(match.group(1))
        return tuple(found)

    @property
    def in_transaction(self) -> bool:
        return "no-transaction" not in self.directives

    @property
    def superseded(self) -> frozenset[str]:
        """Checksums of earlier texts of this file that leave the same schema."""
        return frozenset(
            match.group(1) for match in map(_SUPERSEDES.match, self.directives) if match is not None
        )

    def statements(self) -> list[str]:
        """The file's statements, split at semicolons outside comments, strings and quotes."""
        statements: list[str] = []
        start = 0
        for token in _SQL_TOKEN.finditer(self.sql):
            if token.group() == ";":
                statements.append(self.sql[start : token.start()])
                start = token.end()
        statements.append(self.sql[start:])
        return [text for text in map(_strip_comments, statements) if text]

    def check(self) -> None:
        """Refuse directives this version does not know, and non-idempotent index builds."""
        for directive in self.directives:
            if directive != "no-transaction" and _SUPERSEDES.match(directive) is None:
                raise MigrationError(f"{self.name}: unknown directive {directive!r}")
        if self.in_transaction:
            return
        for statement in self.statements():
            if _CREATE_INDEX.match(statement) and not _CREATE_INDEX_CONCURRENTLY.match(statement):
                raise MigrationError(
                    f"{self.name}: a no-transaction migration builds indexes with "
                    f"CREATE INDEX CONCURRENTLY IF NOT EXISTS, so that it can run again"
                )


def _strip_comments(statement: str) -> str:
    """The statement without its leading comment lines and surrounding blanks."""
    lines = statement.strip().splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    return "\n".join(lines).strip()


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
    """Bring the schema up to date; returns the migrations applied by this call.

    ``connection`` should have no command timeout: an index build on a large table takes as
    long as it takes.
    """
    wanted = load_migrations() if migrations is None else migrations
    for migration in wanted:
        migration.check()
    await _lock(connection)
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
            if recorded is None or recorded[1] == migration.checksum:
                continue
            if recorded[1] not in migration.superseded:
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
            if migration.in_transaction:
                async with connection.transaction():
                    await connection.execute(migration.sql)
                    await _record(connection, migration)
            else:
                for statement in migration.statements():
                    await _run_alone(connection, statement)
                await _record(connection, migration)
            logger.info("applied migration %s", migration.name)
            done.append(migration)
        return done
    finally:
        try:
            await connection.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)
        except Exception:
            # A lost session has released its advisory locks already; keep the first error.
            logger.debug("advisory unlock failed", exc_info=True)


async def _lock(connection: Connection) -> None:
    """Take the migrations' advisory lock, trying again while another node holds it.

    Not ``pg_advisory_lock``: a session blocked in it keeps a snapshot open, and ``CREATE INDEX
    CONCURRENTLY`` in the holder's session waits for every older snapshot to end: the two
    would wait for each other until PostgreSQL ends one as a deadlock. Between tries this
    session holds no snapshot.
    """
    waited = False
    while not await connection.fetchval("SELECT pg_try_advisory_lock($1)", ADVISORY_LOCK_KEY):
        if not waited:
            logger.info("waiting for another node to finish its schema migrations")
            waited = True
        await asyncio.sleep(LOCK_POLL_SECONDS)


async def _record(connection: Connection, migration: Migration) -> None:
    await connection.execute(
        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
        migration.version,
        migration.name,
        migration.checksum,
    )


async def _run_alone(connection: Connection, statement: str) -> None:
    """One statement of a no-transaction migration, first clearing a failed build of its index.

    A ``CREATE INDEX CONCURRENTLY`` that was interrupted leaves the index behind, marked
    INVALID (PostgreSQL docs, CREATE INDEX): ``IF NOT EXISTS`` would then skip it for good.
    """
    match = _CREATE_INDEX_CONCURRENTLY.match(statement)
    if match is not None:
        name = match.group(1)
        invalid = await connection.fetchval(
            "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)", name
        )
        if invalid:
            logger.warning("index %s was left invalid by an interrupted build; rebuilding", name)
            quoted = name if name.startswith('"') else quote_identifier(name.lower())
            await connection.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {quoted}")
    await connection.execute(statement)
