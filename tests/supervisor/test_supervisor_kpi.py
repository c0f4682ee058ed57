"""KPIs from events: each figure of docs/metrics.md on a scripted morning worked out by hand."""

from __future__ import annotations

import pytest

from config.api import QueueTargets
from supervisor_api.kpi import compute_kpis
from supervisor_api.projection import LiveProjection
from tests.supervisor.supervisor_timeline import T0, Timeline, sales_morning, state

TARGETS = QueueTargets(service_level_seconds=20, service_level2_seconds=60, short_abandon_seconds=5)


def report(start: float = 0, end: float = 200, now: float = 200) -> object:
    timeline = Timeline()
    sales_morning(timeline)
    return compute_kpis(timeline.records, T0 + start, T0 + end, T0 + now, lambda q: TARGETS)


def test_queue_service_level_asa_and_abandons() -> None:
    sales = report().queues["sales"]  # type: ignore[attr-defined]
    tally = sales.tally
    assert (tally.offered, tally.answered, tally.abandoned, tally.short_abandoned) == (4, 2, 2, 1)
    # SL base excludes the short abandon: 3 calls, one answered within 20 s, two within 60 s.
    assert tally.service_level == pytest.approx(100 / 3)
    assert tally.service_level2 == pytest.approx(200 / 3)
    assert tally.asa == pytest.approx((9 + 45) / 2)
    assert tally.abandon_rate == pytest.approx(100 / 3)
    # Queue handling: c1 handled (60 s talk + 10 s wrap-up); 3 offers, 1 not answered.
    assert sales.handling.handled == 1
    assert sales.handling.aht == pytest.approx(70)
    assert sales.handling.ring_no_answer_rate == pytest.approx(100 / 3)


def test_agent_handle_time_occupancy_and_ring_no_answer() -> None:
    agents = report().agents  # type: ignore[attr-defined]
    a1, a2 = agents["a1"], agents["a2"]
    assert a1.handling.handled == 1 and a1.handling.aht == pytest.approx(70)
    # a1: ready 20 + 5 s, handling 60 + 10 + 105 s (still on c4 at now).
    assert a1.occupancy == pytest.approx(100 * 175 / 200)
    assert a1.utilisation == pytest.approx(100 * 175 / 200)
    assert a2.occupancy == 0.0
    assert a2.handling.ring_no_answer_rate == 100.0
    assert a1.handling.ring_no_answer_rate == 0.0


def test_interval_clips_state_time_and_counts_exits_inside_only() -> None:
    r = report(start=60, end=100, now=200)
    a1 = r.agents["a1"]  # type: ignore[attr-defined]
    # 60..80 on call, 80..90 wrap-up, 90..95 available, 95..100 on call.
    assert a1.seconds_by_state == {"on_call": 25.0, "wrap_up": 10.0, "available": 5.0}
    tally = r.queues["sales"].tally  # type: ignore[attr-defined]
    assert (tally.offered, tally.answered, tally.abandoned) == (2, 1, 1)  # c3 at 70, c4 at 95


def test_empty_interval_gives_no_figures_rather_than_zero() -> None:
    r = compute_kpis([], T0, T0 + 60, T0 + 60, lambda q: TARGETS, known_queues=["sales"])
    tally = r.queues["sales"].tally
    assert tally.offered == 0
    assert tally.service_level is None and tally.asa is None and tally.abandon_rate is None


def test_interval_must_not_end_before_it_starts() -> None:
    with pytest.raises(ValueError, match="ends before"):
        compute_kpis([], T0 + 1, T0, T0, lambda q: TARGETS)


def test_wallboard_service_level_matches_the_kpi_formula() -> None:
    timeline = Timeline()
    sales_morning(timeline)
    projection = LiveProjection()
    for record in timeline.records:
        projection.apply(record)
    tally = projection.queues["sales"].tally(T0, T0 + 200, TARGETS)
    assert tally.service_level == pytest.approx(100 / 3)
    recent = projection.queues["sales"].tally(T0 + 60, T0 + 200, TARGETS)
    assert recent.offered == 2


def test_an_agents_own_calls_are_time_on_the_phone_but_no_handled_call() -> None:
    # a1 takes a queue call, then calls a colleague from her softphone (a direct call).
    timeline = Timeline()
    timeline.at(0, state("a1", "logged_out", "available", 0.0, reason="login"))
    timeline.at(10, state("a1", "available", "on_call", 10.0, "c1", reason="answered"))
    timeline.at(70, state("a1", "on_call", "available", 60.0, "c1", reason="call_ended"))
    timeline.at(80, state("a1", "available", "on_call", 10.0, "d1", reason="direct_call"))
    timeline.at(200, state("a1", "on_call", "available", 120.0, "d1", reason="direct_call_ended"))
    kpis = compute_kpis(timeline.records, T0, T0 + 300, T0 + 300, lambda q: TARGETS)
    a1 = kpis.agents["a1"]
    assert a1.handling.handled == 1
    assert a1.handling.talk_seconds == pytest.approx(60)
    assert a1.seconds_by_state["on_call"] == pytest.approx(180)
    projection = LiveProjection()
    for record in timeline.records:
        projection.apply(record)
    assert projection.agent("a1").calls_handled == 1
