"""A node that is gone for good leaves its callbacks to the nodes still running: another node
routes them, keeping their place, and dials the customers back."""

from __future__ import annotations

import asyncio

import pytest

from acd.model import AgentProfile, QueueConfig, SkillRequirement
from acd.store import AcdStore, InProcessAcdStore
from tests.acd.acd_node_fixtures import STORES, Clocks, node_service, open_store
from tests.acd.acd_service_fixtures import VirtualClock, make_node, run_virtual

QUEUES = [QueueConfig(queue_id="sales", required_skills=(SkillRequirement(skill="sales"),))]
AGENTS = [AgentProfile(agent_id="alice", skills={"sales": 3}, sip_user="1001")]

store = pytest.fixture(params=STORES, name="store")(open_store)


async def _node_a_registers_callbacks_and_dies(store: AcdStore, clocks: Clocks) -> None:
    a, _ = node_service(store, clocks, [], QUEUES, AGENTS, node_id="node-a")
    await a.start()
    await a.enqueue("c1", "sales")
    await a.request_callback("c1", "+15550101")
    clocks.mono += 5
    await a.enqueue("c2", "sales", priority=0)
    await a.request_callback("c2", "+15550102")
    await a.enqueue("c3", "sales")  # a caller on the line: gone with the node
    await a.stop()  # killed: nothing cleaned up


async def test_another_node_takes_over_a_lost_nodes_callbacks_keeping_their_place(
    store: AcdStore,
) -> None:
    clocks = Clocks()
    await _node_a_registers_callbacks_and_dies(store, clocks)
    clocks.mono += 60  # well past node-a's lease (three 10 s heartbeats)

    b, telephony = node_service(store, clocks, [], QUEUES, AGENTS, node_id="node-b")
    await b.start()
    try:
        assert b.engine.waiting("sales") == ("c1", "c2")
        assert clocks.mono - b.engine.calls["c1"].anchor == pytest.approx(65)  # its place
        assert [(e.call_id, e.node) for e in await store.entries("sales")] == [
            ("c1", "node-b"),
            ("c2", "node-b"),
        ]
        await b.enqueue("c4", "sales")  # a caller of node-b's own, arrived after them
        await b.login("alice")
        assert telephony.of("ring") == [("c1", "alice", "1001")]
        b.answered("c1", "alice")
        await b.drain()
        assert telephony.of("dial") == [("c1", "alice", "+15550101", 1)]
        assert "node-a" not in await store.node_leases()
    finally:
        await b.stop()


async def test_the_callbacks_of_a_node_still_alive_stay_with_it(store: AcdStore) -> None:
    clocks = Clocks()
    await _node_a_registers_callbacks_and_dies(store, clocks)
    clocks.mono += 10  # within node-a's lease: maybe only restarting

    b, _ = node_service(store, clocks, [], QUEUES, AGENTS, node_id="node-b")
    await b.start()
    try:
        assert b.engine.waiting("sales") == ()
        assert {e.node for e in await store.entries("sales")} == {"node-a"}
    finally:
        await b.stop()


def test_a_running_node_adopts_them_at_its_heartbeat_once_the_lease_lapses() -> None:
    async def main(clock: VirtualClock) -> None:
        shared = InProcessAcdStore()
        a = make_node(clock, QUEUES, AGENTS, store=shared, node_id="node-a")
        b = make_node(clock, QUEUES, AGENTS, store=shared, node_id="node-b")
        await a.service.start()
        await b.service.start()
        await a.service.enqueue("c1", "sales")
        await a.service.request_callback("c1", "+15550101")
        await b.service.login("alice")
        await a.service.stop()  # node-a dies with a callback nobody could take yet
        await asyncio.sleep(25)
        assert b.telephony.of("ring") == []  # node-a's lease has not lapsed yet
        await asyncio.sleep(20)
        assert b.telephony.of("ring")[:1] == [("c1", "alice", "1001")]
        await b.service.stop()

    run_virtual(main)
