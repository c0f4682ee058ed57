"""Envelopes published to a Redis Stream on the local Redis, under a key of the test's own."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import cast

import pytest
from redis.asyncio import Redis

from config.crm import RedisStreamSettings
from crm_bridge.redis_streams import RedisStreamPublisher
from cxos.bus import EventBus
from cxos.envelope import to_json
from tests.crm.crm_db import AgentNote, CallProgress

REDIS_URL = os.environ.get("CXOS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

Entries = list[tuple[bytes, dict[bytes, bytes]]]


@pytest.fixture
async def redis() -> AsyncIterator[tuple[Redis, str]]:
    client = Redis.from_url(REDIS_URL)
    stream = f"cxos-test:{uuid.uuid4().hex}:events"
    yield client, stream
    await client.delete(stream)
    await client.aclose()


async def test_every_envelope_reaches_the_stream_in_order(redis: tuple[Redis, str]) -> None:
    client, stream = redis
    bus = EventBus(clock=time.time)
    publisher = RedisStreamPublisher(
        RedisStreamSettings(url=REDIS_URL, stream=stream, events=("call.*",)), node="node-a"
    )
    publisher.attach(bus)
    published = []
    for step in range(50):
        published.append(bus.publish(CallProgress(call_id=f"c{step % 3}", step=step)))
        bus.publish(AgentNote(agent_id="a1", text="not subscribed"))
    await publisher.close(grace=5)

    entries = cast(Entries, await client.xrange(stream))
    assert [fields[b"envelope"] for _, fields in entries] == [
        to_json(p, "node-a") for p in published
    ]
    first = entries[0][1]
    assert first[b"type"] == b"call.progress" and first[b"call_id"] == b"c0"
    assert json.loads(first[b"envelope"])["seq"] == published[0].seq
    assert publisher.stats().published == 50


async def test_the_stream_is_trimmed_to_about_maxlen(redis: tuple[Redis, str]) -> None:
    client, stream = redis
    bus = EventBus(clock=time.time)
    publisher = RedisStreamPublisher(
        RedisStreamSettings(url=REDIS_URL, stream=stream, maxlen=100), node="node-a"
    )
    publisher.attach(bus)
    for step in range(2000):
        bus.publish(CallProgress(call_id="c", step=step))
    await publisher.close(grace=5)
    length = await client.xlen(stream)
    # Approximate trimming removes whole internal nodes: at least maxlen stay, not many more.
    assert 100 <= length < 400
    last = cast(Entries, await client.xrevrange(stream, count=1))
    assert json.loads(last[0][1][b"envelope"])["data"]["step"] == 1999


async def test_redis_down_drops_oldest_and_counts_them() -> None:
    bus = EventBus(clock=time.time)
    publisher = RedisStreamPublisher(
        # Nothing listens on port 1: every write fails at once.
        RedisStreamSettings(url="redis://127.0.0.1:1/0", stream="unused", queue_size=5),
        node="node-a",
    )
    publisher.attach(bus)
    for step in range(20):
        bus.publish(CallProgress(call_id="c", step=step))
    await publisher.close(grace=0.2)
    stats = publisher.stats()
    assert stats.published == 0
    assert stats.failures >= 1 and not stats.redis_ok
    assert stats.dropped >= 14  # 20 published, at most 5 queued and 1 batch being retried
