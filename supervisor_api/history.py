"""History beyond the in-memory projection: KPIs per interval and call detail records, read from
the event log and the CDR tables in PostgreSQL (docs/storage.md).

KPIs are not written twice. The events of each interval are read back from ``events`` and fed
to the same `compute_kpis` as the live figures (docs/metrics.md), so a formula lives in one
place. What `compute_kpis` needs beyond the interval's own events is read with them:

- each agent's last state change before the interval, however long ago (the state it was in
  at the start: an agent logged in for days is still listed), and the calls answered in the
  day before it (which queue a call whose talk ends in the interval came from);
- for an agent still in wrap-up at the end of an interval, its next state change (a handled
  call's handle time includes the wrap-up that followed, even after the interval).

An interval is split into hour or day buckets (days and hours of the configured time zone),
read one bucket at a time: the cost grows with the number of events, and memory holds one
bucket's events. Only the event types the KPIs read are fetched (`KPI_EVENT_TYPES`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import itertools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final
from zoneinfo import ZoneInfo

from config.api import QueueTargets
from cxos.envelope import format_time
from cxos.storage.agent_history import AGENTS_WITH_STATES
from cxos.storage.database import Connection, Pool
from supervisor_api.kpi import KPI_EVENT_TYPES, EventRecord, KpiReport, compute_kpis

#: How far before an interval the answer of a call still talking in it is looked for, and after
#: it the end of a wrap-up still going on at its end.
CONTEXT_SECONDS: Final = 86_400.0
#: Most buckets one request may ask for (a month of hours is 744).
MAX_BUCKETS: Final = 1000
#: Most CDRs in one page of ``/api/history/calls``.
MAX_PAGE: Final = 1000

_UTC = datetime.UTC

_RANGE = """
SELECT extract(epoch FROM time)::float8 AS t, seq, type, (envelope -> 'data')::text AS data
FROM events
WHERE time >= $1 AND time < $2 AND type = ANY($3::text[])
ORDER BY time, node, seq
"""

# Each agent's last state change before $2, however long ago (one index probe per agent),
# unless it was a logout of an agent not in $3; and every call answered from $1 to $2.
_CONTEXT = (
    AGENTS_WITH_STATES
    + """
SELECT t, seq, type, data FROM (
    (SELECT latest.t, latest.seq, latest.type, latest.data, latest.node
     FROM agents AS a
     CROSS JOIN LATERAL (
         SELECT extract(epoch FROM e.time)::float8 AS t, e.seq, e.type,
                (e.envelope -> 'data')::text AS data, e.node,
                e.envelope #>> '{data,state}' AS state
         FROM events AS e
         WHERE e.type = 'agent.state_changed' AND e.envelope #>> '{data,agent_id}' = a.agent_id
           AND e.time < $2
         ORDER BY e.time DESC, e.seq DESC
         LIMIT 1
     ) AS latest
     WHERE a.agent_id IS NOT NULL
       AND (latest.state <> 'logged_out' OR a.agent_id = ANY($3::text[])))
    UNION ALL
    (SELECT extract(epoch FROM time)::float8, seq, type, (envelope -> 'data')::text, node
     FROM events
     WHERE type = 'agent.answered' AND time >= $1 AND time < $2)
) AS context
ORDER BY t, node, seq
"""
)

# The first state change of each named agent from $1 on (the events_type_time index is read
# forward from $1 for each agent and stops at its first row).
_NEXT_STATES = """
SELECT next.t, next.seq, next.type, next.data
FROM unnest($3::text[]) AS agent(agent_id)
CROSS JOIN LATERAL (
    SELECT extract(epoch FROM time)::float8 AS t, seq, type, (envelope -> 'data')::text AS data
    FROM events
    WHERE type = 'agent.state_changed' AND time >= $1 AND time < $2
      AND envelope #>> '{data,agent_id}' = agent.agent_id
    ORDER BY time, node, seq
    LIMIT 1
) AS next
ORDER BY next.t, next.seq
"""

_CDRS = """
SELECT call_id, node, trunk_id, did, caller_id, caller_name, started_at, answered_at, ended_at,
       end_reason, hangup_by, disposition, duration_seconds, ivr_seconds, wait_seconds,
       talk_seconds, hold_seconds, wrap_up_seconds, segment_count, agents
FROM cdrs AS c
WHERE started_at >= $1 AND started_at < $2
  AND (started_at, call_id) > ($3, $4)
  AND ($5::text IS NULL OR $5 = ANY(agents))
  AND ($6::text IS NULL OR EXISTS (
        SELECT 1 FROM cdr_segments AS s WHERE s.call_id = c.call_id AND s.queue_id = $6))
ORDER BY started_at, call_id
LIMIT $7
"""

_SEGMENTS = """
SELECT call_id, segment_index, kind, started_at, ended_at, outcome, ivr_tree_id, queue_id,
       agent_id, destination, wait_seconds, ring_seconds, talk_seconds, hold_seconds,
       wrap_up_seconds, offers
FROM cdr_segments
WHERE call_id = ANY($1::text[])
ORDER BY call_id, segment_index
"""


class Granularity(StrEnum):
    """How an interval is split: the whole of it, or one bucket per hour or day."""

    NONE = "none"
    HOUR = "hour"
    DAY = "day"


class HistoryRangeError(ValueError):
    """An interval the history cannot be asked for (too long, too many buckets)."""


def buckets(
    start: float, end: float, granularity: Granularity, zone: ZoneInfo
) -> list[tuple[float, float]]:
    """``[start, end)`` cut at each hour or midnight of ``zone`` (the first and last buckets
    may be partial)."""
    if granularity is Granularity.NONE or start >= end:
        return [(start, end)]
    cuts = [start]
    local = datetime.datetime.fromtimestamp(start, zone)
    if granularity is Granularity.HOUR:
        boundary = local.replace(minute=0, second=0, microsecond=0)
    else:
        boundary = local.replace(hour=0, minute=0, second=0, microsecond=0)
    while True:
        boundary = _next_boundary(boundary, granularity, zone)
        at = boundary.timestamp()
        if at >= end:
            break
        cuts.append(at)
        if len(cuts) > MAX_BUCKETS:
            raise HistoryRangeError(f"more than {MAX_BUCKETS} buckets: choose a larger interval")
    cuts.append(end)
    return list(itertools.pairwise(cuts))


def _next_boundary(
    local: datetime.datetime, granularity: Granularity, zone: ZoneInfo
) -> datetime.datetime:
    if granularity is Granularity.HOUR:
        # In UTC, so that a daylight-saving change gives a 23- or 25-bucket day, not a skip.
        utc = local.astimezone(_UTC) + datetime.timedelta(hours=1)
        return utc.astimezone(zone)
    # Calendar days: the next local midnight, whatever the length of the day.
    day = (local.replace(tzinfo=None) + datetime.timedelta(days=1)).date()
    return datetime.datetime.combine(day, datetime.time(), tzinfo=zone)


def _instant(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, _UTC)


def _records(rows: Iterable[Any]) -> list[EventRecord]:
    return [
        EventRecord(seq=row["seq"], time=row["t"], type=row["type"], data=json.loads(row["data"]))
        for row in rows
    ]


@dataclass(slots=True)
class _Context:
    """What the buckets already read tell the next one: each agent's last state change, and
    the calls answered within `CONTEXT_SECONDS`. An agent logged out before a bucket and not
    in `known` (configured) has no row in that bucket unless an event in it names them."""

    known: frozenset[str]
    states: dict[str, EventRecord] = field(default_factory=dict)
    answered: dict[str, EventRecord] = field(default_factory=dict)

    def fold(self, records: Iterable[EventRecord], horizon: float) -> None:
        for record in records:
            if record.type == "agent.state_changed":
                agent_id = record.data.get("agent_id")
                if isinstance(agent_id, str):
                    self.states[agent_id] = record
            elif record.type == "agent.answered":
                call_id = record.data.get("call_id")
                if isinstance(call_id, str):
                    self.answered[call_id] = record
        # Insertion order is time order: the oldest answers go first.
        for call_id in [c for c, r in self.answered.items() if r.time < horizon]:
            del self.answered[call_id]

    def records(self) -> list[EventRecord]:
        states = [
            r
            for agent_id, r in self.states.items()
            if agent_id in self.known or r.data.get("state") != "logged_out"
        ]
        both = [*states, *self.answered.values()]
        return sorted(both, key=lambda r: (r.time, r.seq))

    def wrapping_up(self) -> list[str]:
        return sorted(a for a, r in self.states.items() if r.data.get("state") == "wrap_up")


async def kpi_history(
    pool: Pool,
    spans: Sequence[tuple[float, float]],
    *,
    now: float,
    targets_for: Callable[[str], QueueTargets],
    known_queues: Iterable[str] = (),
    known_agents: Iterable[str] = (),
) -> list[KpiReport]:
    """KPIs of each ``[start, end)`` of ``spans`` (contiguous, in order) from the event log.

    Each bucket lists every known queue and agent, and every other agent logged in at some
    time of it (whenever they logged in)."""
    queues = list(known_queues)
    agents = sorted(known_agents)
    reports: list[KpiReport] = []
    if not spans:
        return reports
    async with pool.acquire() as connection:
        first = spans[0][0]
        context_rows = await connection.fetch(
            _CONTEXT, _instant(first - CONTEXT_SECONDS), _instant(first), agents
        )
        context = _Context(known=frozenset(agents))
        context.fold(await asyncio.to_thread(_records, context_rows), first - CONTEXT_SECONDS)
        for start, end in spans:
            rows = await connection.fetch(
                _RANGE, _instant(start), _instant(end), sorted(KPI_EVENT_TYPES)
            )
            inside = await asyncio.to_thread(_records, rows)
            before = context.records()
            context.fold(inside, end - CONTEXT_SECONDS)
            after = await _next_states(connection, end, context.wrapping_up())
            records = [*before, *inside, *after]
            reports.append(
                await asyncio.to_thread(
                    compute_kpis, records, start, end, now, targets_for, queues, agents
                )
            )
    return reports


async def _next_states(
    connection: Connection, end: float, agents: Sequence[str]
) -> list[EventRecord]:
    """How the wrap-ups still going on at ``end`` ended (their time counts in handle time)."""
    if not agents:
        return []
    rows = await connection.fetch(
        _NEXT_STATES, _instant(end), _instant(end + CONTEXT_SECONDS), list(agents)
    )
    return _records(rows)


# --- call detail records -----------------------------------------------------------------------


class CursorError(ValueError):
    """A paging cursor this server did not give out."""


def encode_cursor(started_at: datetime.datetime, call_id: str) -> str:
    """An opaque position after the CDR (``started_at``, ``call_id``): the next page's start."""
    micros = round(started_at.timestamp() * 1_000_000)
    raw = f"{micros}|{call_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime.datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        micros, call_id = raw.split("|", 1)
        return _instant(int(micros) / 1_000_000), call_id
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError, OSError):
        raise CursorError("not a cursor given out by this server") from None


def _time(value: datetime.datetime | None) -> str | None:
    return None if value is None else format_time(value.timestamp())


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _segment_json(row: Any) -> dict[str, Any]:
    return {
        "index": row["segment_index"],
        "kind": row["kind"],
        "started_at": _time(row["started_at"]),
        "ended_at": _time(row["ended_at"]),
        "outcome": row["outcome"],
        "ivr_tree_id": row["ivr_tree_id"],
        "queue_id": row["queue_id"],
        "agent_id": row["agent_id"],
        "destination": row["destination"],
        "wait_seconds": _seconds(row["wait_seconds"]),
        "ring_seconds": _seconds(row["ring_seconds"]),
        "talk_seconds": _seconds(row["talk_seconds"]),
        "hold_seconds": _seconds(row["hold_seconds"]),
        "wrap_up_seconds": _seconds(row["wrap_up_seconds"]),
        "offers": row["offers"],
    }


def _cdr_json(row: Any, segments: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "call_id": row["call_id"],
        "node": row["node"],
        "trunk_id": row["trunk_id"],
        "did": row["did"],
        "caller_id": row["caller_id"],
        "caller_name": row["caller_name"],
        "started_at": _time(row["started_at"]),
        "answered_at": _time(row["answered_at"]),
        "ended_at": _time(row["ended_at"]),
        "end_reason": row["end_reason"],
        "hangup_by": row["hangup_by"],
        "disposition": row["disposition"],
        "duration_seconds": _seconds(row["duration_seconds"]),
        "ivr_seconds": _seconds(row["ivr_seconds"]),
        "wait_seconds": _seconds(row["wait_seconds"]),
        "talk_seconds": _seconds(row["talk_seconds"]),
        "hold_seconds": _seconds(row["hold_seconds"]),
        "wrap_up_seconds": _seconds(row["wrap_up_seconds"]),
        "agents": list(row["agents"]),
        "segments": segments,
    }


@dataclass(frozen=True, slots=True)
class CdrPage:
    calls: list[dict[str, Any]]
    next_cursor: str | None


async def cdr_page(
    pool: Pool,
    start: float,
    end: float,
    *,
    limit: int,
    cursor: str | None = None,
    agent_id: str | None = None,
    queue_id: str | None = None,
) -> CdrPage:
    """CDRs of calls started in ``[start, end)``, oldest first, ``limit`` at a time."""
    after_time, after_id = (
        decode_cursor(cursor) if cursor is not None else (_instant(start - 1), "")
    )
    async with pool.acquire() as connection:
        rows = await connection.fetch(
            _CDRS,
            _instant(start),
            _instant(end),
            after_time,
            after_id,
            agent_id,
            queue_id,
            limit + 1,
        )
        page = rows[:limit]
        segment_rows = await connection.fetch(_SEGMENTS, [row["call_id"] for row in page])
    segments: dict[str, list[dict[str, Any]]] = {}
    for row in segment_rows:
        segments.setdefault(row["call_id"], []).append(_segment_json(row))
    calls = [_cdr_json(row, segments.get(row["call_id"], [])) for row in page]
    last = page[-1] if len(rows) > limit else None
    return CdrPage(
        calls=calls,
        next_cursor=None if last is None else encode_cursor(last["started_at"], last["call_id"]),
    )
