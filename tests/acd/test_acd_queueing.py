"""Who waits, in what order, and when callers move on: priority, escalation, sticky, overflow."""

from __future__ import annotations

import pytest

from acd.actions import OfferCallbackChoice, RouteCall
from acd.engine import UnknownCallError
from acd.events import QueueEscalated, QueueJoined, QueueJoinRejected, QueueLeft
from acd.model import CrossQueuePolicy, EngineSettings, EscalationStep, OfferFailure
from tests.acd.acd_fixtures import Harness, agent, need, of_type, offers, queue


def _log_in_offers(h: Harness, agent_id: str) -> list[tuple[str, str]]:
    """Log ``agent_id`` in and return the offer they receive."""
    return offers(h.login(agent_id))


def test_higher_priority_is_served_first_then_arrival_order() -> None:
    h = Harness([queue("q", need("s"))], [agent("a", s=1)])
    h.enqueue("low1", "q", priority=0)
    h.advance(1)
    h.enqueue("high", "q", priority=5)
    h.enqueue("low2", "q", priority=0)
    assert h.engine.waiting("q") == ("high", "low1", "low2")
    assert _log_in_offers(h, "a") == [("high", "a")]


def test_priority_change_applies_at_once() -> None:
    h = Harness([queue("q", need("s"))], [agent("a", s=1)])
    h.enqueue("c1", "q")
    h.enqueue("c2", "q")
    assert h.engine.position("c2") == 2
    h.call("set_priority", "c2", 3)
    assert h.engine.position("c2") == 1
    assert _log_in_offers(h, "a") == [("c2", "a")]


def test_aging_lets_a_long_waiting_low_priority_caller_overtake() -> None:
    # One priority point per 10 s of waiting.
    h = Harness([queue("q", need("s"), priority_aging=10.0)], [agent("a", s=1)])
    h.enqueue("old", "q", priority=0)
    h.advance(35)
    h.enqueue("vip", "q", priority=3)  # old has aged 3.5 points
    assert h.engine.waiting("q") == ("old", "vip")
    h.enqueue("vip2", "q", priority=4)
    assert h.engine.waiting("q") == ("vip2", "old", "vip")


def test_escalation_relaxes_proficiency_after_the_configured_wait() -> None:
    q = queue("q", need("s", 4), escalation=(EscalationStep(after=30, relax_proficiency=2),))
    h = Harness([q], [agent("junior", s=2)])
    h.login("junior")
    h.enqueue("c1", "q")
    assert offers(h.log) == []
    out = h.advance(29.9)
    assert offers(out) == []
    out = h.advance(0.2)
    assert of_type(out, QueueEscalated)[0].step == 1
    assert offers(out) == [("c1", "junior")]


def test_escalation_adds_a_skill_and_an_overflow_queue_in_steps() -> None:
    sales = queue(
        "sales",
        need("sales", 3),
        escalation=(
            EscalationStep(after=20, add_skills=(need("general"),)),
            EscalationStep(after=40, overflow_queues=("support",)),
        ),
    )
    support = queue("support", need("support"))
    h = Harness([sales, support], [agent("g", general=1), agent("t", support=2)])
    h.login("t")
    h.enqueue("c1", "sales")
    h.enqueue("c2", "sales")
    h.login("g")
    assert offers(h.log) == []
    out = h.advance(20)
    assert offers(out) == [("c1", "g")]
    h.answer("c1", "g")
    out = h.advance(20)
    assert offers(out) == [("c2", "t")]


def test_escalation_offers_a_callback_then_routes_elsewhere() -> None:
    q = queue(
        "q",
        need("s"),
        escalation=(
            EscalationStep(after=60, offer_callback=True),
            EscalationStep(after=120, route_to="voicemail:q"),
        ),
    )
    h = Harness([q], [agent("a", s=1)])
    h.enqueue("c1", "q")
    out = h.advance(60)
    assert of_type(out, OfferCallbackChoice) == [OfferCallbackChoice(call_id="c1", queue_id="q")]
    out = h.advance(60)
    assert of_type(out, RouteCall) == [
        RouteCall(call_id="c1", queue_id="q", reason="escalated", destination="voicemail:q")
    ]
    left = of_type(out, QueueLeft)[0]
    assert (left.reason, left.wait_seconds, left.destination) == ("escalated", 120.0, "voicemail:q")
    assert h.engine.waiting("q") == ()


def test_max_wait_times_out_to_the_exit_destination() -> None:
    h = Harness(
        [queue("q", need("s"), max_wait=90, exit_destination="ivr:main")], [agent("a", s=1)]
    )
    h.enqueue("c1", "q")
    out = h.advance(90)
    assert of_type(out, RouteCall)[0].destination == "ivr:main"
    assert of_type(out, QueueLeft)[0].reason == "timeout"


def test_timeout_while_ringing_waits_for_the_ring_to_end() -> None:
    h = Harness([queue("q", need("s"), max_wait=30, ring_timeout=20)], [agent("a", s=1)])
    h.enqueue("c1", "q")
    h.advance(25)
    h.login("a")
    h.ring("c1", "a")
    assert of_type(h.advance(10), RouteCall) == []  # still ringing past max wait
    out = h.fail("c1", "a", OfferFailure.REJECTED)
    assert of_type(out, RouteCall)[0].reason == "timeout"
    assert offers(out) == []


def test_answer_while_timeout_pending_wins() -> None:
    h = Harness([queue("q", need("s"), max_wait=30, ring_timeout=20)], [agent("a", s=1)])
    h.enqueue("c1", "q")
    h.advance(25)
    h.login("a")
    h.ring("c1", "a")
    h.advance(10)
    out = h.answer("c1", "a")
    assert of_type(out, QueueLeft)[0].reason == "answered"
    assert of_type(h.advance(100), RouteCall) == []


def test_sticky_agent_is_waited_for_then_the_caller_falls_back() -> None:
    q = queue("q", need("s"), sticky_wait=30)
    h = Harness([q], [agent("alice", s=1), agent("bob", s=1)])
    h.login("alice", "bob")
    h.enqueue("first", "q", preferred_agent="alice", attributes={"customer_id": "k1"})
    h.serve("first", "alice")
    h.enqueue("other", "q", preferred_agent="alice")
    h.answer("other", "alice")  # alice is busy again
    # The customer calls back: bob is free, but the caller waits for alice, who served them.
    assert offers(h.enqueue("again", "q", attributes={"customer_id": "k1"})) == []
    assert offers(h.advance(29)) == []
    assert offers(h.advance(1)) == [("again", "bob")]


def test_sticky_agent_gets_the_caller_when_free_within_the_wait() -> None:
    q = queue("q", need("s"), sticky_wait=30)
    h = Harness([q], [agent("alice", s=1), agent("bob", s=1)])
    h.login("alice", "bob")
    h.enqueue("hold", "q", preferred_agent="alice")
    h.ring("hold", "alice")
    h.answer("hold", "alice")
    out = h.enqueue("c1", "q", preferred_agent="alice")
    assert offers(out) == []
    h.advance(10)
    out = h.hang_up("alice")
    assert offers(out) == [("c1", "alice")]


def test_preferred_agent_logged_out_is_not_waited_for() -> None:
    h = Harness([queue("q", need("s"), sticky_wait=30)], [agent("a", s=1), agent("b", s=1)])
    h.login("b")
    assert offers(h.enqueue("c1", "q", preferred_agent="a")) == [("c1", "b")]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (CrossQueuePolicy.LONGEST_WAITING, "early"),
        (CrossQueuePolicy.PRIORITY_THEN_WAIT, "weighted"),
        (CrossQueuePolicy.SERVICE_LEVEL, "early"),
    ],
)
def test_cross_queue_policy_picks_the_next_caller(policy: CrossQueuePolicy, expected: str) -> None:
    h = Harness(
        [queue("billing", need("billing")), queue("vip", need("vip"), weight=10)],
        [agent("a", billing=1, vip=1)],
        settings=EngineSettings(cross_queue_policy=policy),
    )
    h.enqueue("early", "billing")
    h.advance(5)
    h.enqueue("weighted", "vip")
    assert offers(h.login("a")) == [(expected, "a")]


def test_service_level_policy_serves_the_queue_furthest_below_target() -> None:
    h = Harness(
        [queue("a_q", need("x"), service_level_seconds=20), queue("b_q", need("y"))],
        [agent("x_only", x=1), agent("both", x=1, y=1)],
        settings=EngineSettings(cross_queue_policy=CrossQueuePolicy.SERVICE_LEVEL),
    )
    # a_q misses its target once (answered after 30 s); b_q has no history (100 %).
    h.enqueue("slow", "a_q")
    h.advance(30)
    h.login("x_only")
    h.serve("slow", "x_only")
    h.call("agent_pause", "x_only", reason="break")
    h.enqueue("b_first", "b_q")
    h.advance(1)
    h.enqueue("a_later", "a_q")
    assert h.engine.service_level("a_q", h.now) == 0.0
    assert offers(h.login("both")) == [("a_later", "both")]


def test_joinempty_no_refuses_a_queue_nobody_staffs() -> None:
    h = Harness([queue("q", need("s"), joinempty=False, exit_destination="vm")], [agent("a", s=1)])
    out = h.enqueue("c1", "q")
    assert of_type(out, QueueJoinRejected)[0].reason == "empty"
    assert of_type(out, RouteCall)[0] == RouteCall(
        call_id="c1", queue_id="q", reason="empty", destination="vm"
    )
    h.login("a")
    h.call("agent_pause", "a", reason="x")
    assert of_type(h.enqueue("c2", "q"), QueueJoinRejected)  # paused agents do not staff
    h.call("agent_unpause", "a")
    assert of_type(h.enqueue("c3", "q"), QueueJoined)


def test_leavewhenempty_evicts_waiting_callers() -> None:
    h = Harness([queue("q", need("s"), leavewhenempty=True)], [agent("a", s=1)])
    h.login("a")
    h.call("agent_pause", "a", reason="meeting")  # pausing empties the queue
    h.call("agent_unpause", "a")
    h.enqueue("c1", "q")
    h.enqueue("c2", "q")
    out = h.call("agent_pause", "a", reason="meeting")  # c1 offer withdrawn, then both leave
    assert sorted((e.call_id, e.reason) for e in of_type(out, QueueLeft)) == [
        ("c1", "empty"),
        ("c2", "empty"),
    ]


def test_max_length_rejects_when_full() -> None:
    h = Harness([queue("q", need("s"), max_length=2)], [])
    h.enqueue("c1", "q")
    h.enqueue("c2", "q")
    out = h.enqueue("c3", "q")
    assert of_type(out, QueueJoinRejected)[0].reason == "full"


def test_move_call_keeps_the_callers_place() -> None:
    h = Harness([queue("a", need("x")), queue("b", need("y"))], [agent("y1", y=1)])
    h.enqueue("moved", "a")
    h.advance(10)
    h.enqueue("b1", "b")
    out = h.call("move_call", "moved", "b")
    assert [(e.queue_id, e.reason) for e in of_type(out, QueueLeft)] == [("a", "moved")]
    assert h.engine.waiting("b") == ("moved", "b1")
    assert offers(h.login("y1")) == [("moved", "y1")]


def test_commands_on_unknown_calls_raise() -> None:
    h = Harness([queue("q", need("s"))], [])
    with pytest.raises(UnknownCallError):
        h.call("set_priority", "nope", 1)
    with pytest.raises(KeyError, match="unknown queue"):
        h.enqueue("c1", "missing")
