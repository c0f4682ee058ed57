"""CDR rows in PostgreSQL: rebuilt from the stored events of a call, never edited in place.

A call's CDR row is written when its ``call.started`` is stored (open, ``ended_at`` null) and
rewritten, with all its segments, whenever events that complete or amend it are stored
(``call.ended``, later events of an ended call such as wrap-up, or a replay from the spool).
Because the fold always reads the call's whole event history in publication order, the result
does not depend on the order in which the events reached the database.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from cxos.storage.cdr import CallDetailRecord, fold_calls
from cxos.storage.database import Connection

_SELECT_CALL_EVENTS = """
SELECT envelope::text AS envelope FROM events
WHERE call_id = ANY($1::text[])
ORDER BY call_id, id
"""

_UPSERT_CDR = """
INSERT INTO cdrs (
    call_id, node, trunk_id, did, caller_id, caller_name, started_at, answered_at, ended_at,
    end_reason, hangup_by, disposition, duration_seconds, ivr_seconds, wait_seconds,
    talk_seconds, hold_seconds, wrap_up_seconds, segment_count, agents, problems, direction,
    updated_at
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
          $20, $21, $22, now())
ON CONFLICT (call_id) DO UPDATE SET
    node = EXCLUDED.node, trunk_id = EXCLUDED.trunk_id, did = EXCLUDED.did,
    caller_id = EXCLUDED.caller_id, caller_name = EXCLUDED.caller_name,
    started_at = EXCLUDED.started_at, answered_at = EXCLUDED.answered_at,
    ended_at = EXCLUDED.ended_at, end_reason = EXCLUDED.end_reason,
    hangup_by = EXCLUDED.hangup_by, disposition = EXCLUDED.disposition,
    duration_seconds = EXCLUDED.duration_seconds, ivr_seconds = EXCLUDED.ivr_seconds,
    wait_seconds = EXCLUDED.wait_seconds, talk_seconds = EXCLUDED.talk_seconds,
    hold_seconds = EXCLUDED.hold_seconds, wrap_up_seconds = EXCLUDED.wrap_up_seconds,
    segment_count = EXCLUDED.segment_count, agents = EXCLUDED.agents,
    problems = EXCLUDED.problems, direction = EXCLUDED.direction, updated_at = now()
"""

_INSERT_SEGMENT = """
INSERT INTO cdr_segments (
    call_id, segment_index, kind, started_at, ended_at, outcome, ivr_tree_id, queue_id,
    agent_id, destination, wait_seconds, ring_seconds, talk_seconds, hold_seconds,
    wrap_up_seconds, offers
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
"""

_CDR_COLUMNS = """
call_id, node, trunk_id, did, caller_id, caller_name, started_at, answered_at, ended_at,
end_reason, hangup_by, disposition, duration_seconds, ivr_seconds, wait_seconds, talk_seconds,
hold_seconds, wrap_up_seconds, segment_count, agents, direction
"""


async def call_envelopes(connection: Connection, call_ids: Collection[str]) -> list[dict[str, Any]]:
    """The stored envelopes of these calls, grouped by call, each call in publication order."""
    rows = await connection.fetch(_SELECT_CALL_EVENTS, list(call_ids))
    envelopes: list[dict[str, Any]] = [json.loads(row["envelope"]) for row in rows]
    return envelopes


async def closed_calls(connection: Connection, call_ids: Collection[str]) -> set[str]:
    """Those of ``call_ids`` whose CDR is already complete (a late event may amend it)."""
    if not call_ids:
        return set()
    rows = await connection.fetch(
        "SELECT call_id FROM cdrs WHERE call_id = ANY($1::text[]) AND ended_at IS NOT NULL",
        list(call_ids),
    )
    return {str(row["call_id"]) for row in rows}


async def rebuild_cdrs(connection: Connection, call_ids: Collection[str]) -> list[CallDetailRecord]:
    """Fold the stored events of ``call_ids`` and write their CDRs (calls not started: none)."""
    if not call_ids:
        return []
    records = list(fold_calls(await call_envelopes(connection, call_ids)).values())
    await write_cdrs(connection, records)
    return records


async def write_cdrs(connection: Connection, records: Iterable[CallDetailRecord]) -> None:
    records = list(records)
    if not records:
        return
    await connection.executemany(_UPSERT_CDR, [_cdr_row(record) for record in records])
    await connection.execute(
        "DELETE FROM cdr_segments WHERE call_id = ANY($1::text[])",
        [record.call_id for record in records],
    )
    segments = [
        (
            record.call_id,
            s.index,
            s.kind,
            s.started_at,
            s.ended_at,
            s.outcome,
            s.ivr_tree_id,
            s.queue_id,
            s.agent_id,
            s.destination,
            s.wait_seconds,
            s.ring_seconds,
            s.talk_seconds,
            s.hold_seconds,
            s.wrap_up_seconds,
            s.offers,
        )
        for record in records
        for s in record.segments
    ]
    if segments:
        await connection.executemany(_INSERT_SEGMENT, segments)


def _cdr_row(record: CallDetailRecord) -> tuple[Any, ...]:
    return (
        record.call_id,
        record.node,
        record.trunk_id,
        record.did,
        record.caller_id,
        record.caller_name,
        record.started_at,
        record.answered_at,
        record.ended_at,
        record.end_reason,
        record.hangup_by,
        record.disposition,
        record.duration_seconds,
        record.ivr_seconds,
        record.wait_seconds,
        record.talk_seconds,
        record.hold_seconds,
        record.wrap_up_seconds,
        len(record.segments),
        list(record.agents),
        list(record.problems),
        record.direction,
    )


async def open_calls(connection: Connection, node: str) -> list[CallDetailRecord]:
    """CDRs of calls that ``node`` started and never ended, folded from their events."""
    rows = await connection.fetch(
        "SELECT call_id FROM cdrs WHERE node = $1 AND ended_at IS NULL ORDER BY started_at", node
    )
    call_ids = [str(row["call_id"]) for row in rows]
    if not call_ids:
        return []
    records = fold_calls(await call_envelopes(connection, call_ids))
    return [records[call_id] for call_id in call_ids if call_id in records]


async def last_event_time(connection: Connection, node: str) -> datetime | None:
    """When ``node`` was last known alive: the time of its latest stored event."""
    value = await connection.fetchval("SELECT max(time) FROM events WHERE node = $1", node)
    return value if isinstance(value, datetime) else None


async def next_seq(connection: Connection, node: str) -> int:
    """The sequence number ``node``'s bus should continue from (1 for a new node)."""
    value = await connection.fetchval("SELECT max(seq) FROM events WHERE node = $1", node)
    return int(value) + 1 if value is not None else 1


async def fetch_cdrs(
    connection: Connection, since: datetime, until: datetime
) -> list[dict[str, Any]]:
    """CDR rows of calls started in ``[since, until)``, oldest first."""
    rows = await connection.fetch(
        f"SELECT {_CDR_COLUMNS} FROM cdrs WHERE started_at >= $1 AND started_at < $2 "
        "ORDER BY started_at, call_id",
        since,
        until,
    )
    return [dict(row.items()) for row in rows]


async def fetch_segments(
    connection: Connection, since: datetime, until: datetime
) -> list[dict[str, Any]]:
    """Segments of calls started in ``[since, until)``, call by call, in order."""
    rows = await connection.fetch(
        "SELECT s.* FROM cdr_segments s JOIN cdrs c USING (call_id) "
        "WHERE c.started_at >= $1 AND c.started_at < $2 "
        "ORDER BY c.started_at, s.call_id, s.segment_index",
        since,
        until,
    )
    return [dict(row.items()) for row in rows]
