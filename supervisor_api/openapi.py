"""The OpenAPI 3.1 description of the API, served at ``/api/openapi.json``.

Written by hand next to the handlers and kept true by tests: every route of the application is
described here (and nothing else), and the schemathesis run checks each answer against it. The
``/api/history/*`` paths and their schemas are described beside their handlers
(``supervisor_api/history_routes.py``), with the building blocks of ``supervisor_api/schema.py``.
"""

from __future__ import annotations

from supervisor_api.history_routes import HISTORY_SCHEMAS, history_paths
from supervisor_api.schema import (
    COUNT,
    INTERVAL,
    PERCENT,
    SECONDS,
    TEXT,
    TIME,
    Schema,
    array,
    nullable,
    obj,
    path_param,
    query,
    ref,
    responses,
)

API_VERSION = "1.0.0"

_THRESHOLDS = obj({"warn": {"type": "number"}, "alarm": {"type": "number"}})

SCHEMAS: dict[str, Schema] = {
    "Error": obj({"error": TEXT, "message": TEXT, "field": nullable("string")}, closed=False),
    "AgentCounts": obj(
        {k: COUNT for k in ("available", "busy", "wrap_up", "paused", "logged_out")}
    ),
    "ServiceLevel": obj(
        {
            "threshold_seconds": SECONDS,
            "target_percent": PERCENT,
            "now": PERCENT,
            "today": PERCENT,
            "offered_today": COUNT,
            "answered_today": COUNT,
            "abandoned_today": COUNT,
        }
    ),
    "WaitingCall": obj(
        {
            "call_id": TEXT,
            "position": {"type": "integer"},
            "priority": {"type": "integer"},
            "wait_seconds": SECONDS,
            "joined_at": TIME,
            "offered_to": nullable("string"),
        }
    ),
    "QueueTile": obj(
        {
            "queue_id": TEXT,
            "waiting": COUNT,
            "longest_wait_seconds": SECONDS,
            "callbacks_waiting": COUNT,
            "agents": ref("AgentCounts"),
            "service_level": ref("ServiceLevel"),
        }
    ),
    "Agent": obj(
        {
            "agent_id": TEXT,
            "state": TEXT,
            "since": {"type": ["string", "null"], "format": "date-time"},
            "time_in_state_seconds": {"type": ["number", "null"], "minimum": 0},
            "reason": TEXT,
            "call_id": nullable("string"),
            "calls_handled": COUNT,
            "talk_seconds": SECONDS,
            "wrap_up_seconds": SECONDS,
            "pause_seconds": SECONDS,
        }
    ),
    "Segment": obj(
        {
            "kind": {"enum": ["ivr", "queue", "agent", "transfer"]},
            "started_at": TIME,
            "ended_at": {"type": ["string", "null"], "format": "date-time"},
            "duration_seconds": SECONDS,
            "queue_id": nullable("string"),
            "agent_id": nullable("string"),
            "outcome": nullable("string"),
        }
    ),
    "Call": obj(
        {
            "call_id": TEXT,
            "state": TEXT,
            "started_at": TIME,
            "duration_seconds": SECONDS,
            "caller_id": nullable("string"),
            "did": nullable("string"),
            "trunk_id": nullable("string"),
            "queue_id": nullable("string"),
            "agent_id": nullable("string"),
            "segments": {"type": "array", "items": ref("Segment")},
            "monitor": {"anyOf": [ref("Monitor"), {"type": "null"}]},
        }
    ),
    "QueueKpis": obj(
        {
            "queue_id": TEXT,
            **{
                k: COUNT
                for k in (
                    "offered",
                    "answered",
                    "abandoned",
                    "short_abandoned",
                    "timeouts",
                    "callbacks_chosen",
                    "transferred_out",
                    "answered_within_sl",
                    "answered_within_sl2",
                    "handled",
                    "callbacks_requested",
                    "callbacks_completed",
                    "callbacks_failed",
                )
            },
            **{
                k: PERCENT
                for k in (
                    "service_level",
                    "service_level2",
                    "abandon_rate",
                    "ring_no_answer_rate",
                    "transfer_rate",
                )
            },
            "sl_threshold_seconds": SECONDS,
            "sl2_threshold_seconds": SECONDS,
            "asa_seconds": {"type": ["number", "null"], "minimum": 0},
            "aht_seconds": {"type": ["number", "null"], "minimum": 0},
            "longest_answer_wait_seconds": SECONDS,
        }
    ),
    "AgentKpis": obj(
        {
            "agent_id": TEXT,
            **{k: COUNT for k in ("handled", "offers", "no_answers", "rejections", "transfers")},
            **{
                k: PERCENT
                for k in ("occupancy", "utilisation", "ring_no_answer_rate", "transfer_rate")
            },
            "aht_seconds": {"type": ["number", "null"], "minimum": 0},
            "talk_seconds": SECONDS,
            "wrap_up_seconds": SECONDS,
            "seconds_by_state": {"type": "object", "additionalProperties": SECONDS},
        }
    ),
    "Accepted": obj({"accepted": {"const": True}, "action": TEXT}, closed=False),
    "Monitor": obj(
        {
            "call_id": TEXT,
            "agent_id": nullable("string"),
            "supervisor_id": nullable("string"),
            "sip_user": TEXT,
            "mode": {"enum": ["listen", "whisper", "barge"]},
            "since": TIME,
            "seconds": SECONDS,
        }
    ),
    **HISTORY_SCHEMAS,
}


def _body(properties: dict[str, Schema]) -> Schema:
    return {
        "required": True,
        "content": {"application/json": {"schema": obj(properties)}},
    }


def _action(
    summary: str, target: str, body: dict[str, Schema] | None = None, *, method: str = "post"
) -> Schema:
    operation: Schema = {
        "summary": summary,
        "parameters": [path_param(target)],
        "responses": responses("Accepted", ref("Accepted"), "400", "404", "409", ok_status="202"),
    }
    if body is not None:
        operation["requestBody"] = _body(body)
    return {method: operation}


def openapi_document() -> Schema:
    """The whole document (a fresh dict each call)."""
    public: Schema = {"security": []}
    paths: Schema = {
        "/api/health": {
            "get": {
                "summary": "Liveness; needs no token",
                **public,
                "responses": {
                    "200": {
                        "description": "Alive",
                        "content": {
                            "application/json": {"schema": obj({"status": {"const": "ok"}})}
                        },
                    }
                },
            }
        },
        "/api/ready": {
            "get": {
                "summary": "Readiness: the live projection follows the event bus; needs no token",
                **public,
                "responses": {
                    status: {
                        "description": text,
                        "content": {
                            "application/json": {
                                "schema": obj({"ready": {"type": "boolean"}, "last_seq": COUNT})
                            }
                        },
                    }
                    for status, text in (("200", "Ready"), ("503", "Not ready yet"))
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": responses("OpenAPI document", {"type": "object"}),
            }
        },
        "/api/me": {
            "get": {
                "summary": "Who the token belongs to",
                "responses": responses(
                    "The caller",
                    obj(
                        {
                            "name": TEXT,
                            "role": {"enum": ["agent", "supervisor", "admin"]},
                            "agent_id": nullable("string"),
                        }
                    ),
                ),
            }
        },
        "/api/queues": {
            "get": {
                "summary": "Live snapshot of every queue",
                "responses": responses(
                    "Queues",
                    obj({"queues": {"type": "array", "items": _queue_with_calls()}}),
                    "400",
                ),
            }
        },
        "/api/queues/{queue_id}": {
            "get": {
                "summary": "Live snapshot of one queue, with its waiting callers",
                "parameters": [path_param("queue_id")],
                "responses": responses("Queue", _queue_with_calls(), "400", "404"),
            }
        },
        "/api/agents": {
            "get": {
                "summary": "Every agent's state",
                "responses": responses(
                    "Agents", obj({"agents": {"type": "array", "items": ref("Agent")}}), "400"
                ),
            }
        },
        "/api/agents/{agent_id}": {
            "get": {
                "summary": "One agent's state (an agent token: its own only)",
                "parameters": [path_param("agent_id")],
                "responses": responses("Agent", ref("Agent"), "400", "404"),
            }
        },
        "/api/agents/{agent_id}/login": _action("Log the agent in", "agent_id"),
        "/api/agents/{agent_id}/logout": _action("Log the agent out", "agent_id"),
        "/api/agents/{agent_id}/pause": _action(
            "Pause the agent with a reason",
            "agent_id",
            {"reason": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": r"\S"}},
        ),
        "/api/agents/{agent_id}/unpause": _action("Make the agent available again", "agent_id"),
        "/api/calls": {
            "get": {
                "summary": "Calls in progress with their segments so far",
                "responses": responses(
                    "Calls", obj({"calls": {"type": "array", "items": ref("Call")}}), "400"
                ),
            }
        },
        "/api/calls/{call_id}": {
            "get": {
                "summary": "One call in progress",
                "parameters": [path_param("call_id")],
                "responses": responses("Call", ref("Call"), "400", "404"),
            }
        },
        "/api/calls/{call_id}/priority": _action(
            "Change a waiting caller's priority",
            "call_id",
            {"priority": {"type": "integer", "minimum": 0, "maximum": 100}},
        ),
        "/api/calls/{call_id}/move": _action(
            "Move a waiting caller to another queue",
            "call_id",
            {"queue_id": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": r"\S"}},
        ),
        "/api/calls/{call_id}/hangup": _action("Hang up the call", "call_id"),
        "/api/calls/{call_id}/recording/start": _action("Start recording the call", "call_id"),
        "/api/calls/{call_id}/recording/stop": _action("Stop recording the call", "call_id"),
        "/api/calls/{call_id}/monitor": {
            **_action(
                "Ring a supervisor's phone and join it to the call in a mode: listen, whisper "
                "(the agent hears the supervisor, the caller does not) or barge; asked again for "
                "the supervisor already on the call, switches the mode",
                "call_id",
                {
                    "mode": {"enum": ["listen", "whisper", "barge"]},
                    "agent_id": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 128,
                        "pattern": r"\S",
                    },
                },
            ),
            **_action(
                "Take the supervisor off the call (their phone gets BYE), or stop ringing it",
                "call_id",
                method="delete",
            ),
        },
        "/api/kpis/queues": {
            "get": {
                "summary": "Queue KPIs over an interval (docs/metrics.md)",
                "parameters": [*INTERVAL, query("queue_id", "Only this queue")],
                "responses": responses("KPIs", _kpi_report("queues", "QueueKpis"), "400", "404"),
            }
        },
        "/api/kpis/agents": {
            "get": {
                "summary": "Agent KPIs over an interval (docs/metrics.md)",
                "parameters": [*INTERVAL, query("agent_id", "Only this agent")],
                "responses": responses("KPIs", _kpi_report("agents", "AgentKpis"), "400", "404"),
            }
        },
        **history_paths(),
        "/api/wallboard": {
            "get": {
                "summary": "Everything the wallboard shows, with its colour thresholds",
                "responses": responses("Wallboard", _wallboard(), "400"),
            }
        },
        "/api/events": {
            "get": {
                "summary": "The live event stream (WebSocket; see docs/api.md)",
                "parameters": [
                    query("types", "Comma-separated types or families (`queue.*`)"),
                    query("queue_id", "Events of this queue and of its calls"),
                    query("agent_id", "Events of this agent and of its calls"),
                    query("call_id", "Events of this call"),
                    query("resume_from", "First seq wanted", {"type": "integer", "minimum": 1}),
                ],
                "responses": {
                    "101": {"description": "Switching to the WebSocket protocol"},
                    **{
                        k: v
                        for k, v in responses("unused", {}, "400", "426", "503").items()
                        if k != "200"
                    },
                },
            }
        },
        "/api/admin/reload": {
            "post": {
                "summary": "Validate the configuration directory, then swap it in",
                "responses": {
                    **responses(
                        "Reloaded", obj({"reloaded": {"const": True}}), "400", "404", "422"
                    ),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text exposition format 0.0.4)",
                "responses": {
                    "200": {
                        "description": "Metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **{k: v for k, v in responses("unused", {}).items() if k != "200"},
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "CXOS supervisor API",
            "version": API_VERSION,
            "description": "Live queues, agents and calls, KPIs, actions and the event stream.",
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }


def _queue_with_calls() -> Schema:
    tile = SCHEMAS["QueueTile"]
    properties = {**tile["properties"], "calls": {"type": "array", "items": ref("WaitingCall")}}
    return obj(properties)


def _kpi_report(key: str, item: str) -> Schema:
    return obj(
        {
            "from": TIME,
            "to": TIME,
            "complete": {"type": "boolean"},
            "events_from": {"type": ["string", "null"], "format": "date-time"},
            key: {"type": "array", "items": ref(item)},
        }
    )


def _wallboard() -> Schema:
    return obj(
        {
            "time": TIME,
            "node": TEXT,
            "last_seq": COUNT,
            "thresholds": obj(
                {
                    "waiting": _THRESHOLDS,
                    "longest_wait_seconds": _THRESHOLDS,
                    "service_level_shortfall": _THRESHOLDS,
                    "state_seconds": _THRESHOLDS,
                }
            ),
            "queues": {"type": "array", "items": ref("QueueTile")},
            "agents": {"type": "array", "items": ref("Agent")},
            "monitoring": array(ref("Monitor")),
        }
    )
