"""Read-only REST handlers: live snapshots of queues, agents and calls, and KPIs.

Every snapshot first folds all events published so far (``ApiState.catch_up``), so what a client
reads includes every event published before its request. Times are RFC 3339 UTC strings;
durations are seconds; percentages are 0–100, or null when there is nothing to measure.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiohttp import web

from cxos.envelope import format_time
from supervisor_api.auth import PRINCIPAL, Access, access
from supervisor_api.errors import ApiError, Handler, bad_input
from supervisor_api.kpi import AgentTally, KpiReport, QueueReport, compute_kpis
from supervisor_api.projection import AgentView, CallView, LiveProjection, QueueView
from supervisor_api.state import STATE, ApiState

Json = dict[str, Any]
V = TypeVar("V")

#: 9999-12-31T23:59:59Z: RFC 3339 §5.6 has four-digit years; earlier than 1970 is no event time.
LATEST_INSTANT = 253_402_300_799.0


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _time(value: float | None) -> str | None:
    return None if value is None else format_time(value)


def queue_json(state: ApiState, queue: QueueView, now: float, with_calls: bool = True) -> Json:
    targets = state.settings.targets_for(queue.queue_id)
    recent = queue.tally(now - state.settings.wallboard.recent_window_seconds, now + 1, targets)
    today = queue.tally(state.day_start(now), now + 1, targets)
    body: Json = {
        "queue_id": queue.queue_id,
        "waiting": len(queue.waiting),
        "longest_wait_seconds": round(queue.longest_wait(now), 3),
        "callbacks_waiting": len(queue.callbacks_waiting),
        "agents": state.projection.agents_by_state(targets.agents or None),
        "service_level": {
            "threshold_seconds": targets.service_level_seconds,
            "target_percent": targets.service_level_percent,
            "now": _round(recent.service_level),
            "today": _round(today.service_level),
            "offered_today": today.offered,
            "answered_today": today.answered,
            "abandoned_today": today.abandoned,
        },
    }
    if with_calls:
        body["calls"] = [
            {
                "call_id": w.call_id,
                "position": w.position,
                "priority": w.priority,
                "wait_seconds": round(max(0.0, now - w.joined_at), 3),
                "joined_at": format_time(w.joined_at),
                "offered_to": w.offered_to,
            }
            for w in queue.waiting_in_order()
        ]
    return body


def agent_json(agent: AgentView, now: float) -> Json:
    return {
        "agent_id": agent.agent_id,
        "state": agent.state,
        "since": _time(agent.since),
        "time_in_state_seconds": None
        if agent.since is None
        else round(max(0.0, now - agent.since), 3),
        "reason": agent.reason,
        "call_id": agent.call_id,
        "calls_handled": agent.calls_handled,
        "talk_seconds": round(agent.talk_seconds, 3),
        "wrap_up_seconds": round(agent.wrap_up_seconds, 3),
        "pause_seconds": round(agent.pause_seconds, 3),
    }


def monitor_json(state: ApiState, call: CallView, now: float) -> Json | None:
    """The supervisor on ``call``: who (the agent entry whose phone it is), how, since when."""
    monitor = call.monitor
    if monitor is None:
        return None
    return {
        "call_id": call.call_id,
        "agent_id": call.agent_id,
        "supervisor_id": state.deps.phones.get(monitor.sip_user),
        "sip_user": monitor.sip_user,
        "mode": monitor.mode,
        "since": format_time(monitor.since),
        "seconds": round(max(0.0, now - monitor.since), 3),
    }


def call_json(state: ApiState, call: CallView, now: float) -> Json:
    return {
        "call_id": call.call_id,
        "state": call.state,
        "started_at": format_time(call.started_at),
        "duration_seconds": round(max(0.0, now - call.started_at), 3),
        "caller_id": call.caller_id,
        "did": call.did,
        "trunk_id": call.trunk_id,
        "queue_id": call.queue_id,
        "agent_id": call.agent_id,
        "segments": [
            {
                "kind": s.kind,
                "started_at": format_time(s.started_at),
                "ended_at": _time(s.ended_at),
                "duration_seconds": round(max(0.0, (s.ended_at or now) - s.started_at), 3),
                "queue_id": s.queue_id,
                "agent_id": s.agent_id,
                "outcome": s.outcome,
            }
            for s in call.segments
        ],
        "monitor": monitor_json(state, call, now),
    }


def snapshot_state(request: web.Request) -> ApiState:
    state = request.app[STATE]
    state.catch_up()
    return state


def only(request: web.Request, *allowed: str) -> None:
    for name in request.query:
        if name not in allowed:
            raise bad_input(f"query.{name}", "unknown parameter")


@dataclass(frozen=True, slots=True)
class _View(Generic[V]):
    """One kind of live object: where the projection keeps it and how it is shown."""

    plural: str
    id_name: str
    table: Callable[[LiveProjection], Mapping[str, V]]
    order: Callable[[V], Any]
    render: Callable[[ApiState, V, float], Json]
    missing: str


def _list(view: _View[V]) -> Handler:
    @access(Access.SUPERVISOR)
    async def handler(request: web.Request) -> web.Response:
        only(request)
        state = snapshot_state(request)
        now = state.now()
        items = sorted(view.table(state.projection).values(), key=view.order)
        return web.json_response({view.plural: [view.render(state, i, now) for i in items]})

    return handler


def _get(view: _View[V], rule: Access) -> Handler:
    @access(rule)
    async def handler(request: web.Request) -> web.Response:
        only(request)
        state = snapshot_state(request)
        item = view.table(state.projection).get(request.match_info[view.id_name])
        if item is None:
            raise ApiError(404, view.missing, field=f"path.{view.id_name}")
        return web.json_response(view.render(state, item, state.now()))

    return handler


_QUEUES: _View[QueueView] = _View(
    "queues",
    "queue_id",
    lambda p: p.queues,
    lambda q: q.queue_id,
    queue_json,
    "no such queue",
)
_AGENTS: _View[AgentView] = _View(
    "agents",
    "agent_id",
    lambda p: p.agents,
    lambda a: a.agent_id,
    lambda state, a, now: agent_json(a, now),
    "no such agent",
)
_CALLS: _View[CallView] = _View(
    "calls",
    "call_id",
    lambda p: p.calls,
    lambda c: (c.started_at, c.call_id),
    call_json,
    "no such call in progress",
)
list_queues = _list(_QUEUES)
get_queue = _get(_QUEUES, Access.SUPERVISOR)
list_agents = _list(_AGENTS)
get_agent = _get(_AGENTS, Access.AGENT_SELF)
list_calls = _list(_CALLS)
get_call = _get(_CALLS, Access.SUPERVISOR)


@access(Access.SUPERVISOR)
async def wallboard(request: web.Request) -> web.Response:
    only(request)
    state = snapshot_state(request)
    now = state.now()
    board = state.settings.wallboard
    queues = sorted(state.projection.queues.values(), key=lambda q: q.queue_id)
    agents = sorted(state.projection.agents.values(), key=lambda a: a.agent_id)
    return web.json_response(
        {
            "time": format_time(now),
            "node": state.deps.node,
            "last_seq": state.projection.last_seq,
            "thresholds": {
                "waiting": board.waiting.model_dump(),
                "longest_wait_seconds": board.longest_wait.model_dump(),
                "service_level_shortfall": board.service_level_shortfall.model_dump(),
                "state_seconds": board.state_seconds.model_dump(),
            },
            "queues": [queue_json(state, q, now, with_calls=False) for q in queues],
            "agents": [agent_json(a, now) for a in agents],
            "monitoring": [
                monitor
                for call in sorted(state.projection.calls.values(), key=lambda c: c.call_id)
                if (monitor := monitor_json(state, call, now)) is not None
            ],
        }
    )


def instant(request: web.Request, name: str, default: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = datetime.datetime.fromisoformat(raw)
    except ValueError:
        raise bad_input(f"query.{name}", "must be an RFC 3339 date-time") from None
    if value.tzinfo is None:
        raise bad_input(f"query.{name}", "must include a time zone offset or Z")
    try:
        instant = value.timestamp()
    except (OverflowError, OSError, ValueError):
        instant = -1.0
    if not 0 <= instant <= LATEST_INSTANT:
        raise bad_input(f"query.{name}", "must be between 1970-01-01 and 9999-12-31 UTC")
    return instant


def interval(request: web.Request, state: ApiState, *names: str) -> tuple[float, float]:
    """``from``/``to`` of the query (default: today so far); ``names``: the other parameters
    the route takes."""
    only(request, "from", "to", *names)
    now = state.now()
    end = instant(request, "to", now)
    start = instant(request, "from", state.day_start(min(now, end)))
    if start > end:
        raise bad_input("query.from", "must not be after 'to'")
    return start, end


def _coverage(state: ApiState, start: float) -> Json:
    journal = state.projection.journal
    full = journal.maxlen is not None and len(journal) == journal.maxlen
    oldest = journal[0].time if journal else None
    return {
        "complete": not full or (oldest is not None and oldest <= start),
        "events_from": _time(oldest) if full else None,
    }


def queue_kpi_json(queue_id: str, report: QueueReport) -> Json:
    tally, handling, callbacks = report.tally, report.handling, report.callbacks
    return {
        "queue_id": queue_id,
        "offered": tally.offered,
        "answered": tally.answered,
        "abandoned": tally.abandoned,
        "short_abandoned": tally.short_abandoned,
        "timeouts": tally.timeouts,
        "callbacks_chosen": tally.callbacks_chosen,
        "transferred_out": tally.transferred_out,
        "answered_within_sl": tally.answered_within_sl,
        "answered_within_sl2": tally.answered_within_sl2,
        "service_level": _round(tally.service_level),
        "service_level2": _round(tally.service_level2),
        "sl_threshold_seconds": tally.targets.service_level_seconds,
        "sl2_threshold_seconds": tally.targets.service_level2_seconds,
        "asa_seconds": _round(tally.asa),
        "abandon_rate": _round(tally.abandon_rate),
        "longest_answer_wait_seconds": round(tally.longest_answer_wait, 3),
        "handled": handling.handled,
        "aht_seconds": _round(handling.aht),
        "ring_no_answer_rate": _round(handling.ring_no_answer_rate),
        "transfer_rate": _round(handling.transfer_rate),
        "callbacks_requested": callbacks.requested,
        "callbacks_completed": callbacks.completed,
        "callbacks_failed": callbacks.failed,
    }


def agent_kpi_json(agent_id: str, tally: AgentTally) -> Json:
    handling = tally.handling
    return {
        "agent_id": agent_id,
        "handled": handling.handled,
        "aht_seconds": _round(handling.aht),
        "talk_seconds": round(handling.talk_seconds, 3),
        "wrap_up_seconds": round(handling.wrap_up_seconds, 3),
        "occupancy": _round(tally.occupancy),
        "utilisation": _round(tally.utilisation),
        "offers": handling.offers,
        "no_answers": handling.no_answers,
        "rejections": handling.rejections,
        "ring_no_answer_rate": _round(handling.ring_no_answer_rate),
        "transfers": handling.transfers,
        "transfer_rate": _round(handling.transfer_rate),
        "seconds_by_state": {k: round(v, 3) for k, v in sorted(tally.seconds_by_state.items())},
    }


def _report(state: ApiState, start: float, end: float) -> KpiReport:
    return compute_kpis(
        state.projection.journal,
        start,
        end,
        state.now(),
        state.settings.targets_for,
        known_queues=state.projection.queues,
        known_agents=state.configured_agents,
    )


def queue_rows(report: KpiReport, wanted: str | None) -> list[Json]:
    return [
        queue_kpi_json(q, r)
        for q, r in sorted(report.queues.items())
        if wanted is None or q == wanted
    ]


def agent_rows(report: KpiReport, wanted: str | None) -> list[Json]:
    return [agent_kpi_json(a, t) for a, t in sorted(report.agents.items()) if wanted in {None, a}]


@dataclass(frozen=True, slots=True)
class KpiKind:
    """Queue or agent KPIs: the filter parameter, the rows and how to tell an unknown id."""

    plural: str
    id_name: str
    rows: Callable[[KpiReport, str | None], list[Json]]
    known: Callable[[ApiState, KpiReport, str], bool]
    missing: str


QUEUE_KPIS = KpiKind(
    "queues", "queue_id", queue_rows, lambda state, report, q: q in report.queues, "no such queue"
)
AGENT_KPIS = KpiKind(
    "agents",
    "agent_id",
    agent_rows,
    lambda state, report, a: a in report.agents or a in state.projection.agents,
    "no such agent",
)


def _kpis(kind: KpiKind) -> Handler:
    @access(Access.SUPERVISOR)
    async def handler(request: web.Request) -> web.Response:
        state = snapshot_state(request)
        start, end = interval(request, state, kind.id_name)
        wanted = request.query.get(kind.id_name)
        report = _report(state, start, end)
        if wanted is not None and not kind.known(state, report, wanted):
            raise ApiError(404, kind.missing, field=f"query.{kind.id_name}")
        return web.json_response(
            {
                "from": format_time(start),
                "to": format_time(end),
                **_coverage(state, start),
                kind.plural: kind.rows(report, wanted),
            }
        )

    return handler


queue_kpis = _kpis(QUEUE_KPIS)
agent_kpis = _kpis(AGENT_KPIS)


async def whoami(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    return web.json_response(
        {"name": principal.name, "role": principal.role.value, "agent_id": principal.agent_id}
    )


@access(Access.PUBLIC)
async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@access(Access.PUBLIC)
async def ready(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = {"ready": state.ready, "last_seq": state.projection.last_seq}
    return web.json_response(body, status=200 if state.ready else 503)
