"""The CDR fold: a call's envelopes in, segments with outcomes and durations out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from acd.events import AgentAnswered, QueueJoined
from cxos.envelope import JsonValue
from cxos.storage.cdr import SERVER_RESTART, CallFold, fold_call, fold_calls, restart_closure
from telephony.events import CallEnded
from tests.storage.storage_scenarios import (
    T0,
    Teller,
    started,
    tell_abandoned_call,
    tell_transfer_call,
)

START = datetime.fromtimestamp(T0, UTC)


def at(offset: float) -> datetime:
    return START + timedelta(seconds=offset)


def stamped_before(envelopes: list[dict[str, JsonValue]], time: str) -> list[dict[str, JsonValue]]:
    """The envelopes published before `time` (ISO 8601 UTC stamps sort as they read)."""
    earlier = []
    for envelope in envelopes:
        stamp = envelope["time"]
        assert isinstance(stamp, str)
        if stamp < time:
            earlier.append(envelope)
    return earlier


def test_ivr_queue_agent_transfer_queue_agent_gives_six_segments() -> None:
    teller = Teller()
    tell_transfer_call(teller)

    record = fold_call("call-1", teller.envelopes())

    assert record is not None
    summary = [(s.index, s.kind, s.started_at, s.ended_at, s.outcome) for s in record.segments]
    assert summary == [
        (1, "ivr", at(2), at(14), "queue"),
        (2, "queue", at(14), at(44), "answered"),
        (3, "agent", at(44), at(104), "transferred"),
        (4, "transfer", at(104), at(106), "connected"),
        (5, "queue", at(106), at(126), "answered"),
        (6, "agent", at(126), at(186), "completed"),
    ]
    ivr, sales, first, transfer, support, second = record.segments
    assert (ivr.ivr_tree_id, ivr.destination) == ("main", "sales")
    assert (sales.queue_id, sales.wait_seconds, sales.offers, sales.position) == (
        "sales",
        30.0,
        2,
        3,
    )
    assert sales.agent_id == "a1"
    # Talk time belongs to the agent who talked: a1 60 s minus 10 s hold, a2 60 s.
    assert (first.agent_id, first.talk_seconds, first.hold_seconds) == ("a1", 50.0, 10.0)
    assert (first.ring_seconds, first.wrap_up_seconds, first.queue_id) == (5.0, 15.0, "sales")
    assert transfer.destination == "support"
    assert (support.queue_id, support.wait_seconds, support.agent_id) == ("support", 20.0, "a2")
    assert (second.agent_id, second.talk_seconds, second.hold_seconds) == ("a2", 60.0, 0.0)
    assert (second.ring_seconds, second.wrap_up_seconds) == (4.0, 20.0)


def test_call_totals_and_identity() -> None:
    teller = Teller()
    tell_transfer_call(teller)

    record = fold_call("call-1", teller.envelopes())

    assert record is not None
    assert (record.trunk_id, record.did, record.caller_id, record.caller_name) == (
        "carrier",
        "+33100000000",
        "+33611111111",
        "Ada",
    )
    assert (record.node, record.started_at, record.answered_at, record.ended_at) == (
        "node-a",
        at(0),
        at(1),
        at(186),
    )
    assert (record.end_reason, record.hangup_by, record.disposition) == (
        "normal",
        "caller",
        "answered",
    )
    assert record.duration_seconds == 186.0
    assert record.ivr_seconds == 12.0
    assert record.wait_seconds == 50.0
    assert record.talk_seconds == 110.0
    assert record.hold_seconds == 10.0
    assert record.wrap_up_seconds == 35.0
    assert record.agents == ("a1", "a2")
    # The unknown supervisor.note event was ignored, not reported.
    assert record.problems == ()


def test_an_open_call_has_an_open_segment_and_no_end() -> None:
    teller = Teller()
    tell_transfer_call(teller)
    envelopes = teller.envelopes()
    before_transfer = stamped_before(envelopes, "2024-05-01T12:01:44")

    record = fold_call("call-1", before_transfer)

    assert record is not None
    assert (record.ended_at, record.end_reason, record.disposition) == (None, None, "in_progress")
    last = record.segments[-1]
    assert (last.kind, last.agent_id, last.ended_at, last.outcome) == ("agent", "a1", None, None)


def test_caller_abandoning_in_queue_gets_the_queue_s_own_reason_and_wait() -> None:
    teller = Teller()
    tell_abandoned_call(teller)

    record = fold_call("call-2", teller.envelopes())

    assert record is not None
    (queue,) = record.segments
    assert (queue.kind, queue.outcome, queue.wait_seconds) == ("queue", "abandoned", 40.0)
    assert (queue.started_at, queue.ended_at) == (at(1), at(41))
    assert record.disposition == "queue_abandoned"
    assert record.talk_seconds == 0.0


def test_an_event_out_of_place_is_reported_not_guessed() -> None:
    teller = Teller()
    teller.at(0, started("call-3"))
    teller.at(
        5,
        AgentAnswered(
            call_id="call-3", agent_id="a1", queue_id="q", wait_seconds=0.0, ring_seconds=1.0
        ),
    )
    teller.at(
        10,
        CallEnded(
            call_id="call-3",
            cause="normal",
            hangup_by="callee",
            duration_seconds=10,
            talk_seconds=5,
        ),
    )
    teller.at(11, QueueJoined(call_id="call-3", queue_id="late", priority=1, position=1))

    record = fold_call("call-3", teller.envelopes())

    assert record is not None
    assert [s.kind for s in record.segments] == ["agent"]
    assert len(record.problems) == 1
    assert "queue.joined not expected while ended" in record.problems[0]


def test_events_before_call_started_give_no_record() -> None:
    fold = CallFold("call-9")
    fold.apply(
        {
            "id": "x",
            "type": "queue.joined",
            "time": "2024-05-01T12:00:00.000Z",
            "data": {"queue_id": "q", "position": 1},
        }
    )
    assert fold.record() is None


def test_unreadable_envelopes_are_reported() -> None:
    teller = Teller()
    teller.at(0, started("call-4"))
    envelopes = teller.envelopes()
    envelopes.append({"id": "bad", "type": "call.ended", "time": "yesterday", "data": {}})

    record = fold_call("call-4", envelopes)

    assert record is not None
    assert record.ended_at is None
    assert record.problems == (
        "bad: call.ended: unreadable (Invalid isoformat string: 'yesterday')",
    )


def test_fold_calls_separates_interleaved_calls() -> None:
    teller = Teller()
    tell_abandoned_call(teller, "call-a", start=0)
    tell_abandoned_call(teller, "call-b", start=5)
    envelopes = sorted(teller.envelopes(), key=lambda e: str(e["time"]))

    records = fold_calls(envelopes)

    assert sorted(records) == ["call-a", "call-b"]
    assert records["call-b"].started_at == at(5)
    assert records["call-b"].ended_at == at(46)


def test_restart_closure_ends_the_call_when_the_node_was_last_alive() -> None:
    teller = Teller()
    tell_transfer_call(teller)
    in_progress = stamped_before(teller.envelopes(), "2024-05-01T12:01:00")
    record = fold_call("call-1", in_progress)
    assert record is not None

    duration, talk = restart_closure(record, last_alive=at(59))

    assert (duration, talk) == (59.0, 15.0)  # a1 answered at 44 s
    closing = Teller()
    for envelope_offset, event in [
        (
            100.0,
            CallEnded(
                call_id="call-1",
                cause=SERVER_RESTART,
                hangup_by="server",
                duration_seconds=duration,
                talk_seconds=talk,
            ),
        ),
    ]:
        closing.at(envelope_offset, event)
    closed = fold_call("call-1", [*in_progress, *closing.envelopes()])
    assert closed is not None
    assert (closed.ended_at, closed.end_reason) == (at(59), SERVER_RESTART)
    assert closed.segments[-1].outcome == SERVER_RESTART
    assert closed.talk_seconds == pytest.approx(15.0)
