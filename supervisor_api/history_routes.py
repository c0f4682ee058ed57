"""``/api/history/*``: KPIs per hour or day and call detail records from PostgreSQL.

The live ``/api/kpis/*`` answer from the events kept in memory; these answer for any interval
(up to a year) from the event log and the CDR tables, with the same formulas and the same row
shapes (supervisor_api/history.py says how). Their part of the OpenAPI document is at the end.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from cxos.envelope import format_time
from cxos.storage.database import Pool
from supervisor_api.auth import Access, access
from supervisor_api.errors import ApiError, Handler, bad_input
from supervisor_api.history import (
    MAX_PAGE,
    CursorError,
    Granularity,
    HistoryRangeError,
    buckets,
    cdr_page,
    kpi_history,
)
from supervisor_api.rest import AGENT_KPIS, QUEUE_KPIS, KpiKind, interval, snapshot_state
from supervisor_api.schema import (
    COUNT,
    INTERVAL,
    OPTIONAL_SECONDS,
    OPTIONAL_TIME,
    TEXT,
    TIME,
    Schema,
    array,
    nullable,
    obj,
    query,
    ref,
    responses,
)
from supervisor_api.state import ApiState

#: CDRs in a page unless ``limit`` says otherwise.
DEFAULT_PAGE = 100


def _pool(state: ApiState) -> Pool:
    pool = state.deps.history
    if pool is None:
        raise ApiError(404, "history is not available on this server (no database)")
    return pool


def _granularity(request: web.Request) -> Granularity:
    raw = request.query.get("interval", Granularity.NONE.value)
    try:
        return Granularity(raw)
    except ValueError:
        choices = ", ".join(g.value for g in Granularity)
        raise bad_input("query.interval", f"must be one of {choices}") from None


def _kpi_history(kind: KpiKind) -> Handler:
    @access(Access.SUPERVISOR)
    async def handler(request: web.Request) -> web.Response:
        state = snapshot_state(request)
        start, end = interval(request, state, "interval", kind.id_name)
        granularity = _granularity(request)
        wanted = request.query.get(kind.id_name)
        if wanted is not None and not wanted:
            raise bad_input(f"query.{kind.id_name}", "must not be empty")
        try:
            spans = buckets(start, end, granularity, ZoneInfo(state.settings.timezone))
        except HistoryRangeError as exc:
            raise bad_input("query.interval", str(exc)) from None
        reports = await kpi_history(
            _pool(state),
            spans,
            now=state.now(),
            targets_for=state.settings.targets_for,
            known_queues=state.projection.queues,
            known_agents=state.configured_agents,
        )
        return web.json_response(
            {
                "from": format_time(start),
                "to": format_time(end),
                "interval": granularity.value,
                "buckets": [
                    {
                        "from": format_time(report.start),
                        "to": format_time(report.end),
                        kind.plural: kind.rows(report, wanted),
                    }
                    for report in reports
                ],
            }
        )

    return handler


queue_history = _kpi_history(QUEUE_KPIS)
agent_history = _kpi_history(AGENT_KPIS)


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise bad_input("query.limit", f"must be an integer from 1 to {MAX_PAGE}")
    return int(raw)


def _text(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is not None and not value:
        raise bad_input(f"query.{name}", "must not be empty")
    return value


@access(Access.SUPERVISOR)
async def call_history(request: web.Request) -> web.Response:
    state = snapshot_state(request)
    start, end = interval(request, state, "limit", "cursor", "agent_id", "queue_id")
    limit = _limit(request)
    try:
        page = await cdr_page(
            _pool(state),
            start,
            end,
            limit=limit,
            cursor=_text(request, "cursor"),
            agent_id=_text(request, "agent_id"),
            queue_id=_text(request, "queue_id"),
        )
    except CursorError as exc:
        raise bad_input("query.cursor", str(exc)) from None
    body: dict[str, Any] = {
        "from": format_time(start),
        "to": format_time(end),
        "calls": page.calls,
        "next_cursor": page.next_cursor,
    }
    return web.json_response(body)


# --- the OpenAPI description of these routes (supervisor_api/openapi.py serves the whole) -------

_CDR_SECONDS = ("wait_seconds", "ring_seconds", "talk_seconds", "hold_seconds", "wrap_up_seconds")

HISTORY_SCHEMAS: dict[str, Schema] = {
    "CdrSegment": obj(
        {
            "index": COUNT,
            "kind": TEXT,
            "started_at": TIME,
            "ended_at": OPTIONAL_TIME,
            "outcome": nullable("string"),
            "ivr_tree_id": nullable("string"),
            "queue_id": nullable("string"),
            "agent_id": nullable("string"),
            "destination": nullable("string"),
            **{k: OPTIONAL_SECONDS for k in _CDR_SECONDS},
            "offers": COUNT,
        }
    ),
    "Cdr": obj(
        {
            **{k: TEXT for k in ("call_id", "node", "trunk_id", "did", "caller_id", "caller_name")},
            "started_at": TIME,
            "answered_at": OPTIONAL_TIME,
            "ended_at": OPTIONAL_TIME,
            "end_reason": nullable("string"),
            "hangup_by": nullable("string"),
            "disposition": TEXT,
            **{
                k: OPTIONAL_SECONDS
                for k in ("duration_seconds", "ivr_seconds", *_CDR_SECONDS)
                if k != "ring_seconds"
            },
            "agents": array(TEXT),
            "segments": array(ref("CdrSegment")),
        }
    ),
}


def _kpi_history_path(summary: str, kind: KpiKind, id_text: str, item: str) -> Schema:
    bucket = obj({"from": TIME, "to": TIME, kind.plural: array(ref(item))})
    granularities = {"enum": [g.value for g in Granularity]}
    return {
        "get": {
            "summary": summary,
            "parameters": [
                *INTERVAL,
                query(
                    "interval",
                    "One bucket per hour or per day of api.yaml's time zone (default: none)",
                    granularities,
                ),
                query(kind.id_name, id_text),
            ],
            "responses": responses(
                "KPIs per bucket",
                obj(
                    {"from": TIME, "to": TIME, "interval": granularities, "buckets": array(bucket)}
                ),
                "400",
                "404",
            ),
        }
    }


def history_paths() -> Schema:
    """The ``/api/history/*`` paths of the OpenAPI document."""
    return {
        "/api/history/queues": _kpi_history_path(
            "Queue KPIs per hour or day from the event log (docs/metrics.md)",
            QUEUE_KPIS,
            "Only this queue",
            "QueueKpis",
        ),
        "/api/history/agents": _kpi_history_path(
            "Agent KPIs per hour or day from the event log (docs/metrics.md): every configured "
            "agent, and every other agent logged in at some time of the bucket",
            AGENT_KPIS,
            "Only this agent",
            "AgentKpis",
        ),
        "/api/history/calls": {
            "get": {
                "summary": "Call detail records of calls started in the interval, oldest first",
                "parameters": [
                    *INTERVAL,
                    query(
                        "limit",
                        f"Records per page (default {DEFAULT_PAGE})",
                        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                    ),
                    query("cursor", "`next_cursor` of the previous page"),
                    query("agent_id", "Only calls this agent took part in"),
                    query("queue_id", "Only calls that waited in this queue"),
                ],
                "responses": responses(
                    "A page of CDRs",
                    obj(
                        {
                            "from": TIME,
                            "to": TIME,
                            "calls": array(ref("Cdr")),
                            "next_cursor": nullable("string"),
                        }
                    ),
                    "400",
                    "404",
                ),
            }
        },
    }
