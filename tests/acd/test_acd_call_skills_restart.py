"""A caller's own skills are stored with their queue entry: a restarted node (or another node
reading the store) sees them, and a restored callback still needs them."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest

from acd.engine import AcdEngine
from acd.events import AcdEvent, QueueJoined
from acd.model import AgentProfile, QueueConfig, SkillRequirement
from acd.service import AcdService
from acd.store import AcdStore, InProcessAcdStore
from tests.acd.acd_redis import redis_store
from tests.acd.acd_service_fixtures import FakeTelephony

QUEUES = [QueueConfig(queue_id="support", required_skills=(SkillRequirement(skill="support"),))]
AGENTS = [
    AgentProfile(agent_id="en", skills={"support": 3}, sip_user="1001"),
    AgentProfile(agent_id="fr", skills={"support": 3, "french": 2}, sip_user="1002"),
]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def _in_process() -> AsyncIterator[AcdStore]:
    yield InProcessAcdStore()


@pytest.fixture(params=[_in_process, redis_store], ids=["in_process", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[AcdStore]:
    factory: Callable[[], AbstractAsyncContextManager[AcdStore]] = request.param
    async with factory() as opened:
        yield opened


def _service(
    store: AcdStore, clock: Clock, events: list[AcdEvent]
) -> tuple[AcdService, FakeTelephony]:
    telephony = FakeTelephony()
    service = AcdService(
        AcdEngine(QUEUES, AGENTS, rng=random.Random(0)),
        store,
        telephony,
        events.append,
        node_id="node-1",
        clock=clock,
        shared_clock=lambda: clock() + 1.7e9,
    )
    return service, telephony


async def test_a_restored_callback_still_needs_the_callers_skills(store: AcdStore) -> None:
    clock = Clock()
    events: list[AcdEvent] = []
    first, telephony = _service(store, clock, events)
    await first.start()
    await first.login("en")
    await first.enqueue("c1", "support", required_skills={"french": 2})
    await first.request_callback("c1", "+15550100")
    await first.enqueue("c2", "support")  # a plain caller: en takes it
    assert telephony.of("ring") == [("c2", "en", "1001")]
    joined = [dict(e.required_skills) for e in events if isinstance(e, QueueJoined)]
    assert joined == [{"french": 2}, {}]
    (entry,) = [e for e in await store.entries("support") if e.call_id == "c1"]
    assert dict(entry.required_skills) == {"french": 2}
    await first.stop()  # as a killed node leaves it

    clock.now += 5
    second, telephony = _service(store, clock, [])
    await second.start()
    try:
        assert second.engine.calls["c1"].required_skills == {"french": 2}
        await second.drain()
        assert telephony.of("ring") == []  # en is back and free, but not French
        await second.login("fr")
        assert telephony.of("ring") == [("c1", "fr", "1002")]
    finally:
        await second.stop()
