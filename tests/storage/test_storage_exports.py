"""Exports: queue_log lines as Asterisk writes them, and CSV of CDRs and segments."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

from acd.events import AgentStateChanged
from config.settings import StorageSettings
from cxos.storage.exports import (
    CDR_COLUMNS,
    SEGMENT_COLUMNS,
    export_cdrs_csv,
    export_queue_log,
    export_segments_csv,
    format_value,
)
from cxos.storage.queue_log import QueueLog
from cxos.storage.service import StorageService
from tests.storage.storage_scenarios import (
    NODE,
    T0,
    Teller,
    tell_abandoned_call,
    tell_transfer_call,
)

E = int(T0)


def test_queue_log_of_a_transferred_call() -> None:
    teller = Teller()
    tell_transfer_call(teller)

    lines = list(QueueLog(agent_prefix="Agent/").lines(teller.envelopes()))

    assert lines == [
        f"{E + 14}|call-1|sales|NONE|ENTERQUEUE||+33611111111|3",
        f"{E + 39}|call-1|sales|Agent/a0|RINGNOANSWER|15000",
        f"{E + 44}|call-1|sales|Agent/a1|CONNECT|30|call-1|5",
        f"{E + 104}|call-1|sales|Agent/a1|TRANSFER|support|cxos|30|60|3",
        f"{E + 106}|call-1|support|NONE|ENTERQUEUE||+33611111111|1",
        f"{E + 126}|call-1|support|Agent/a2|CONNECT|20|call-1|4",
        f"{E + 186}|call-1|support|Agent/a2|COMPLETECALLER|20|60|1",
    ]


def test_queue_log_of_an_abandoned_call_and_agent_sessions() -> None:
    teller = Teller()
    teller.at(
        -60,
        AgentStateChanged(
            agent_id="a1",
            state="available",
            previous_state="logged_out",
            reason="login",
            seconds_in_previous=0,
        ),
    )
    tell_abandoned_call(teller)
    teller.at(
        50,
        AgentStateChanged(
            agent_id="a1",
            state="paused",
            previous_state="available",
            reason="lunch",
            seconds_in_previous=110,
        ),
    )
    teller.at(
        90,
        AgentStateChanged(
            agent_id="a1",
            state="logged_out",
            previous_state="paused",
            reason="logout",
            seconds_in_previous=40,
        ),
    )

    lines = list(QueueLog().lines(teller.envelopes()))

    assert lines == [
        f"{E - 60}|NONE|NONE|a1|AGENTLOGIN|a1",
        f"{E + 1}|call-2|sales|NONE|ENTERQUEUE||+33611111111|2",
        f"{E + 41}|call-2|sales|NONE|ABANDON|2|2|40",
        f"{E + 50}|NONE|NONE|a1|PAUSE|lunch",
        f"{E + 90}|NONE|NONE|a1|UNPAUSE|logout",
        f"{E + 90}|NONE|NONE|a1|AGENTLOGOFF|a1|150",
    ]


def test_queue_log_fields_cannot_break_the_line_format() -> None:
    fold = QueueLog()
    envelope = {
        "type": "queue.joined",
        "time": "2024-05-01T12:00:00.000Z",
        "call_id": "a|b\nc",
        "data": {"queue_id": "q", "position": 1},
    }
    assert fold.apply(envelope) == [f"{E}|a_b c|q|NONE|ENTERQUEUE|||1"]


def test_csv_values_are_rfc3339_and_fixed_decimals() -> None:
    moment = datetime(2024, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    assert format_value(moment) == "2024-05-01T12:00:00.250Z"
    assert format_value(moment.astimezone(UTC) + timedelta(hours=2)) == "2024-05-01T14:00:00.250Z"
    assert format_value(30.0) == "30.000"
    assert format_value(["a1", "a2"]) == "a1;a2"
    assert format_value(None) == ""


async def test_exports_read_what_the_server_stored(database_url: str, tmp_path: Path) -> None:
    service = StorageService(
        StorageSettings(database_url=database_url), node=NODE, config_dir=tmp_path
    )
    await service.start()
    teller = Teller()
    service.attach(teller.bus)
    tell_transfer_call(teller)
    tell_abandoned_call(teller, "call-2", start=300)
    assert await service.writer.wait_idle(within=10)
    since = datetime.fromtimestamp(T0 - 1, UTC)
    until = datetime.fromtimestamp(T0 + 3600, UTC)

    cdrs, segments, queue_log = io.StringIO(), io.StringIO(), io.StringIO()
    pool = service.database.pool
    assert await export_cdrs_csv(pool, cdrs, since=since, until=until) == 2
    assert await export_segments_csv(pool, segments, since=since, until=until) == 7
    assert await export_queue_log(pool, queue_log, since=since, until=until) == 9
    await service.stop(grace=1)

    calls = list(csv.DictReader(io.StringIO(cdrs.getvalue())))
    assert tuple(calls[0]) == CDR_COLUMNS
    assert [(c["call_id"], c["disposition"], c["talk_seconds"], c["agents"]) for c in calls] == [
        ("call-1", "answered", "110.000", "a1;a2"),
        ("call-2", "queue_abandoned", "0.000", ""),
    ]
    assert calls[0]["started_at"] == "2024-05-01T12:00:00.000Z"
    assert cdrs.getvalue().startswith(",".join(CDR_COLUMNS) + "\r\n")
    rows = list(csv.DictReader(io.StringIO(segments.getvalue())))
    assert tuple(rows[0]) == SEGMENT_COLUMNS
    assert [(r["call_id"], r["segment_index"], r["kind"], r["outcome"]) for r in rows] == [
        ("call-1", "1", "ivr", "queue"),
        ("call-1", "2", "queue", "answered"),
        ("call-1", "3", "agent", "transferred"),
        ("call-1", "4", "transfer", "connected"),
        ("call-1", "5", "queue", "answered"),
        ("call-1", "6", "agent", "completed"),
        ("call-2", "1", "queue", "abandoned"),
    ]
    expected = [*QueueLog().lines(teller.envelopes())]
    assert queue_log.getvalue().splitlines() == expected
