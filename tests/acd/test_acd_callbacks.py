"""Callbacks keep the caller's place, retry the customer, and are counted apart from abandons."""

from __future__ import annotations

from acd.actions import DialCallback, OfferCall
from acd.events import CallbackCompleted, CallbackFailed, CallbackRequested, QueueLeft
from tests.acd.acd_fixtures import Harness, agent, need, of_type, offers, queue


def _queue_of_three() -> Harness:
    h = Harness(
        [queue("q", need("s"), callback_attempts=2, callback_retry=60, wrapuptime=0)],
        [agent("a", s=1)],
    )
    for call in ("c1", "c2", "c3"):
        h.enqueue(call, "q")
        h.advance(1)
    return h


def test_callback_keeps_the_place_and_is_not_an_abandon() -> None:
    h = _queue_of_three()
    out = h.call("request_callback", "c1", destination="+15550100")
    assert [(e.call_id, e.reason) for e in of_type(out, QueueLeft)] == [("c1", "callback")]
    assert of_type(out, CallbackRequested)[0].position == 1
    assert h.engine.waiting("q") == ("c1", "c2", "c3")
    assert h.engine.service_level("q", h.now) == 100.0  # no abandon counted
    out = h.login("a")
    offer = of_type(out, OfferCall)[0]
    assert (offer.call_id, offer.callback_destination) == ("c1", "+15550100")


def test_agent_answer_dials_the_customer_then_connects() -> None:
    h = _queue_of_three()
    h.call("request_callback", "c1", destination="+15550100")
    h.login("a")
    out = h.answer("c1", "a")
    assert of_type(out, DialCallback) == [
        DialCallback(call_id="c1", agent_id="a", queue_id="q", destination="+15550100", attempt=1)
    ]
    assert h.engine.waiting("q") == ("c2", "c3")
    out = h.call("callback_result", "c1", connected=True)
    assert of_type(out, CallbackCompleted)[0].attempts == 1
    assert h.state("a") == "on_call"
    h.advance(30)
    assert offers(h.hang_up("a")) == [("c2", "a")]


def test_unreached_customer_is_retried_later_keeping_the_place_then_given_up() -> None:
    h = _queue_of_three()
    h.call("request_callback", "c1", destination="+15550100")
    h.login("a")
    h.answer("c1", "a")
    out = h.call("callback_result", "c1", connected=False)
    assert of_type(out, CallbackFailed)[0].final is False
    assert h.state("a") == "reserved"
    assert offers(out) == [("c2", "a")]  # c1 rests until its retry time
    h.answer("c2", "a")
    h.advance(60)
    h.hang_up("a")
    # After the retry delay c1 is ahead of c3 again.
    assert h.engine.waiting("q") == ("c1", "c3")
    assert offers(h.log[-3:]) == [("c1", "a")]
    h.answer("c1", "a")
    out = h.call("callback_result", "c1", connected=False)
    failed = of_type(out, CallbackFailed)[0]
    assert (failed.attempts, failed.final) == (2, True)
    assert h.engine.waiting("q") == ("c3",)
    assert offers(out) == [("c3", "a")]
