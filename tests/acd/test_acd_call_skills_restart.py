"""A caller's own skills are stored with their queue entry: a restarted node (or another node
reading the store) sees them, and a restored callback still needs them."""

from __future__ import annotations

import pytest

from acd.events import AcdEvent, QueueJoined
from acd.model import AgentProfile, QueueConfig, SkillRequirement
from acd.service import AcdService
from acd.store import AcdStore
from tests.acd.acd_node_fixtures import STORES, Clocks, node_service, open_store
from tests.acd.acd_service_fixtures import FakeTelephony

QUEUES = [QueueConfig(queue_id="support", required_skills=(SkillRequirement(skill="support"),))]
AGENTS = [
    AgentProfile(agent_id="en", skills={"support": 3}, sip_user="1001"),
    AgentProfile(agent_id="fr", skills={"support": 3, "french": 2}, sip_user="1002"),
]


store = pytest.fixture(params=STORES, name="store")(open_store)


def _service(
    store: AcdStore, clocks: Clocks, events: list[AcdEvent]
) -> tuple[AcdService, FakeTelephony]:
    return node_service(store, clocks, events, QUEUES, AGENTS)


async def test_a_restored_callback_still_needs_the_callers_skills(store: AcdStore) -> None:
    clocks = Clocks()
    events: list[AcdEvent] = []
    first, telephony = _service(store, clocks, events)
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

    clocks.mono += 5
    second, telephony = _service(store, clocks, [])
    await second.start()
    try:
        assert second.engine.calls["c1"].required_skills == {"french": 2}
        await second.drain()
        assert telephony.of("ring") == []  # en is back and free, but not French
        await second.login("fr")
        assert telephony.of("ring") == [("c1", "fr", "1002")]
    finally:
        await second.stop()
