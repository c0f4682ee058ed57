"""Fixtures for the storage tests: a fresh database on the local PostgreSQL for each test."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

from cxos.storage.database import Pool, create_pool
from cxos.storage.migrations import apply_migrations

#: The PostgreSQL the tests create their databases on (``make test`` starts one if needed).
ADMIN_DSN = os.environ.get("CXOS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def database_dsn(name: str) -> str:
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    """A database of its own (``cxos_test_<random>``), dropped after the test."""
    name = f"cxos_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield database_dsn(name)
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Pool]:
    """A pool on a migrated database."""
    pool = await create_pool(database_url)
    async with pool.acquire() as connection:
        await apply_migrations(connection)
    yield pool
    await pool.close()
