"""CDRs of calls placed from agents' softphones: to a colleague (internal), out through a trunk
(outbound), feature codes; folded from their events, and written to the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from acd.events import AgentStateChanged
from config.settings import StorageSettings
from cxos.agent_calls import (
    AgentCallConnected,
    AgentCallDialled,
    AgentCallRoute,
    AgentCallRouted,
)
from cxos.storage.cdr import fold_call
from cxos.storage.cdr_records import CallDetailRecord
from cxos.storage.service import StorageService
from telephony.events import AgentCallStarted, CallAnswered, CallEnded
from tests.storage.storage_scenarios import NODE, T0, Teller

START = datetime.fromtimestamp(T0, UTC)


def on_call(agent_id: str, call_id: str, *, ends: bool = False) -> AgentStateChanged:
    previous, state = ("on_call", "available") if ends else ("available", "on_call")
    return AgentStateChanged(
        agent_id=agent_id,
        previous_state=previous,  # type: ignore[arg-type]
        state=state,  # type: ignore[arg-type]
        reason="direct_call",
        seconds_in_previous=0.0,
        call_id=call_id,
    )


#: What alice dials on each route, and whom it reaches: bob's extension, a number out through
#: the carrier (9 for an outside line), a feature code.
DIALS: Mapping[AgentCallRoute, tuple[str, str]] = {
    "agent": ("1002", "bob"),
    "external": ("95551234", "5551234"),
    "feature_code": ("*45", ""),
}


def tell_agent_call(
    teller: Teller,
    call_id: str,
    route: AgentCallRoute,
    outcome: str,
    *,
    end_at: float,
    answer_at: float | None = None,
    routed_after_end: bool = True,
    trunk_id: str = "",
) -> None:
    """Alice (1001) dials on `route` (`DIALS`) at 0 s; the server answers her phone at once,
    then the target rings from 1 s; it answers at `answer_at` (or never) and the call ends at
    `end_at`."""
    dialled, target = DIALS[route]
    tell = teller.at
    started = AgentCallStarted(
        call_id=call_id, sip_user="1001", dialled=dialled, sip_call_id="x", source="192.0.2.5"
    )
    tell(0, started)
    tell(0.2, CallAnswered(call_id=call_id, codec="PCMA"))
    dialling = AgentCallDialled(
        call_id=call_id, agent_id="alice", dialled=dialled, route=route, target=target
    )
    tell(1, dialling)
    if route in ("agent", "external"):
        tell(1, on_call("alice", call_id))
    if route == "agent":
        tell(1, on_call("bob", call_id))
    if answer_at is not None:
        tell(
            answer_at,
            AgentCallConnected(
                call_id=call_id, agent_id="alice", route=route, target=target, trunk_id=trunk_id
            ),
        )
    routed = AgentCallRouted(
        call_id=call_id,
        agent_id="alice",
        dialled=dialled,
        route=route,
        outcome=outcome,
        target=target,
    )
    if not routed_after_end:
        tell(end_at, routed)
    duration = end_at
    talk = end_at - answer_at if answer_at is not None else 0.0
    tell(
        end_at,
        CallEnded(
            call_id=call_id,
            cause="normal",
            hangup_by="caller",
            duration_seconds=duration,
            talk_seconds=talk,
        ),
    )
    if routed_after_end:
        tell(end_at + 0.01, routed)


def bob_answers(teller: Teller, call_id: str) -> None:
    """Alice calls bob's extension; he answers after 5 s of ringing and they talk 60 s."""
    tell_agent_call(teller, call_id, "agent", "answered", answer_at=6.0, end_at=66.0)


def fold(teller: Teller, call_id: str) -> CallDetailRecord:
    envelopes = [e for e in teller.envelopes() if e["call_id"] == call_id]
    record = fold_call(call_id, envelopes)
    assert record is not None
    assert record.problems == ()
    return record


def test_an_answered_call_to_a_colleague_is_an_internal_call_with_its_talk_time() -> None:
    teller = Teller()
    bob_answers(teller, "c1")
    record = fold(teller, "c1")
    assert (record.direction, record.caller_id, record.did, record.trunk_id) == (
        "internal",
        "1001",
        "1002",
        "",
    )
    assert (record.disposition, record.agents, record.talk_seconds) == (
        "answered",
        ("alice", "bob"),
        60.0,
    )
    (segment,) = record.segments
    assert (segment.kind, segment.agent_id, segment.destination, segment.outcome) == (
        "internal",
        "alice",
        "bob",
        "answered",
    )
    assert (segment.ring_seconds, segment.talk_seconds) == (5.0, 60.0)
    assert (segment.started_at, segment.ended_at) == (
        START + timedelta(seconds=1),
        START + timedelta(seconds=66),
    )


def test_a_call_out_is_outbound_through_its_trunk_whichever_event_comes_first() -> None:
    for routed_after_end in (True, False):
        teller = Teller()
        tell_agent_call(
            teller,
            "c2",
            "external",
            "answered",
            answer_at=9.0,
            end_at=39.0,
            trunk_id="carrier",
            routed_after_end=routed_after_end,
        )
        record = fold(teller, "c2")
        assert (record.direction, record.trunk_id, record.did) == (
            "outbound",
            "carrier",
            "95551234",
        )
        assert (record.disposition, record.agents, record.talk_seconds) == (
            "answered",
            ("alice",),
            30.0,
        )
        (segment,) = record.segments
        assert (segment.kind, segment.destination, segment.outcome) == (
            "outbound",
            "5551234",
            "answered",
        )
        assert (segment.ring_seconds, segment.talk_seconds) == (8.0, 30.0)


def test_an_unanswered_colleague_and_a_feature_code_have_no_talk_time() -> None:
    teller = Teller()
    tell_agent_call(teller, "c3", "agent", "no_answer", end_at=33.0)
    tell_agent_call(teller, "c4", "feature_code", "done", end_at=3.0)
    unanswered, code = fold(teller, "c3"), fold(teller, "c4")
    assert (unanswered.disposition, unanswered.agents, unanswered.talk_seconds) == (
        "internal_no_answer",
        (),
        0.0,
    )
    assert unanswered.segments[0].ring_seconds == 32.0
    assert (code.direction, code.disposition, code.talk_seconds) == (
        "internal",
        "feature_code_done",
        0.0,
    )
    assert [(s.kind, s.outcome, s.destination) for s in code.segments] == [
        ("feature_code", "done", None)
    ]


async def test_agent_calls_are_written_as_cdrs_with_their_direction(
    database_url: str, tmp_path: Path
) -> None:
    service = StorageService(
        StorageSettings(database_url=database_url), node=NODE, config_dir=tmp_path
    )
    await service.start()
    teller = Teller()
    service.attach(teller.bus)
    bob_answers(teller, "int-1")
    tell_agent_call(teller, "out-1", "external", "busy", end_at=5.0)
    assert await service.writer.wait_idle(within=10)
    async with service.database.pool.acquire() as connection:
        calls = await connection.fetch(
            "SELECT call_id, direction, caller_id, did, disposition, talk_seconds, agents "
            "FROM cdrs ORDER BY call_id"
        )
        segments = await connection.fetch(
            "SELECT call_id, kind, agent_id, destination, outcome, ring_seconds, talk_seconds "
            "FROM cdr_segments ORDER BY call_id, segment_index"
        )
    await service.stop(grace=2)
    assert [tuple(v for _, v in row.items()) for row in calls] == [
        ("int-1", "internal", "1001", "1002", "answered", 60.0, ["alice", "bob"]),
        ("out-1", "outbound", "1001", "95551234", "outbound_busy", 0.0, []),
    ]
    assert [tuple(v for _, v in row.items()) for row in segments] == [
        ("int-1", "internal", "alice", "bob", "answered", 5.0, 60.0),
        ("out-1", "outbound", "alice", "5551234", "busy", 4.0, 0.0),
    ]
