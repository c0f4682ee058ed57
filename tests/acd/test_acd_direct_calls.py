"""An agent on a call of their own, outside the queues (dialled from their softphone, or another
agent's internal call they answered): ``on_call`` for the ACD, so no queue call is offered to
them until it ends, and no wrap-up after it."""

from __future__ import annotations

import asyncio

import pytest

from acd.agent_state import IllegalTransitionError
from acd.model import AgentProfile
from tests.acd.acd_fixtures import Harness, agent, need, offers, queue, states
from tests.acd.acd_service_fixtures import VirtualClock, make_node, run_virtual, sales_queue


def _harness() -> Harness:
    h = Harness([queue("sales", need("sales"), wrapuptime=30)], [agent("alice", sales=5)])
    h.login("alice")
    return h


def test_no_queue_call_is_offered_during_a_direct_call_and_one_is_after_it() -> None:
    h = _harness()
    out = h.call("direct_call_started", "alice", "own-1")
    assert states(out, "alice") == [("on_call", "direct_call")]
    assert offers(h.enqueue("c1", "sales")) == []
    h.advance(20)
    out = h.call("direct_call_ended", "alice", "own-1")
    # No wrap-up: no queue call was handled; the waiting caller is offered to her at once.
    assert states(out, "alice")[:1] == [("available", "direct_call_ended")]
    assert offers(out) == [("c1", "alice")]
    assert h.engine.agents["alice"].talk_time == 0.0


def test_a_direct_call_ends_a_wrap_up_and_a_pause_asked_for_meanwhile_waits_for_its_end() -> None:
    h = _harness()
    h.enqueue("c0", "sales")
    h.ring("c0", "alice")
    h.answer("c0", "alice")
    h.advance(10)
    h.hang_up("alice")
    assert h.state("alice") == "wrap_up"
    h.call("direct_call_started", "alice", "own-2")
    h.advance(60)  # the wrap-up timer of the previous call does not fire any more
    assert h.state("alice") == "on_call"
    h.call("agent_pause", "alice", "lunch")
    out = h.call("direct_call_ended", "alice", "own-2")
    assert states(out, "alice") == [("paused", "lunch")]


def test_only_the_call_an_agent_is_on_ends_it() -> None:
    h = _harness()
    h.call("direct_call_started", "alice", "own-4")
    with pytest.raises(IllegalTransitionError):
        h.call("direct_call_ended", "alice", "other-call")
    assert h.state("alice") == "on_call"


def test_an_agent_who_placed_a_call_while_paused_is_busy_on_it_once_unpaused() -> None:
    h = _harness()
    h.call("agent_pause", "alice", "break")
    assert h.call("direct_call_started", "alice", "own-3") == []
    assert h.state("alice") == "paused"  # offered nothing anyway
    h.enqueue("c1", "sales")
    out = h.call("agent_unpause", "alice")
    # Back to work while still on her own call: on_call, not offered the waiting caller.
    assert states(out, "alice") == [("available", "unpause"), ("on_call", "direct_call")]
    assert offers(out) == []
    out = h.call("direct_call_ended", "alice", "own-3")
    assert states(out, "alice")[:1] == [("available", "direct_call_ended")]
    assert offers(out) == [("c1", "alice")]


def test_a_call_placed_while_paused_that_ends_first_leaves_the_agent_free_to_work() -> None:
    h = _harness()
    h.call("agent_pause", "alice", "break")
    h.call("direct_call_started", "alice", "own-5")
    assert h.call("direct_call_ended", "alice", "own-5") == []
    h.enqueue("c1", "sales")
    out = h.call("agent_unpause", "alice")
    assert offers(out) == [("c1", "alice")]


def test_the_service_keeps_a_paused_agent_on_their_own_call_busy_after_unpause() -> None:
    agents = [AgentProfile(agent_id="alice", skills={"sales": 5}, sip_user="1001")]

    async def main(clock: VirtualClock) -> None:
        n = make_node(clock, [sales_queue()], agents)
        service = n.service
        await service.start()
        await service.login("alice")
        await service.pause("alice", "break")
        service.direct_call_started("alice", "own-1")  # dialled from her softphone
        await service.enqueue("c1", "sales")
        await service.unpause("alice")
        assert service.engine.agent_state("alice").value == "on_call"
        assert n.telephony.of("ring") == []
        claim = await n.store.claim_of("alice", clock())
        assert claim is not None and claim.call_id == "node-1/own-1"  # other nodes too
        status = await n.store.agent_status("alice")
        assert status is not None and (status.state, status.call_id) == ("on_call", "own-1")
        await asyncio.sleep(60)  # the claim is renewed while she talks
        assert await n.store.claim_of("alice", clock()) is not None
        service.direct_call_ended("alice", "own-1")
        await service.drain()
        assert n.telephony.of("ring") == [("c1", "alice", "1001")]
        await service.stop()

    run_virtual(main)
