"""Exports for reports and existing tools: CDRs and segments as CSV, events as a queue_log.

CSV follows RFC 4180 (header row, CRLF line ends, quoting where needed). Times are RFC 3339 UTC
with milliseconds; durations are seconds with three decimals; lists (the agents of a call) are
joined with ``;``; an absent value is an empty field.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from cxos.storage.cdr_store import fetch_cdrs, fetch_segments
from cxos.storage.database import Pool
from cxos.storage.queue_log import QUEUE_LOG_TYPES, QueueLog

CDR_COLUMNS = (
    "call_id",
    "node",
    "trunk_id",
    "did",
    "caller_id",
    "caller_name",
    "started_at",
    "answered_at",
    "ended_at",
    "end_reason",
    "hangup_by",
    "disposition",
    "duration_seconds",
    "ivr_seconds",
    "wait_seconds",
    "talk_seconds",
    "hold_seconds",
    "wrap_up_seconds",
    "segment_count",
    "agents",
    "direction",
)

SEGMENT_COLUMNS = (
    "call_id",
    "segment_index",
    "kind",
    "started_at",
    "ended_at",
    "outcome",
    "ivr_tree_id",
    "queue_id",
    "agent_id",
    "destination",
    "wait_seconds",
    "ring_seconds",
    "talk_seconds",
    "hold_seconds",
    "wrap_up_seconds",
    "offers",
)

_PAGE = 5000


def format_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        moment = value.astimezone(UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list | tuple):
        return ";".join(format_value(item) for item in value)
    return str(value)


def write_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], out: TextIO) -> int:
    """Write a header and one line per row; returns the number of rows."""
    writer = csv.writer(out)
    writer.writerow(columns)
    count = 0
    for row in rows:
        writer.writerow([format_value(row.get(column)) for column in columns])
        count += 1
    return count


async def export_cdrs_csv(pool: Pool, out: TextIO, *, since: datetime, until: datetime) -> int:
    """One line per call started in ``[since, until)``."""
    async with pool.acquire() as connection:
        rows = await fetch_cdrs(connection, since, until)
    return write_csv(rows, CDR_COLUMNS, out)


async def export_segments_csv(pool: Pool, out: TextIO, *, since: datetime, until: datetime) -> int:
    """One line per segment of the calls started in ``[since, until)``."""
    async with pool.acquire() as connection:
        rows = await fetch_segments(connection, since, until)
    return write_csv(rows, SEGMENT_COLUMNS, out)


async def export_queue_log(
    pool: Pool, out: TextIO, *, since: datetime, until: datetime, agent_prefix: str = ""
) -> int:
    """The queue_log lines of the events published in ``[since, until)``; returns the count.

    Calls that were already waiting or connected at ``since`` lack the state their first lines
    need (original position, hold time), so choose ``since`` at a quiet time, e.g. midnight.
    """
    fold = QueueLog(agent_prefix=agent_prefix)
    count = 0
    after: tuple[datetime, str] | None = None
    types = sorted(QUEUE_LOG_TYPES)
    while True:
        async with pool.acquire() as connection:
            rows = await connection.fetch(
                "SELECT time, id::text AS id, envelope::text AS envelope FROM events "
                "WHERE time >= $1 AND time < $2 AND type = ANY($3::text[]) "
                "AND ($4::timestamptz IS NULL OR (time, id) > ($4, $5::uuid)) "
                "ORDER BY time, id LIMIT $6",
                since,
                until,
                types,
                after[0] if after else None,
                after[1] if after else None,
                _PAGE,
            )
        for row in rows:
            for line in fold.apply(json.loads(row["envelope"])):
                out.write(line + "\n")
                count += 1
        if len(rows) < _PAGE:
            return count
        last = rows[-1]
        after = (last["time"], last["id"])
