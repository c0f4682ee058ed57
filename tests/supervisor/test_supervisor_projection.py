"""The live projection: queues, agents and calls in progress, folded from real domain events."""

from __future__ import annotations

from supervisor_api.kpi import EventRecord
from supervisor_api.projection import LiveProjection
from tests.supervisor.supervisor_timeline import (
    T0,
    Timeline,
    joined,
    sales_morning,
    started,
)


def fold(timeline: Timeline, until: float | None = None) -> LiveProjection:
    projection = LiveProjection(queues=["sales", "support"], agents=["a1", "a2", "a3"])
    for record in timeline.records:
        if until is None or record.time <= T0 + until:
            projection.apply(record)
    return projection


def test_waiting_callers_in_position_order_with_longest_wait() -> None:
    timeline = Timeline()
    sales_morning(timeline)
    projection = fold(timeline, until=60)
    sales = projection.queues["sales"]
    assert [w.call_id for w in sales.waiting_in_order()] == ["c3", "c4"]
    assert sales.longest_wait(T0 + 60) == 20.0
    assert sales.waiting["c4"].offered_to == "a2"
    assert projection.queues["support"].waiting == {}


def test_agent_states_time_in_state_and_handled_totals() -> None:
    timeline = Timeline()
    sales_morning(timeline)
    projection = fold(timeline)
    a1 = projection.agents["a1"]
    assert (a1.state, a1.since, a1.call_id) == ("on_call", T0 + 95, "c4")
    assert (a1.calls_handled, a1.talk_seconds, a1.wrap_up_seconds) == (1, 60.0, 10.0)
    assert projection.agents["a2"].state == "available"
    assert projection.agents["a3"].state == "logged_out"
    assert projection.agents_by_state() == {
        "available": 1,
        "busy": 1,
        "wrap_up": 0,
        "paused": 0,
        "logged_out": 1,
    }
    assert projection.agents_by_state(["a2", "a3"])["available"] == 1


def test_calls_in_progress_keep_their_segments() -> None:
    timeline = Timeline()
    sales_morning(timeline)
    projection = fold(timeline)
    assert set(projection.calls) == {"c4"}  # c1, c2, c3 ended
    c4 = projection.calls["c4"]
    assert c4.state == "connected" and c4.agent_id == "a1"
    assert [(s.kind, s.started_at - T0, s.outcome) for s in c4.segments] == [
        ("queue", 50.0, "answered"),
        ("agent", 95.0, None),
    ]
    assert c4.caller_id == "+4930123"


def test_unknown_and_malformed_events_are_counted_not_fatal() -> None:
    projection = LiveProjection()
    projection.apply(EventRecord(seq=1, time=T0, type="speech.transcript", data={"x": 1}))
    projection.apply(EventRecord(seq=2, time=T0, type="queue.joined", data={"queue_id": 7}))
    projection.apply(EventRecord(seq=3, time=T0, type="ivr.node_entered", data={"call_id": "c9"}))
    assert (projection.ignored, projection.malformed, projection.applied) == (1, 1, 1)
    assert projection.calls["c9"].state == "ivr"
    assert len(projection.journal) == 0  # none of them counts for a KPI


def test_replayed_events_are_not_applied_twice() -> None:
    timeline = Timeline()
    timeline.at(0, started("c1"), joined("c1"))
    projection = LiveProjection()
    for record in timeline.records + timeline.records:
        projection.apply(record)
    assert projection.applied == 2
    assert list(projection.queues["sales"].waiting) == ["c1"]


def test_journal_is_bounded() -> None:
    projection = LiveProjection(journal_size=3)
    for seq in range(1, 11):
        projection.apply(EventRecord(seq=seq, time=T0, type="agent.offered", data={}))
    assert [r.seq for r in projection.journal] == [8, 9, 10]


def test_the_journal_keeps_what_kpis_read_and_nothing_else() -> None:
    projection = LiveProjection()
    kinds = ["call.started", "queue.joined", "agent.offered", "agent.answered", "queue.left",
             "media.leg_closed", "agent.state_changed", "call.ended"]  # fmt: skip
    for seq, kind in enumerate(kinds, start=1):
        projection.apply(EventRecord(seq=seq, time=T0, type=kind, data={}))
    assert [r.type for r in projection.journal] == [
        "agent.offered", "agent.answered", "queue.left", "agent.state_changed"
    ]  # fmt: skip


def test_an_event_after_call_ended_does_not_bring_the_call_back() -> None:
    # The IVR reports why it exited after the caller hung up: the call must stay gone.
    projection = LiveProjection()
    for seq, (kind, data) in enumerate(
        [
            ("call.started", {"call_id": "c1", "caller_id": "555", "did": "100"}),
            ("ivr.entered", {"call_id": "c1", "tree_id": "main"}),
            ("call.ended", {"call_id": "c1", "cause": "normal"}),
            ("ivr.exited", {"call_id": "c1", "destination": "abandoned"}),
        ],
        start=1,
    ):
        projection.apply(EventRecord(seq=seq, type=kind, time=float(seq), data=data))
    assert projection.calls == {}
