"""A caller's own skills (the IVR's language, the CRM's product) on top of the queue's."""

from __future__ import annotations

import pytest

from acd.actions import RouteCall
from acd.events import QueueJoined, QueueJoinRejected, QueueLeft
from acd.model import EscalationStep, Strategy
from tests.acd.acd_fixtures import Harness, agent, need, of_type, offered_agent, offers, queue


def test_a_french_caller_goes_to_the_french_speaker_not_the_longest_idle() -> None:
    h = Harness(
        [queue("q", need("support"))], [agent("en", support=3), agent("fr", support=3, french=2)]
    )
    h.login("en")
    h.advance(60)
    h.login("fr")
    out = h.enqueue("c1", "q", required_skills={"french": 1})
    assert offers(out) == [("c1", "fr")]
    out = h.enqueue("c2", "q")
    assert offers(out) == [("c2", "en")]


def test_the_callers_minimum_proficiency_is_required() -> None:
    h = Harness([queue("q")], [agent("weak", french=2), agent("fluent", french=4)])
    h.login("weak")
    out = h.enqueue("c1", "q", required_skills={"french": 3})
    assert offers(out) == []
    assert offers(h.login("fluent")) == [("c1", "fluent")]


def test_the_queue_skills_are_still_required() -> None:
    h = Harness(
        [queue("sales", need("sales", 2))],
        [agent("fr_only", french=5), agent("fr_sales", french=1, sales=2)],
    )
    h.login("fr_only")
    out = h.enqueue("c1", "sales", required_skills={"french": 1})
    assert offers(out) == []
    assert offers(h.login("fr_sales")) == [("c1", "fr_sales")]


def test_a_caller_naming_a_queue_skill_raises_its_level_for_that_call() -> None:
    h = Harness([queue("q", need("french", 1))], [agent("a", french=2), agent("b", french=4)])
    h.login("a", "b")
    assert offered_agent(h.enqueue("c1", "q", required_skills={"french": 3}), "c1") == "b"
    assert offered_agent(h.enqueue("c2", "q", required_skills={"french": 1}), "c2") == "a"


def test_an_agent_becoming_free_takes_the_first_caller_they_may_serve() -> None:
    h = Harness([queue("q")], [agent("en"), agent("fr", french=1)])
    h.enqueue("french", "q", required_skills={"french": 1})
    h.advance(1)
    h.enqueue("plain", "q")
    # The French caller arrived first, but only a French speaker may take them.
    assert offers(h.login("en")) == [("plain", "en")]
    assert offers(h.login("fr")) == [("french", "fr")]


def test_a_french_speaker_serves_callers_in_order_whatever_their_needs() -> None:
    h = Harness([queue("q")], [agent("fr", french=1)])
    h.enqueue("plain", "q")
    h.advance(1)
    h.enqueue("french", "q", required_skills={"french": 1})
    assert offers(h.login("fr")) == [("plain", "fr")]


def test_escalation_relaxes_the_callers_levels_as_the_queues() -> None:
    q = queue(
        "q",
        need("support", 3),
        escalation=(
            EscalationStep(after=30, relax_proficiency=1),
            EscalationStep(after=60, relax_proficiency=2),
        ),
    )
    h = Harness([q], [agent("junior", support=1, french=2)])
    h.login("junior")
    h.enqueue("c1", "q", required_skills={"french": 4})
    assert offers(h.advance(30)) == []  # support 2 and french 3 now
    # After the second step: support 3-3 -> 1, french 4-3 -> 1.
    assert offers(h.advance(30)) == [("c1", "junior")]


def test_overflow_and_added_skills_keep_the_callers_needs() -> None:
    sales = queue(
        "sales",
        need("sales"),
        escalation=(
            EscalationStep(after=20, add_skills=(need("general"),)),
            EscalationStep(after=40, overflow_queues=("support",)),
        ),
    )
    support = queue("support", need("support"))
    h = Harness(
        [sales, support],
        [agent("g", general=1), agent("t", support=1), agent("t_fr", support=1, french=1)],
    )
    h.login("g", "t")
    h.enqueue("c1", "sales", required_skills={"french": 1})
    assert offers(h.advance(45)) == []  # general and support agents, but neither speaks French
    assert offers(h.login("t_fr")) == [("c1", "t_fr")]


def test_a_skill_nobody_has_is_an_empty_queue_for_joinempty() -> None:
    h = Harness(
        [queue("q", joinempty=False, exit_destination="vm")],
        [agent("en"), agent("fr", french=1)],
    )
    h.login("en")
    out = h.enqueue("c1", "q", required_skills={"klingon": 1})
    assert of_type(out, QueueJoinRejected)[0].reason == "empty"
    assert of_type(out, RouteCall) == [
        RouteCall(call_id="c1", queue_id="q", reason="empty", destination="vm")
    ]
    # French is known but nobody who has it is logged in: the same.
    assert of_type(h.enqueue("c2", "q", required_skills={"french": 1}), QueueJoinRejected)
    h.login("fr")
    h.call("agent_pause", "fr", reason="lunch")
    assert of_type(h.enqueue("c3", "q", required_skills={"french": 1}), QueueJoinRejected)
    assert of_type(h.enqueue("c4", "q"), QueueJoined)  # en may serve a plain caller
    assert len(h.engine.router.own_classes()) == 0  # the rejected callers left no class behind


def test_with_joinempty_a_caller_waits_for_an_agent_with_their_skill() -> None:
    h = Harness([queue("q", max_wait=300, exit_destination="vm")], [agent("en")])
    h.login("en")
    out = h.enqueue("c1", "q", required_skills={"klingon": 1})
    assert of_type(out, QueueJoined) and offers(out) == []
    assert h.engine.estimated_wait("c1", h.now) is None  # nobody could serve
    out = h.advance(300)
    assert of_type(out, RouteCall)[0].reason == "timeout"


def test_leavewhenempty_sends_out_the_callers_only_the_last_agent_could_serve() -> None:
    h = Harness(
        [queue("q", leavewhenempty=True, exit_destination="vm")],
        [agent("en"), agent("fr", french=1)],
    )
    h.login("en", "fr")
    h.enqueue("busy1", "q")
    h.enqueue("busy2", "q")
    h.answer("busy1", "en")
    h.answer("busy2", "fr")
    h.enqueue("french", "q", required_skills={"french": 1})
    h.enqueue("plain", "q")
    out = h.call("agent_logout", "fr")  # on a call: logged out when it ends
    assert of_type(out, QueueLeft) == []
    out = h.hang_up("fr")
    left = [(e.call_id, e.reason) for e in of_type(out, QueueLeft)]
    assert left == [("french", "empty")]
    assert h.engine.waiting("q") == ("plain",)


def test_priority_change_and_move_keep_the_callers_skills() -> None:
    h = Harness([queue("a"), queue("b")], [agent("en"), agent("fr", french=2)])
    h.login("en")
    h.enqueue("c1", "a", required_skills={"french": 2})
    h.call("set_priority", "c1", 5)
    out = h.call("move_call", "c1", "b")
    joined = of_type(out, QueueJoined)
    assert [(j.queue_id, dict(j.required_skills)) for j in joined] == [("b", {"french": 2})]
    assert offers(out) == []  # en is free, but not French
    assert offers(h.login("fr")) == [("c1", "fr")]


def test_queue_joined_reports_the_callers_skills() -> None:
    h = Harness([queue("q", need("support"))], [])
    (joined,) = of_type(h.enqueue("c1", "q", required_skills={"french": 2}), QueueJoined)
    assert dict(joined.required_skills) == {"french": 2}
    (joined,) = of_type(h.enqueue("c2", "q"), QueueJoined)
    assert dict(joined.required_skills) == {}


def test_a_proficiency_outside_one_to_five_is_refused() -> None:
    h = Harness([queue("q")], [])
    with pytest.raises(ValueError, match="min_proficiency 6"):
        h.enqueue("c1", "q", required_skills={"french": 6})
    with pytest.raises(ValueError, match="skill name is empty"):
        h.enqueue("c2", "q", required_skills={"": 1})
    assert h.engine.waiting("q") == ()


def test_position_counts_only_callers_competing_for_the_same_agents() -> None:
    h = Harness([queue("q")], [])
    h.enqueue("de1", "q", required_skills={"german": 1})
    h.enqueue("de2", "q", required_skills={"german": 1})
    h.enqueue("plain", "q")
    h.enqueue("fr", "q", required_skills={"french": 1})
    h.enqueue("fr_de", "q", required_skills={"french": 1, "german": 1})
    assert h.engine.position("fr") == 2  # behind "plain" only
    assert h.engine.position("plain") == 3  # anyone ahead may take a plain caller's agent
    assert h.engine.position("fr_de") == 5


def test_estimated_wait_counts_only_agents_with_the_callers_skills() -> None:
    h = Harness([queue("q")], [agent("en1"), agent("en2"), agent("fr", french=1)])
    h.login("en1", "en2", "fr")
    h.enqueue("first", "q", required_skills={"french": 1})
    h.answer("first", "fr")
    h.enqueue("c1", "q", required_skills={"french": 1})
    # en1 and en2 are free, but the French speaker is on a call (default handle time 180 s).
    assert h.engine.estimated_wait("c1", h.now) == pytest.approx(180.0)


def test_a_preferred_agent_without_the_callers_skill_is_not_waited_for() -> None:
    h = Harness([queue("q", sticky_wait=30)], [agent("owner"), agent("fr", french=1)])
    h.login("owner", "fr")
    out = h.enqueue("c1", "q", preferred_agent="owner", required_skills={"french": 1})
    assert offers(out) == [("c1", "fr")]


def test_classes_of_callers_skills_are_shared_then_dropped_when_empty() -> None:
    h = Harness([queue("q"), queue("r")], [agent("fr", french=1)])
    router = h.engine.router
    h.enqueue("c1", "q", required_skills={"french": 1})
    h.enqueue("c2", "q", required_skills={"french": 1})
    assert len(router.own_classes()) == 1
    h.enqueue("c3", "r", required_skills={"french": 1})
    h.enqueue("c4", "q", required_skills={"french": 2})
    assert len(router.own_classes()) == 3
    h.login("fr")
    h.answer("c1", "fr")
    h.abandon("c4")
    assert len(router.own_classes()) == 2
    h.abandon("c2")
    h.call("move_call", "c3", "q")
    assert len(router.own_classes()) == 1
    h.abandon("c3")
    assert len(router.own_classes()) == 0


def test_skill_weighted_ranks_by_the_callers_skill_too() -> None:
    h = Harness(
        [queue("q", need("support"), strategy=Strategy.SKILL_WEIGHTED)],
        [agent("a", support=3, french=1), agent("b", support=2, french=4)],
    )
    h.login("a", "b")
    assert offered_agent(h.enqueue("c1", "q", required_skills={"french": 1}), "c1") == "b"
    assert offered_agent(h.enqueue("c2", "q"), "c2") == "a"


def test_a_reload_keeps_the_callers_skills() -> None:
    queues = [queue("q")]
    h = Harness(queues, [agent("a", french=1)])
    h.enqueue("c1", "q", required_skills={"french": 1})
    h.call("reconfigure", queues, [agent("a", german=1)])
    assert offers(h.login("a")) == []
    out = h.call("reconfigure", queues, [agent("a", german=1, french=1)])
    assert offers(out) == [("c1", "a")]


def test_callbacks_keep_the_callers_skills() -> None:
    h = Harness([queue("q")], [agent("en"), agent("fr", french=1)])
    h.enqueue("c1", "q", required_skills={"french": 1})
    h.call("request_callback", "c1", "+15550100")
    assert offers(h.login("en")) == []
    out = h.call(
        "restore_callback", "c2", "q", "+15550101", waited=100.0, required_skills={"french": 1}
    )
    assert offers(out) == []
    assert offers(h.login("fr")) == [("c2", "fr")]  # waited longer than c1
