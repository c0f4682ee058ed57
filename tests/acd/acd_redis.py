"""Redis for ACD tests: the server on 127.0.0.1 (``CXOS_TEST_REDIS_URL`` to change), a key
prefix of its own per test, and every key under it deleted afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from acd.redis_store import RedisAcdStore

REDIS_URL = os.environ.get("CXOS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unique_prefix() -> str:
    return f"cxos-test:{uuid.uuid4().hex}:"


@asynccontextmanager
async def redis_store(prefix: str | None = None) -> AsyncIterator[RedisAcdStore]:
    """A store under a fresh prefix; its keys are deleted and its client closed at the end."""
    client = Redis.from_url(REDIS_URL)
    store = RedisAcdStore(client, prefix=prefix or unique_prefix())
    try:
        yield store
    finally:
        await store.delete_all()
        await store.close()
