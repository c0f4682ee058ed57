"""A configuration reload changes queues and agents in the running engine; no caller is dropped."""

from __future__ import annotations

import pytest

from acd.events import AgentStateChanged, QueueLeft
from acd.model import EscalationStep, Strategy
from tests.acd.acd_fixtures import (
    Harness,
    agent,
    cancels,
    need,
    of_type,
    offered_agent,
    offers,
    queue,
    states,
)


def test_new_skills_apply_at_once_to_callers_already_waiting() -> None:
    h = Harness([queue("q", need("s", 3))], [agent("a", s=1), agent("b", t=4)])
    h.login("a", "b")
    h.enqueue("c1", "q")
    h.advance(5)
    h.enqueue("c2", "q")
    assert offers(h.log) == []  # nobody has s at 3
    out = h.call("reconfigure", [queue("q", need("s", 3))], [agent("a", s=1), agent("b", s=4)])
    assert offers(out) == [("c1", "b")]  # the first in line, to the agent who now qualifies
    assert h.state("b") == "reserved"
    assert h.engine.waiting("q") == ("c1", "c2")


def test_a_changed_strategy_and_a_new_queue_apply_to_the_next_decision() -> None:
    agents = [agent("a", s=1), agent("b", s=1), agent("c", s=1)]
    h = Harness([queue("q", need("s"))], agents)
    for agent_id in "abc":
        h.login(agent_id)
        h.advance(1)
    with pytest.raises(KeyError, match="unknown queue"):
        h.enqueue("x", "new")
    h.call(
        "reconfigure",
        [queue("q", need("s"), strategy=Strategy.LINEAR, linear_order=("c", "b")), queue("new")],
        agents,
    )
    assert offered_agent(h.enqueue("c1", "q"), "c1") == "c"  # linear now, not longest idle
    assert offered_agent(h.enqueue("c2", "new"), "c2") == "a"  # longest idle there


def test_a_removed_queue_keeps_its_callers_until_they_are_served() -> None:
    h = Harness([queue("q", need("s")), queue("old", need("t"))], [agent("a", t=2)])
    h.enqueue("c1", "old")
    h.enqueue("c2", "old")
    out = h.call("reconfigure", [queue("q", need("s"))], [agent("a", t=2)])
    assert out == []  # nobody routed out, nobody told to leave
    assert h.engine.waiting("old") == ("c1", "c2")
    with pytest.raises(KeyError, match="removed from the configuration"):
        h.enqueue("c3", "old")
    with pytest.raises(KeyError, match="removed from the configuration"):
        h.call("move_call", "c1", "old")  # nor can a caller be moved into it

    assert offered_agent(h.login("a"), "c1") == "a"
    h.serve("c1", "a", talk=10)
    assert offers(h.log)[-1] == ("c2", "a")
    h.serve("c2", "a", talk=10)
    assert "old" not in h.engine.queues  # forgotten once its last caller is gone
    assert [e.reason for e in of_type(h.log, QueueLeft)] == ["answered", "answered"]


def test_a_removed_idle_agent_is_logged_out_and_forgotten() -> None:
    h = Harness([queue("q", need("s"))], [agent("a", s=1), agent("b", s=1)])
    h.login("a", "b")
    out = h.call("reconfigure", [queue("q", need("s"))], [agent("b", s=1)])
    assert states(out, "a") == [("logged_out", "removed")]
    assert "a" not in h.engine.agents
    with pytest.raises(KeyError, match="unknown agent"):
        h.login("a")
    assert offered_agent(h.enqueue("c1", "q"), "c1") == "b"


def test_a_removed_agent_being_offered_a_call_hands_it_to_the_next_agent() -> None:
    h = Harness([queue("q", need("s"))], [agent("a", s=1), agent("b", s=1)])
    h.login("a")
    h.advance(1)
    h.login("b")
    assert offered_agent(h.enqueue("c1", "q"), "c1") == "a"
    out = h.call("reconfigure", [queue("q", need("s"))], [agent("b", s=1)])
    assert cancels(out) == [("c1", "a", "withdrawn")]
    assert offers(out) == [("c1", "b")]


def test_a_removed_agent_on_a_call_finishes_it_then_is_forgotten() -> None:
    queues = [queue("q", need("s"), wrapuptime=10)]
    h = Harness(queues, [agent("a", s=1), agent("b", s=1)])
    h.login("a")
    assert offered_agent(h.enqueue("c1", "q"), "c1") == "a"
    h.answer("c1", "a")
    h.call("reconfigure", queues, [agent("b", s=1)])
    assert h.state("a") == "on_call"
    with pytest.raises(KeyError, match="unknown agent"):
        h.login("a")
    h.enqueue("c2", "q")
    h.advance(30)
    h.hang_up("a")
    assert h.state("a") == "wrap_up"
    h.advance(10)
    assert "a" not in h.engine.agents
    assert [s for s, _ in states(h.log, "a")][-2:] == ["wrap_up", "logged_out"]
    assert offers(h.log) == [("c1", "a")]  # c2 was never offered to the removed agent


def test_a_new_escalation_step_counts_from_the_callers_arrival() -> None:
    h = Harness([queue("q", need("s", 4))], [agent("a", s=2)])
    h.login("a")
    h.enqueue("c1", "q")
    h.advance(40)
    h.call(
        "reconfigure",
        [queue("q", need("s", 4), escalation=(EscalationStep(after=30, relax_proficiency=2),))],
        [agent("a", s=2)],
    )
    out = h.advance(0)  # the step was due 10 s ago: it fires at the next timer
    assert offers(out) == [("c1", "a")]


def test_a_shorter_max_wait_sends_callers_out_who_waited_longer() -> None:
    h = Harness([queue("q", need("s"), max_wait=300)], [agent("a", s=1)])
    h.enqueue("c1", "q")
    h.advance(100)
    h.enqueue("c2", "q")
    h.call("reconfigure", [queue("q", need("s"), max_wait=60)], [agent("a", s=1)])
    h.advance(0)
    assert h.engine.waiting("q") == ("c2",)
    left = of_type(h.log, QueueLeft)
    assert [(e.call_id, e.reason) for e in left] == [("c1", "timeout")]


def test_agents_keep_their_state_and_idle_order_across_a_reload() -> None:
    agents = [agent("a", s=1), agent("b", s=1), agent("c", s=1)]
    h = Harness([queue("q", need("s"))], agents)
    h.login("b")
    h.advance(1)
    h.login("a")
    h.advance(1)
    h.login("c")
    h.call("agent_pause", "c", "lunch")
    before = len(of_type(h.log, AgentStateChanged))
    h.call("reconfigure", [queue("q", need("s"))], agents)
    assert len(of_type(h.log, AgentStateChanged)) == before  # nobody moved
    assert h.state("c") == "paused" and h.engine.agents["c"].reason == "lunch"
    assert offered_agent(h.enqueue("c1", "q"), "c1") == "b"  # still the longest idle
    assert offered_agent(h.enqueue("c2", "q"), "c2") == "a"
