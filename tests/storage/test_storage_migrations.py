"""Schema migrations: ordered, recorded, idempotent, safe from two nodes at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cxos.storage.database import connect
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
