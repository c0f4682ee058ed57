"""PostgreSQL and event-log helpers for the CRM bridge tests.

Each test gets a database of its own (``cxos_test_crm_<random>``) on the local PostgreSQL,
migrated, and dropped afterwards. ``event_log`` runs the real storage writer on a bus, so events
reach the outbox exactly as they do in the server: bus → writer → ``events`` → trigger.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import asyncpg

from config.crm import WebhookEndpoint
from cxos.bus import EventBus
from cxos.storage.database import Pool, create_pool
from cxos.storage.events_store import EventWriter, WriterOptions
from cxos.storage.migrations import apply_migrations
from cxos.storage.spool import Spool

ADMIN_DSN = os.environ.get("CXOS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")

#: 32 bytes of key: the secret the tests share with the reference receiver.
SECRET = "whsec_Y3hvcy1jcm0tdGVzdHMtc2hhcmVkLXNlY3JldC0zMmI="
OTHER_SECRET = "whsec_Y3hvcy1jcm0tdGVzdHMtYW5vdGhlci1zZWNyZXQtMzI="


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """The URL of a new empty database, dropped (with its connections) at the end."""
    name = f"cxos_test_crm_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = ADMIN_DSN.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def migrated_pool(url: str, *, max_size: int = 4) -> Pool:
    pool = await create_pool(url, max_size=max_size)
    async with pool.acquire() as connection:
        await apply_migrations(connection)
    return pool


@asynccontextmanager
async def event_log(
    pool: Pool, spool_dir: Path, *, node: str = "node-a", first_seq: int = 1
) -> AsyncIterator[tuple[EventBus, EventWriter]]:
    """A bus whose every event is stored by the real writer; closed (and drained) at the end."""
    bus = EventBus(clock=time.time, first_seq=first_seq)
    spool = Spool(spool_dir, max_bytes=1 << 26)
    spool.open()
    writer = EventWriter(pool, spool, node=node, options=WriterOptions(linger=0.002))
    writer.attach(bus)
    try:
        yield bus, writer
    finally:
        await writer.close(grace=10.0)
        spool.close()
        bus.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class CallProgress:
    """A test event about a call: the ``n``-th step of ``call_id``."""

    TYPE: ClassVar[str] = "call.progress"
    VERSION: ClassVar[int] = 1
    call_id: str
    step: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentNote:
    """A test event about an agent and no call."""

    TYPE: ClassVar[str] = "agent.note"
    VERSION: ClassVar[int] = 1
    agent_id: str
    text: str


def interleaved_calls(calls: int, steps: int) -> list[CallProgress]:
    """``steps`` events of each of ``calls`` calls, interleaved as live traffic would be."""
    return [CallProgress(call_id=f"call-{c}", step=s) for s in range(steps) for c in range(calls)]


def endpoint(url: str, **overrides: Any) -> WebhookEndpoint:
    """A test endpoint with fast retries: small timeouts, backoff and cool-downs."""
    settings: dict[str, Any] = {
        "name": "crm",
        "url": url,
        "secret": SECRET,
        "events": ["call.*", "agent.*"],
        "timeout": 0.3,
        "max_in_flight": 16,
        "retry": {"initial_delay": 0.02, "max_delay": 0.2, "jitter": 0.5, "max_attempts": 1000},
        "circuit_breaker": {"failure_threshold": 5, "cooldown": 0.2, "max_cooldown": 0.4},
    }
    settings.update(overrides)
    return WebhookEndpoint.model_validate(settings)


def first_arrival_steps(envelopes: Iterable[dict[str, Any]]) -> dict[str, list[int]]:
    """Per call, the steps in the order they were first accepted."""
    order: dict[str, list[int]] = {}
    for envelope in envelopes:
        order.setdefault(str(envelope["call_id"]), []).append(int(envelope["data"]["step"]))
    return order
