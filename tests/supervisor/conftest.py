"""Fixtures of the supervisor API tests: a bus on a settable clock, the app and a client."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from cxos.storage.database import Pool, create_pool
from cxos.storage.migrations import apply_migrations
from tests.supervisor.supervisor_app import Harness, build, client_for
from tests.supervisor.supervisor_timeline import Timeline


@pytest.fixture
def timeline() -> Timeline:
    return Timeline()


@pytest.fixture
def harness(timeline: Timeline) -> Harness:
    return build(timeline.bus, lambda: timeline.now)


@pytest.fixture
async def client(harness: Harness) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async for c in client_for(harness):
        yield c


#: The PostgreSQL the history tests create their databases on.
ADMIN_DSN = os.environ.get("CXOS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
async def history_pool() -> AsyncIterator[Pool]:
    """A pool on a fresh, migrated database of its own, dropped after the test."""
    name = f"cxos_test_history_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    pool = await create_pool(f"{ADMIN_DSN.rpartition('/')[0]}/{name}")
    try:
        async with pool.acquire() as connection:
            await apply_migrations(connection)
        yield pool
    finally:
        await pool.close()
        admin = await asyncpg.connect(ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
