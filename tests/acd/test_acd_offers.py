"""Offers as leases, ring-no-answer handling, auto-pause, wrap-up, pause and logout."""

from __future__ import annotations

import pytest

from acd.agent_state import IllegalTransitionError
from acd.events import AgentNoAnswer, AgentRejected, QueueLeft
from acd.model import EngineSettings, OfferFailure, RingFailurePolicy
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


def _two_agents(**options: object) -> Harness:
    h = Harness(
        [queue("q", need("s"), ring_timeout=15, **options)],
        [agent("a", s=1), agent("b", s=1)],
        settings=EngineSettings(offer_lease=4),
    )
    h.login("a")
    h.advance(1)
    h.login("b")
    return h


def test_unconfirmed_offer_lapses_after_the_lease_and_goes_to_the_next_agent() -> None:
    h = _two_agents()
    assert offered_agent(h.enqueue("c1", "q"), "c1") == "a"
    assert h.engine.next_timer() == pytest.approx(h.now + 4)
    out = h.advance(4)
    assert cancels(out) == [("c1", "a", "expired")]
    assert of_type(out, AgentNoAnswer)[0].agent_id == "a"
    assert offers(out) == [("c1", "b")]
    assert h.state("a") == "available"


def test_ringing_extends_the_lease_to_the_ring_timeout() -> None:
    h = _two_agents()
    h.enqueue("c1", "q")
    h.ring("c1", "a")
    assert offers(h.advance(14)) == []
    out = h.advance(1)
    assert of_type(out, AgentNoAnswer)[0].ring_seconds == pytest.approx(15)
    assert offers(out) == [("c1", "b")]


@pytest.mark.parametrize("reason", [OfferFailure.REJECTED, OfferFailure.BUSY])
def test_reject_and_busy_reoffer_to_the_next_agent(reason: OfferFailure) -> None:
    h = _two_agents()
    h.enqueue("c1", "q")
    h.ring("c1", "a")
    out = h.fail("c1", "a", reason)
    assert [(e.agent_id, e.reason) for e in of_type(out, AgentRejected)] == [("a", reason.value)]
    assert offers(out) == [("c1", "b")]
    assert h.state("a") == "available"


def test_an_agent_who_failed_a_call_is_not_offered_it_again_before_retry() -> None:
    h = Harness([queue("q", need("s"), retry=10)], [agent("a", s=1)])
    h.login("a")
    h.enqueue("c1", "q")
    out = h.fail("c1", "a", OfferFailure.REJECTED)
    assert offers(out) == []
    assert offers(h.advance(9.9)) == []
    assert offers(h.advance(0.1)) == [("c1", "a")]


def test_the_failed_agent_takes_another_waiting_caller_meanwhile() -> None:
    h = Harness([queue("q", need("s"), retry=10)], [agent("a", s=1)])
    h.enqueue("c1", "q")
    h.enqueue("c2", "q")
    h.login("a")
    out = h.fail("c1", "a", OfferFailure.NO_ANSWER)
    assert offers(out) == [("c2", "a")]


def test_unregistered_softphone_pauses_the_agent_at_once() -> None:
    h = _two_agents()
    h.enqueue("c1", "q")
    out = h.fail("c1", "a", OfferFailure.UNREGISTERED)
    assert states(out, "a") == [("paused", "autopause:unregistered")]
    assert offers(out) == [("c1", "b")]


def test_autopause_after_the_configured_number_of_consecutive_failures() -> None:
    h = Harness([queue("q", need("s"), autopause=3, retry=0)], [agent("a", s=1)])
    h.login("a")
    h.enqueue("c1", "q")
    for attempt in (1, 2):
        out = h.fail("c1", "a", OfferFailure.NO_ANSWER)
        assert of_type(out, AgentNoAnswer)[0].consecutive_failures == attempt
        assert offers(out) == [("c1", "a")]  # retry=0: straight back to the only agent
    out = h.advance(20)  # third: the lease runs out
    assert states(out, "a")[0] == ("paused", "autopause:no_answer")
    assert h.engine.waiting("q") == ("c1",)
    out = h.call("agent_unpause", "a")
    assert offers(out) == [("c1", "a")]
    out = h.fail("c1", "a", OfferFailure.NO_ANSWER)
    assert of_type(out, AgentNoAnswer)[0].consecutive_failures == 1  # the count starts over


def test_an_answer_resets_the_failure_streak() -> None:
    h = Harness([queue("q", need("s"), autopause=2, retry=0)], [agent("a", s=1)])
    h.login("a")
    h.enqueue("c1", "q")
    h.fail("c1", "a", OfferFailure.NO_ANSWER)
    h.serve("c1", "a")
    h.enqueue("c2", "q")
    out = h.fail("c2", "a", OfferFailure.NO_ANSWER)
    assert h.state("a") == "reserved"
    assert of_type(out, AgentNoAnswer)[0].consecutive_failures == 1


def test_failures_outside_the_policy_do_not_count() -> None:
    policy = RingFailurePolicy(counts=frozenset({OfferFailure.NO_ANSWER}))
    h = Harness(
        [queue("q", need("s"), autopause=1, retry=0, ring_failures=policy)], [agent("a", s=1)]
    )
    h.login("a")
    h.enqueue("c1", "q")
    out = h.fail("c1", "a", OfferFailure.REJECTED)
    assert of_type(out, AgentRejected)[0].consecutive_failures == 0
    assert h.state("a") == "reserved"  # offered again, not paused


def test_late_answer_after_the_lease_expired_is_cancelled() -> None:
    h = _two_agents()
    h.enqueue("c1", "q")
    h.advance(4)  # a's lease expired, c1 offered to b
    out = h.answer("c1", "a")
    assert cancels(out) == [("c1", "a", "stale")]
    assert h.state("a") == "available"
    assert h.state("b") == "reserved"


def test_stale_ringing_and_failure_reports_are_ignored() -> None:
    h = _two_agents()
    h.enqueue("c1", "q")
    h.advance(4)
    assert h.ring("c1", "a") == []
    assert h.fail("c1", "a", OfferFailure.NO_ANSWER) == []


def test_caller_abandoning_while_ringing_frees_the_agent() -> None:
    h = _two_agents()
    h.enqueue("c1", "q")
    h.ring("c1", "a")
    h.advance(3)
    out = h.abandon("c1")
    assert cancels(out) == [("c1", "a", "abandoned")]
    left = of_type(out, QueueLeft)[0]
    assert (left.reason, left.wait_seconds) == ("abandoned", 3.0)
    assert h.state("a") == "available"
    assert h.engine.next_timer() is None


def test_wrap_up_uses_the_queue_time_or_the_agents_own() -> None:
    h = Harness(
        [queue("q", need("s"), wrapuptime=30)],
        [agent("a", s=1), agent("quick", wrapuptime=5, s=1)],
    )
    h.login("a", "quick")
    h.enqueue("c1", "q")
    h.enqueue("c2", "q")
    h.answer("c1", "a")
    h.answer("c2", "quick")
    h.advance(60)
    h.hang_up("a")
    h.hang_up("quick")
    assert h.state("a") == h.state("quick") == "wrap_up"
    h.enqueue("c3", "q")
    out = h.advance(5)
    assert offers(out) == [("c3", "quick")]
    h.answer("c3", "quick")
    assert h.state("a") == "wrap_up"
    assert h.advance(24.9) == []
    h.advance(0.1)
    assert h.state("a") == "available"


def test_pause_during_a_call_takes_effect_after_wrap_up() -> None:
    h = Harness([queue("q", need("s"), wrapuptime=10)], [agent("a", s=1)])
    h.login("a")
    h.enqueue("c1", "q")
    h.ring("c1", "a")
    h.answer("c1", "a")
    assert h.call("agent_pause", "a", reason="lunch") == []
    h.enqueue("c2", "q")
    h.hang_up("a")
    out = h.advance(10)
    assert states(out, "a") == [("paused", "lunch")]
    assert offers(out) == []


def test_logout_during_a_call_without_wrap_up_logs_out_at_hang_up() -> None:
    h = Harness([queue("q", need("s"))], [agent("a", s=1)])
    h.login("a")
    h.enqueue("c1", "q")
    h.answer("c1", "a")  # auto-answer straight from reserved
    h.call("agent_logout", "a")
    out = h.hang_up("a")
    assert states(out, "a") == [("logged_out", "logout")]


def test_logout_while_ringing_gives_the_call_to_the_next_agent() -> None:
    h = _two_agents()
    h.enqueue("c1", "q")
    h.ring("c1", "a")
    out = h.call("agent_logout", "a")
    assert cancels(out) == [("c1", "a", "withdrawn")]
    assert offers(out) == [("c1", "b")]


def test_moves_the_state_machine_forbids_raise() -> None:
    h = _two_agents()
    with pytest.raises(IllegalTransitionError):
        h.hang_up("a")
    with pytest.raises(IllegalTransitionError):
        h.call("agent_unpause", "a")
    with pytest.raises(IllegalTransitionError):
        h.login("a")
    with pytest.raises(KeyError, match="unknown agent"):
        h.login("zed")
