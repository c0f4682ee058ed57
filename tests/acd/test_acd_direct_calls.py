"""An agent on a call of their own, outside the queues (dialled from their softphone, or another
agent's internal call they answered): ``on_call`` for the ACD, so no queue call is offered to
them until it ends, and no wrap-up after it."""

from __future__ import annotations

import pytest

from acd.agent_state import IllegalTransitionError
from tests.acd.acd_fixtures import Harness, agent, need, offers, queue, states


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


def test_paused_agents_stay_paused_and_only_the_call_they_are_on_ends_it() -> None:
    h = _harness()
    h.call("agent_pause", "alice", "break")
    with pytest.raises(IllegalTransitionError):
        h.call("direct_call_started", "alice", "own-3")
    assert h.state("alice") == "paused"
    h.call("agent_unpause", "alice")
    h.call("direct_call_started", "alice", "own-4")
    with pytest.raises(IllegalTransitionError):
        h.call("direct_call_ended", "alice", "other-call")
    assert h.state("alice") == "on_call"
