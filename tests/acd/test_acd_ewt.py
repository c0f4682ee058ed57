"""Position and estimated wait time."""

from __future__ import annotations

import pytest

from acd.actions import Announce
from acd.events import QueuePosition
from acd.ewt import HandleTimes, ServiceLevel, estimate_wait
from tests.acd.acd_fixtures import Harness, agent, need, of_type, queue


def test_estimate_from_busy_agents_and_handle_time() -> None:
    assert estimate_wait(1, 0, [10.0, 50.0], 100.0) == 10.0
    assert estimate_wait(2, 0, [10.0, 50.0], 100.0) == 50.0
    assert estimate_wait(3, 0, [10.0, 50.0], 100.0) == 110.0
    assert estimate_wait(4, 0, [10.0, 50.0], 100.0) == 150.0


def test_available_agents_serve_the_first_callers_at_once() -> None:
    assert estimate_wait(1, 2, [], 60.0) == 0.0
    assert estimate_wait(2, 2, [], 60.0) == 0.0
    assert estimate_wait(3, 2, [], 60.0) == 60.0
    assert estimate_wait(3, 1, [20.0], 60.0) == 60.0


def test_no_agent_means_no_estimate() -> None:
    assert estimate_wait(1, 0, [], 60.0) is None
    with pytest.raises(ValueError, match="position"):
        estimate_wait(0, 0, [], 60.0)


def test_handle_times_average_the_recent_calls() -> None:
    times = HandleTimes(samples=3, default=180.0)
    assert times.average == 180.0
    for talk in (10.0, 20.0, 30.0, 40.0):
        times.record(talk)
    assert times.average == pytest.approx(30.0)


def test_service_level_over_a_sliding_window() -> None:
    level = ServiceLevel(target_seconds=20.0, window=100.0)
    level.record(0.0, 5.0, answered=True)
    level.record(10.0, 30.0, answered=True)
    level.record(20.0, 1.0, answered=False)
    assert level.percent(20.0) == pytest.approx(100 / 3)
    assert level.percent(105.0) == pytest.approx(0.0)  # only the abandon is still in the window
    assert level.percent(500.0) == 100.0


def test_engine_estimate_counts_wrap_up_and_calls_in_progress() -> None:
    h = Harness(
        [queue("q", need("s"), wrapuptime=20)],
        [agent("a", s=1), agent("b", s=1), agent("other", x=1)],
    )
    h.login("a", "b", "other")
    h.enqueue("x1", "q")
    h.enqueue("x2", "q")
    h.answer("x1", "a")
    h.answer("x2", "b")
    h.advance(60)
    h.hang_up("a")  # a: wrap-up ends in 20 s; talk average is now 60 s
    h.advance(5)
    h.enqueue("c1", "q")
    h.enqueue("c2", "q")
    h.enqueue("c3", "q")
    assert h.engine.estimated_wait("c1", h.now) == pytest.approx(15.0)  # a leaves wrap-up
    # b has talked 65 s of an average 60: done any moment, then 20 s wrap-up.
    assert h.engine.estimated_wait("c2", h.now) == pytest.approx(20.0)
    assert h.engine.estimated_wait("c3", h.now) == pytest.approx(15.0 + 80.0)


def test_periodic_announcements_carry_position_and_estimate() -> None:
    h = Harness(
        [queue("q", need("s"), announce_frequency=30, announce_holdtime=False)],
        [agent("a", s=1)],
    )
    h.login("a")
    h.enqueue("busy", "q")
    h.answer("busy", "a")
    h.enqueue("c1", "q")
    h.enqueue("c2", "q")
    out = h.advance(30)
    assert of_type(out, Announce) == [
        Announce(call_id="c1", queue_id="q", position=1, ewt_seconds=None),
        Announce(call_id="c2", queue_id="q", position=2, ewt_seconds=None),
    ]
    positions = of_type(out, QueuePosition)
    assert [p.ewt_seconds for p in positions] == [pytest.approx(150.0), pytest.approx(330.0)]
    h.abandon("c1")
    out = h.advance(30)
    assert [(a.call_id, a.position) for a in of_type(out, Announce)] == [("c2", 1)]


def test_no_estimate_when_nobody_could_serve() -> None:
    h = Harness([queue("q", need("rare"))], [agent("a", s=1)])
    h.login("a")
    h.enqueue("c1", "q")
    assert h.engine.estimated_wait("c1", h.now) is None
    assert h.engine.position("c1") == 1
