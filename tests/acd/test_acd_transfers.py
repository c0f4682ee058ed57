"""A caller transferred by one agent's phone to another agent (a blind transfer by REFER rings
that phone directly, with no offer): the agent who answers is on the call from then on."""

from __future__ import annotations

import asyncio

import pytest

from acd.agent_state import IllegalTransitionError
from acd.events import AgentAnswered
from acd.model import AgentProfile, QueueConfig, SkillRequirement
from tests.acd.acd_fixtures import Harness, agent, need, of_type, offers, queue, states
from tests.acd.acd_service_fixtures import Node, VirtualClock, make_node, run_virtual, sales_queue


def _harness() -> Harness:
    h = Harness(
        [queue("sales", need("sales"), wrapuptime=30), queue("support", need("support"))],
        [agent("alice", sales=5), agent("bob", support=5)],
    )
    h.login("alice", "bob")
    h.enqueue("c1", "sales")
    h.ring("c1", "alice")
    h.answer("c1", "alice")
    h.advance(40)
    return h


def test_the_agent_who_answers_a_transfer_is_on_the_call_until_its_end() -> None:
    h = _harness()
    out = h.call("transfer_answered", "c1", "bob", "sales", 1.5)
    assert states(out, "bob") == [("on_call", "transferred")]
    (answered,) = of_type(out, AgentAnswered)
    assert (answered.agent_id, answered.queue_id) == ("bob", "sales")
    assert (answered.wait_seconds, answered.ring_seconds) == (0.0, 1.5)
    assert h.engine.agent_call("bob") == "c1"
    h.hang_up("alice")  # her leg ended with the transfer
    # Bob is busy: a support caller waits for him.
    assert offers(h.enqueue("c2", "support")) == []
    h.advance(25)
    out = h.hang_up("bob")
    # The wrap-up of the queue the caller came from; his talk started when he answered.
    assert states(out, "bob") == [("wrap_up", "call_ended")]
    assert h.engine.agents["bob"].talk_time == pytest.approx(25)
    assert h.engine.agents["alice"].talk_time == pytest.approx(40)


def test_an_agent_who_is_not_available_is_not_put_on_a_transferred_call() -> None:
    h = _harness()
    h.call("agent_pause", "bob", "lunch")
    with pytest.raises(IllegalTransitionError):
        h.call("transfer_answered", "c1", "bob", "sales", 1.0)
    assert (h.state("bob"), h.engine.agent_call("bob")) == ("paused", None)


def test_the_service_claims_the_agent_and_ends_only_the_call_it_put_them_on() -> None:
    agents = [
        AgentProfile(agent_id="alice", skills={"sales": 5}, sip_user="1001"),
        AgentProfile(agent_id="bob", skills={"support": 5}, sip_user="1002"),
        AgentProfile(agent_id="carol", skills={"support": 5}, sip_user="1003"),
    ]
    sales = QueueConfig(
        queue_id="sales", required_skills=(SkillRequirement(skill="sales"),), wrapuptime=30
    )

    async def main(clock: VirtualClock) -> None:
        n = make_node(clock, [sales], agents)
        service = n.service
        await service.start()
        for agent_id in ("alice", "bob", "carol"):
            await service.login(agent_id)
        await service.pause("carol", "lunch")
        await service.enqueue("c1", "sales")
        service.answered("c1", "alice")
        await service.drain()

        service.transfer_answered("c1", "bob", "sales", 2.0)
        service.transfer_answered("c1", "carol", "sales", 2.0)  # paused: she stays paused
        service.agent_hung_up("alice")
        await service.drain()
        claim = await n.store.claim_of("bob", clock())
        assert claim is not None and claim.call_id == "node-1/c1"
        status = await n.store.agent_status("bob")
        assert status is not None and (status.state, status.call_id) == ("on_call", "c1")
        assert service.engine.agent_state("carol").value == "paused"

        service.transfer_ended("c1", "carol")  # not her call: nothing happens
        service.transfer_ended("c2", "bob")  # not his call either
        await service.drain()
        assert service.engine.agent_state("bob").value == "on_call"
        service.transfer_ended("c1", "bob")
        await service.drain()
        assert service.engine.agent_state("bob").value == "wrap_up"
        assert n.types().count("agent.answered") == 2  # alice's, then bob's
        await service.stop()

    run_virtual(main)


def test_a_transfer_target_is_offered_no_queue_call_while_their_phone_rings() -> None:
    h = _harness()
    h.call("transfer_ringing", "c1", "bob", 20.0)
    assert h.state("bob") == "available"  # reserved for the transfer: held, not offered
    assert offers(h.enqueue("c2", "support")) == []
    out = h.call("transfer_answered", "c1", "bob", "sales", 3.0)
    assert states(out, "bob") == [("on_call", "transferred")]
    assert offers(out) == []  # c2 still waits: bob is on the transferred call


def test_a_transfer_that_fails_frees_its_target_for_the_waiting_caller() -> None:
    h = _harness()
    h.call("transfer_ringing", "c1", "bob", 20.0)
    h.enqueue("c2", "support")
    assert h.call("transfer_failed", "c9", "bob") == []  # another call's outcome: stale
    assert offers(h.call("transfer_failed", "c1", "bob")) == [("c2", "bob")]


def test_a_transfer_reservation_ends_with_the_ring_time_whatever_is_reported() -> None:
    h = _harness()
    h.call("transfer_ringing", "c1", "bob", 20.0)
    h.enqueue("c2", "support")
    assert offers(h.advance(19)) == []
    assert offers(h.advance(2)) == [("c2", "bob")]
    assert h.engine.agents["bob"].transfer_call is None


SALES_AGENTS = [
    AgentProfile(agent_id="alice", skills={"sales": 5}, sip_user="1001"),
    AgentProfile(agent_id="bob", skills={"sales": 5}, sip_user="1002"),
]


async def _alice_transfers_c1_to_bob(clock: VirtualClock) -> Node:
    """Alice is on c1; her phone transfers it to bob's, which starts ringing."""
    n = make_node(clock, [sales_queue()], SALES_AGENTS)
    service = n.service
    await service.start()
    await service.login("alice")
    await service.enqueue("c1", "sales")
    service.answered("c1", "alice")
    await service.drain()
    await service.login("bob")
    service.transfer_ringing("c1", "bob", 15.0)
    return n


def test_the_service_reserves_a_transfer_target_against_other_nodes_too() -> None:
    async def main(clock: VirtualClock) -> None:
        n = await _alice_transfers_c1_to_bob(clock)
        service = n.service
        await service.enqueue("c2", "sales")
        assert ("c2", "bob", "1002") not in n.telephony.of("ring")
        claim = await n.store.claim_of("bob", clock())
        assert claim is not None and claim.call_id == "node-1/c1"  # other nodes are refused

        service.transfer_failed("c1", "bob")
        await service.drain()
        assert ("c2", "bob", "1002") in n.telephony.of("ring")
        claim = await n.store.claim_of("bob", clock())
        assert claim is not None and claim.call_id == "node-1/c2"
        await service.stop()

    run_virtual(main)


def test_the_service_puts_a_reserved_transfer_target_on_the_call_when_they_answer() -> None:
    async def main(clock: VirtualClock) -> None:
        n = await _alice_transfers_c1_to_bob(clock)
        service = n.service
        await asyncio.sleep(5)
        service.transfer_answered("c1", "bob", "sales", 5.0)
        service.agent_hung_up("alice")
        await service.drain()
        assert service.engine.agent_state("bob").value == "on_call"
        await asyncio.sleep(60)  # long past the ring time: he stays on the call, claimed
        claim = await n.store.claim_of("bob", clock())
        assert claim is not None and claim.call_id == "node-1/c1"
        await service.enqueue("c2", "sales")
        assert ("c2", "bob", "1002") not in n.telephony.of("ring")
        await service.stop()

    run_virtual(main)
