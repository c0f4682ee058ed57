"""The CRM bridge component end to end, on a real PostgreSQL and Redis, and ``cxos deadletters``."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest
from redis.asyncio import Redis

from config.crm import CrmSettings, DeliverySettings, LookupSettings, RedisStreamSettings
from crm_bridge.cli import main as deadletters_main
from crm_bridge.outbox import Outbox
from crm_bridge.service import CrmBridgeService
from crm_bridge.signing import WebhookSecret
from cxos.storage.database import Pool
from examples.crm_receiver import CrmReceiver, serve
from tests.crm.crm_db import (
    SECRET,
    CallProgress,
    endpoint,
    event_log,
    fresh_database,
    interleaved_calls,
    migrated_pool,
)

REDIS_URL = os.environ.get("CXOS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def database() -> AsyncIterator[str]:
    async with fresh_database() as url:
        yield url


@pytest.fixture
async def pool(database: str) -> AsyncIterator[Pool]:
    pool = await migrated_pool(database)
    yield pool
    await pool.close()


@dataclass(frozen=True, slots=True)
class Reloaded:
    """A configuration as ``reconfigure`` sees it."""

    crm: CrmSettings


async def test_service_delivers_publishes_and_follows_a_reload(pool: Pool, tmp_path: Path) -> None:
    first, second = (CrmReceiver([WebhookSecret.parse(SECRET)]) for _ in range(2))
    stream = f"cxos-test:{uuid.uuid4().hex}:events"
    redis = Redis.from_url(REDIS_URL)
    async with serve(first) as first_url, serve(second) as second_url:
        settings = CrmSettings(
            webhooks=(endpoint(first_url, name="first", events=["call.*"]),),
            lookup=LookupSettings(url="http://127.0.0.1:9/customers"),
            redis_stream=RedisStreamSettings(url=REDIS_URL, stream=stream),
            delivery=DeliverySettings(poll_interval=0.02),
        )
        async with event_log(pool, tmp_path / "spool") as (bus, writer):
            service = CrmBridgeService(settings, node="node-a", pool=pool, bus=bus)
            await service.start()
            assert service.lookup is not None
            before = [bus.publish(event) for event in interleaved_calls(calls=3, steps=2)]
            assert await first.wait_for(len(before), within=10)

            service.reconfigure(
                Reloaded(
                    settings.model_copy(update={"webhooks": (endpoint(second_url, name="second"),)})
                )
            )
            await service.wait_reconfigured()
            assert sorted(service.workers) == ["second"]
            after = bus.publish(CallProgress(call_id="call-9", step=0))
            assert await second.wait_for(1, within=10)
            assert await writer.wait_idle(5)
            await service.stop(grace=2)
    try:
        assert list(first.unique) == [str(p.id) for p in before]
        assert list(second.unique) == [str(after.id)]
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(stream))
        assert [json.loads(fields[b"envelope"])["id"] for _, fields in entries] == [
            str(p.id) for p in [*before, after]
        ]
    finally:
        await redis.delete(stream)
        await redis.aclose()


async def test_deadletters_command_lists_and_replays(
    database: str, pool: Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await Outbox(pool, owner="node-a").sync_endpoints([endpoint("http://127.0.0.1:9/", name="crm")])
    async with event_log(pool, tmp_path / "spool") as (bus, writer):
        for event in interleaved_calls(calls=2, steps=2):
            bus.publish(event)
        assert await writer.wait_idle(5)
    async with pool.acquire() as connection:
        await connection.execute(
            "UPDATE webhook_deliveries SET state = 'dead', attempts = 12, last_status = 503, "
            "last_error = 'HTTP 503 (attempt 12 of 12)', dead_at = now()"
        )
        ids = [r["id"] for r in await connection.fetch("SELECT id FROM webhook_deliveries")]

    def run(*argv: str) -> int:
        return deadletters_main(["--database-url", database, *argv])

    assert await asyncio.to_thread(run, "list") == 0
    table = capsys.readouterr().out
    assert "HTTP 503 (attempt 12 of 12)" in table and "call.progress" in table
    assert len(table.splitlines()) == 5  # header + 4

    assert await asyncio.to_thread(run, "replay", str(ids[0])) == 0
    assert f"delivery {ids[0]} queued again for crm" in capsys.readouterr().out
    assert await asyncio.to_thread(run, "replay", str(ids[0])) == 1
    assert "is pending, not a dead letter" in capsys.readouterr().err

    assert await asyncio.to_thread(run, "list", "--json") == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [item["id"] for item in listed] == ids[1:]
    assert await asyncio.to_thread(run, "replay-all", "--endpoint", "crm") == 0
    assert "3 dead letter(s) queued again" in capsys.readouterr().out
    assert await asyncio.to_thread(run, "list") == 0
    assert capsys.readouterr().out == "no dead letters\n"
