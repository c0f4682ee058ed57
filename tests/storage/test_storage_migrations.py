"""Schema migrations: ordered, recorded, idempotent, safe from two nodes at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from pathlib import Path

import pytest

from cxos.storage.database import Connection, connect
from cxos.storage.migrations import Migration, MigrationError, apply_migrations, load_migrations


def test_shipped_migrations_are_in_version_order() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == sorted(m.version for m in migrations)
    assert [m.name for m in migrations][:2] == ["0001_events.sql", "0002_cdrs.sql"]


async def test_applies_every_migration_once_and_records_it(database_url: str) -> None:
    connection = await connect(database_url)
    try:
        applied = await apply_migrations(connection)
        again = await apply_migrations(connection)
        recorded = await connection.fetch(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
        )
        tables = await connection.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
    finally:
        await connection.close()
    shipped = load_migrations()
    assert [m.name for m in applied] == [m.name for m in shipped]
    assert again == []
    assert [(r["version"], r["name"], r["checksum"]) for r in recorded] == [
        (m.version, m.name, m.checksum) for m in shipped
    ]
    assert {"events", "cdrs", "cdr_segments", "schema_migrations", "agent_state_history"} <= {
        r["table_name"] for r in tables
    }


async def test_two_nodes_migrating_at_once_apply_each_migration_exactly_once(
    database_url: str,
) -> None:
    first, second = await connect(database_url), await connect(database_url)
    try:
        results = await asyncio.gather(apply_migrations(first), apply_migrations(second))
        count = await first.fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        await first.close()
        await second.close()
    applied = [m.name for result in results for m in result]
    assert sorted(applied) == sorted(m.name for m in load_migrations())
    assert count == len(load_migrations())


async def test_an_applied_migration_that_was_edited_is_refused(database_url: str) -> None:
    connection = await connect(database_url)
    original = (Migration(version=1, name="0001_t.sql", sql="CREATE TABLE t (a int);"),)
    edited = (Migration(version=1, name="0001_t.sql", sql="CREATE TABLE t (a bigint);"),)
    try:
        await apply_migrations(connection, original)
        with pytest.raises(MigrationError, match=r"0001_t\.sql was changed after it was applied"):
            await apply_migrations(connection, edited)
        # The failed run released its advisory lock: a correct run goes through.
        assert await apply_migrations(connection, original) == []
    finally:
        await connection.close()


async def test_a_failing_migration_leaves_nothing_half_applied(database_url: str) -> None:
    connection = await connect(database_url)
    broken = (
        Migration(version=1, name="0001_ok.sql", sql="CREATE TABLE ok (a int);"),
        Migration(
            version=2, name="0002_bad.sql", sql="CREATE TABLE half (a int); SELECT * FROM nowhere;"
        ),
    )
    try:
        with pytest.raises(Exception, match="nowhere"):
            await apply_migrations(connection, broken)
        versions = await connection.fetch("SELECT version FROM schema_migrations")
        half = await connection.fetchval("SELECT to_regclass('half')")
    finally:
        await connection.close()
    assert [r["version"] for r in versions] == [1]
    assert half is None


def test_migration_files_must_be_numbered_and_unique(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="version 1 is also used"):
        load_migrations(tmp_path)
    (tmp_path / "0001_b.sql").unlink()
    (tmp_path / "2_c.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"2_c\.sql: migration files are named NNNN_name\.sql"):
        load_migrations(tmp_path)


def test_a_no_transaction_file_is_split_into_statements_outside_strings_and_bodies() -> None:
    migration = Migration(
        version=7,
        name="0007_split.sql",
        sql=(
            "-- Two indexes and a function.\n"
            "-- migration: no-transaction\n"
            "\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS a ON t ((v ->> 'x;y'));\n"
            "/* a comment; still one */\n"
            "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$\n"
            "BEGIN RETURN 1; END;\n"
            "$body$;\n"
            "-- trailing comment; nothing after it\n"
        ),
    )
    migration.check()
    assert not migration.in_transaction
    assert migration.statements() == [
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS a ON t ((v ->> 'x;y'))",
        "/* a comment; still one */\n"
        "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$\n"
        "BEGIN RETURN 1; END;\n"
        "$body$",
    ]


def test_a_no_transaction_index_build_must_be_able_to_run_again() -> None:
    once = Migration(
        version=7,
        name="0007_once.sql",
        sql="-- migration: no-transaction\nCREATE INDEX CONCURRENTLY a ON t (x);\n",
    )
    with pytest.raises(MigrationError, match=r"0007_once\.sql: .*IF NOT EXISTS"):
        once.check()
    unknown = Migration(version=8, name="0008_x.sql", sql="-- migration: sometimes\nSELECT 1;")
    with pytest.raises(MigrationError, match="unknown directive 'sometimes'"):
        unknown.check()


async def test_a_revised_file_declaring_the_text_it_supersedes_is_accepted(
    database_url: str,
) -> None:
    first = Migration(version=1, name="0001_t.sql", sql="CREATE TABLE t (a int);")
    revised = Migration(
        version=1,
        name="0001_t.sql",
        sql=f"-- migration: supersedes {first.checksum}\nCREATE TABLE IF NOT EXISTS t (a int);",
    )
    connection = await connect(database_url)
    try:
        await apply_migrations(connection, (first,))
        assert await apply_migrations(connection, (revised,)) == []
    finally:
        await connection.close()


async def _insert_event(connection: Connection, seq: int) -> None:
    envelope = {"type": "agent.state_changed", "data": {"agent_id": "a1"}}
    await connection.execute(
        "INSERT INTO events (id, node, seq, type, version, call_id, time, envelope)"
        " VALUES ($1, 'n1', $2, 'agent.state_changed', 1, NULL, now(), $3::jsonb)",
        uuid.uuid4(),
        seq,
        json.dumps(envelope),
    )


async def _index_valid(connection: Connection, name: str) -> bool | None:
    valid: bool | None = await connection.fetchval(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)", name
    )
    return valid


async def test_the_event_index_is_built_without_stopping_writers_and_after_a_kill(
    database_url: str,
) -> None:
    shipped = load_migrations()
    observer = await connect(database_url)
    writer = await connect(database_url)
    migrator = await connect(database_url)
    try:
        await apply_migrations(observer, tuple(m for m in shipped if m.version < 5))
        await _insert_event(observer, 1)
        # A call's events being written: the concurrent build waits for this transaction.
        await writer.execute("BEGIN")
        await _insert_event(writer, 2)
        pid = await migrator.fetchval("SELECT pg_backend_pid()")
        migrating = asyncio.create_task(apply_migrations(migrator, shipped))
        while not await observer.fetchval(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
        ):
            assert not migrating.done()
            await asyncio.sleep(0.05)
        # Meanwhile other events go in: a plain CREATE INDEX would hold them past lock_timeout.
        await observer.execute("SET lock_timeout = '2s'")
        await _insert_event(observer, 3)
        # The node is killed half-way through the build.
        await observer.fetchval("SELECT pg_terminate_backend($1)", pid)
        with pytest.raises(Exception):  # noqa: B017 - whichever way asyncpg reports the loss
            await migrating
        assert await _index_valid(observer, "events_agent_state") is False
        await writer.execute("COMMIT")

        restarted = await connect(database_url)
        try:
            applied = await apply_migrations(restarted)
        finally:
            await restarted.close()
        assert [m.name for m in applied] == [m.name for m in shipped if m.version >= 5]
        assert await _index_valid(observer, "events_agent_state") is True
        assert await _index_valid(observer, "webhook_delivered_at") is True
        assert await observer.fetchval("SELECT count(*) FROM events") == 3
    finally:
        for connection in (observer, writer, migrator):
            with contextlib.suppress(Exception):
                await connection.close()
