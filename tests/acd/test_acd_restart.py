"""A node that restarts finds its agents and callbacks where its previous run left them.

One service runs on a store, is stopped without any clean-up (as a killed process leaves it), and
a new engine and service for the same node start on the same store (the same Redis prefix).
"""

from __future__ import annotations

import pytest

from acd.events import AcdEvent, AgentStateChanged
from acd.model import AgentProfile, QueueConfig, SkillRequirement
from acd.service import AcdService
from acd.store import AcdStore, AgentStatus
from tests.acd.acd_node_fixtures import STORES, Clocks, node_service, open_store
from tests.acd.acd_service_fixtures import FakeTelephony

QUEUES = [
    QueueConfig(
        queue_id="sales", required_skills=(SkillRequirement(skill="sales"),), wrapuptime=30
    ),
    QueueConfig(queue_id="support", required_skills=(SkillRequirement(skill="support"),)),
]
AGENTS = [
    AgentProfile(agent_id="alice", skills={"support": 3}, sip_user="1001"),
    AgentProfile(agent_id="bob", skills={"support": 3}, sip_user="1002"),
    AgentProfile(agent_id="carol", skills={"sales": 3}, sip_user="1003"),
    AgentProfile(agent_id="dave", skills={"sales": 3}, sip_user="1004"),
    AgentProfile(agent_id="erin", skills={"sales": 3}, sip_user="1005"),
    AgentProfile(agent_id="frank", skills={"sales": 3}, sip_user="1006"),
]


def _service(
    store: AcdStore, clocks: Clocks, events: list[AcdEvent]
) -> tuple[AcdService, FakeTelephony]:
    return node_service(store, clocks, events, QUEUES, AGENTS)


async def _answer(service: AcdService, call_id: str, agent_id: str) -> None:
    service.ringing(call_id, agent_id)
    service.answered(call_id, agent_id)
    await service.drain()


store = pytest.fixture(params=STORES, name="store")(open_store)


async def _previous_run(store: AcdStore, clocks: Clocks) -> None:
    events: list[AcdEvent] = []
    service, telephony = _service(store, clocks, events)
    await service.start()
    for agent_id in ("alice", "bob", "carol", "dave"):
        await service.login(agent_id)
    await service.pause("bob", "lunch")
    await service.enqueue("c1", "sales")
    await _answer(service, "c1", "carol")
    await service.enqueue("c2", "sales")
    await _answer(service, "c2", "dave")
    await service.enqueue("c3", "sales", priority=2, attributes={"customer_id": "k7"})
    await service.request_callback("c3", "+15550100")
    await service.enqueue("c4", "sales")  # a caller waiting on this node
    clocks.mono += 10
    service.agent_hung_up("carol")  # 30 s of wrap-up from now
    service.caller_hung_up("c1")
    await service.drain()
    assert telephony.of("ring") == [("c1", "carol", "1003"), ("c2", "dave", "1004")]
    # Another node's agent, saved in the same store.
    await store.save_agent_status(
        AgentStatus(agent_id="frank", state="available", since=clocks.shared(), node="node-2")
    )
    await service.stop()  # no clean-up: claims, statuses and entries stay as they are


async def test_a_restarted_node_restores_agents_and_callbacks(store: AcdStore) -> None:
    clocks = Clocks()
    await _previous_run(store, clocks)
    clocks.mono += 12  # down for 12 s; carol has 18 s of wrap-up left

    events: list[AcdEvent] = []
    service, telephony = _service(store, clocks, events)
    await service.start()
    engine = service.engine
    try:
        assert engine.agent_state("alice").value == "available"
        assert engine.agent_state("bob").value == "paused"
        assert engine.agents["bob"].reason == "lunch"
        assert engine.agent_state("carol").value == "wrap_up"
        assert engine.agents["carol"].wrap_up_until == pytest.approx(clocks.mono + 18)
        assert engine.agent_state("erin").value == "logged_out"
        assert engine.agent_state("frank").value == "logged_out"  # node-2's, not ours

        # dave's call was on the node that went away: he is free again, his old claim dropped
        # at once (not after its lease), and the callback, which kept its place, goes to him.
        assert telephony.of("ring") == [("c3", "dave", "1004")]
        claim = await store.claim_of("dave", clocks.shared())
        assert claim is not None and claim.call_id == "node-1/c3"
        callback = engine.calls["c3"]
        assert callback.callback_destination == "+15550100"
        assert (callback.priority, dict(callback.attributes)) == (2, {"customer_id": "k7"})
        assert clocks.mono - callback.anchor == pytest.approx(22)

        # The waiting caller died with the node: not restored, and gone from the store.
        assert "c4" not in engine.calls
        assert [e.call_id for e in await store.entries("sales")] == ["c3"]

        restored = {
            e.agent_id: (e.previous_state, e.state, e.reason)
            for e in events
            if isinstance(e, AgentStateChanged) and e.previous_state == "logged_out"
        }
        assert restored == {
            "alice": ("logged_out", "available", "restored"),
            "bob": ("logged_out", "paused", "lunch"),
            "carol": ("logged_out", "wrap_up", "restored"),
            "dave": ("logged_out", "available", "restored"),
        }
        status = await store.agent_status("carol")
        assert status is not None and status.wrap_up_until == pytest.approx(clocks.shared() + 18)

    finally:
        await service.stop()


async def test_a_second_restart_finds_the_same_state(store: AcdStore) -> None:
    clocks = Clocks()
    await _previous_run(store, clocks)
    clocks.mono += 1
    first, _ = _service(store, clocks, [])
    await first.start()
    await first.stop()
    clocks.mono += 1
    second, _ = _service(store, clocks, [])
    await second.start()
    try:
        states = {a: second.engine.agent_state(a).value for a in second.engine.agents}
        assert states == {
            "alice": "available",
            "bob": "paused",
            "carol": "wrap_up",
            "dave": "reserved",  # offered the restored callback c3 again
            "erin": "logged_out",
            "frank": "logged_out",
        }
        assert list(second.engine.calls) == ["c3"]
    finally:
        await second.stop()
