"""The projection's memory stays bounded however many calls go through it.

A long run folds one call after another (started, queued, offered, answered, ended) into the
projection, as a server at a steady call rate does, and checks that every structure holding
per-call or per-event data stops growing at its bound.
"""

from __future__ import annotations

from typing import Any

from supervisor_api.kpi import EventRecord
from supervisor_api.projection import (
    ENDED_CALLS_REMEMBERED,
    EXITS_KEPT_SECONDS,
    LiveProjection,
)

#: About what one call through the queue publishes that the projection follows.
CALL_EVENTS = 8


def _call(projection: LiveProjection, number: int, at: float) -> None:
    call_id, agent_id = f"c{number}", f"a{number % 5}"
    events: list[tuple[str, dict[str, Any]]] = [
        ("call.started", {"call_id": call_id, "caller_id": f"555{number}", "did": "100"}),
        ("queue.joined", {"call_id": call_id, "queue_id": "day", "position": 1, "priority": 0}),
        ("agent.offered", {"call_id": call_id, "agent_id": agent_id, "queue_id": "day"}),
        ("agent.answered", {"call_id": call_id, "agent_id": agent_id, "queue_id": "day"}),
        (
            "queue.left",
            {"call_id": call_id, "queue_id": "day", "reason": "answered", "wait_seconds": 3.0},
        ),
        ("agent.state_changed", {"agent_id": agent_id, "state": "on_call"}),
        ("call.ended", {"call_id": call_id, "cause": "normal"}),
        ("agent.state_changed", {"agent_id": agent_id, "state": "available"}),
    ]
    for offset, (kind, data) in enumerate(events):
        seq = projection.last_seq + 1
        projection.apply(EventRecord(seq=seq, time=at + offset * 0.1, type=kind, data=data))


def _sizes(projection: LiveProjection) -> dict[str, int]:
    return {
        "journal": len(projection.journal),
        "exits": len(projection.queues["day"].exits),
        "calls in progress": len(projection.calls),
        "ended calls": len(projection._ended),
        "agents": len(projection.agents),
    }


def test_a_long_run_of_calls_leaves_every_structure_at_its_bound() -> None:
    projection = LiveProjection(queues=["day"], journal_size=5000, exits_per_queue=2000)
    calls = ENDED_CALLS_REMEMBERED + 2000
    for number in range(calls):
        _call(projection, number, at=number * 0.1)  # 10 calls a second
    at_bound = _sizes(projection)
    assert at_bound == {
        "journal": 5000,
        "exits": 2000,
        "calls in progress": 0,
        "ended calls": ENDED_CALLS_REMEMBERED,
        "agents": 5,
    }
    for number in range(calls, calls + 3000):
        _call(projection, number, at=number * 0.1)
    assert _sizes(projection) == at_bound
    assert projection.applied == (calls + 3000) * CALL_EVENTS


def test_queue_exits_older_than_a_day_are_dropped() -> None:
    projection = LiveProjection(queues=["day"])
    for number in range(100):
        _call(projection, number, at=number * 60.0)
    assert len(projection.queues["day"].exits) == 100
    # A quiet night, then one call: yesterday's exits no longer belong to any "today".
    _call(projection, 100, at=99 * 60.0 + EXITS_KEPT_SECONDS + 1)
    assert len(projection.queues["day"].exits) == 1
