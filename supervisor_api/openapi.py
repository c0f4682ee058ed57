"""The OpenAPI 3.1 description of the API, served at ``/api/openapi.json``.

Written by hand next to the handlers and kept true by tests: every route of the application is
described here (and nothing else), and the schemathesis run checks each answer against it.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

API_VERSION = "1.0.0"


def _nullable(kind: str) -> Schema:
    return {"type": [kind, "null"]}


def _object(properties: dict[str, Schema], *, closed: bool = True) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, "required": list(properties)}
    if closed:
        schema["additionalProperties"] = False
    return schema


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


_TIME = {"type": "string", "format": "date-time"}
_SECONDS = {"type": "number", "minimum": 0}
_PERCENT = {"type": ["number", "null"], "minimum": 0, "maximum": 100}
_COUNT = {"type": "integer", "minimum": 0}
_TEXT = {"type": "string"}
_OPTIONAL_TIME = {"type": ["string", "null"], "format": "date-time"}
_OPTIONAL_SECONDS = {"type": ["number", "null"], "minimum": 0}
_THRESHOLDS = _object({"warn": {"type": "number"}, "alarm": {"type": "number"}})

SCHEMAS: dict[str, Schema] = {
    "Error": _object(
        {"error": _TEXT, "message": _TEXT, "field": _nullable("string")}, closed=False
    ),
    "AgentCounts": _object(
        {k: _COUNT for k in ("available", "busy", "wrap_up", "paused", "logged_out")}
    ),
    "ServiceLevel": _object(
        {
            "threshold_seconds": _SECONDS,
            "target_percent": _PERCENT,
            "now": _PERCENT,
            "today": _PERCENT,
            "offered_today": _COUNT,
            "answered_today": _COUNT,
            "abandoned_today": _COUNT,
        }
    ),
    "WaitingCall": _object(
        {
            "call_id": _TEXT,
            "position": {"type": "integer"},
            "priority": {"type": "integer"},
            "wait_seconds": _SECONDS,
            "joined_at": _TIME,
            "offered_to": _nullable("string"),
        }
    ),
    "QueueTile": _object(
        {
            "queue_id": _TEXT,
            "waiting": _COUNT,
            "longest_wait_seconds": _SECONDS,
            "callbacks_waiting": _COUNT,
            "agents": _ref("AgentCounts"),
            "service_level": _ref("ServiceLevel"),
        }
    ),
    "Agent": _object(
        {
            "agent_id": _TEXT,
            "state": _TEXT,
            "since": {"type": ["string", "null"], "format": "date-time"},
            "time_in_state_seconds": {"type": ["number", "null"], "minimum": 0},
            "reason": _TEXT,
            "call_id": _nullable("string"),
            "calls_handled": _COUNT,
            "talk_seconds": _SECONDS,
            "wrap_up_seconds": _SECONDS,
            "pause_seconds": _SECONDS,
        }
    ),
    "Segment": _object(
        {
            "kind": {"enum": ["ivr", "queue", "agent", "transfer"]},
            "started_at": _TIME,
            "ended_at": {"type": ["string", "null"], "format": "date-time"},
            "duration_seconds": _SECONDS,
            "queue_id": _nullable("string"),
            "agent_id": _nullable("string"),
            "outcome": _nullable("string"),
        }
    ),
    "Call": _object(
        {
            "call_id": _TEXT,
            "state": _TEXT,
            "started_at": _TIME,
            "duration_seconds": _SECONDS,
            "caller_id": _nullable("string"),
            "did": _nullable("string"),
            "trunk_id": _nullable("string"),
            "queue_id": _nullable("string"),
            "agent_id": _nullable("string"),
            "segments": {"type": "array", "items": _ref("Segment")},
        }
    ),
    "QueueKpis": _object(
        {
            "queue_id": _TEXT,
            **{
                k: _COUNT
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
                k: _PERCENT
                for k in (
                    "service_level",
                    "service_level2",
                    "abandon_rate",
                    "ring_no_answer_rate",
                    "transfer_rate",
                )
            },
            "sl_threshold_seconds": _SECONDS,
            "sl2_threshold_seconds": _SECONDS,
            "asa_seconds": {"type": ["number", "null"], "minimum": 0},
            "aht_seconds": {"type": ["number", "null"], "minimum": 0},
            "longest_answer_wait_seconds": _SECONDS,
        }
    ),
    "AgentKpis": _object(
        {
            "agent_id": _TEXT,
            **{k: _COUNT for k in ("handled", "offers", "no_answers", "rejections", "transfers")},
            **{
                k: _PERCENT
                for k in ("occupancy", "utilisation", "ring_no_answer_rate", "transfer_rate")
            },
            "aht_seconds": {"type": ["number", "null"], "minimum": 0},
            "talk_seconds": _SECONDS,
            "wrap_up_seconds": _SECONDS,
            "seconds_by_state": {"type": "object", "additionalProperties": _SECONDS},
        }
    ),
    "Accepted": _object({"accepted": {"const": True}, "action": _TEXT}, closed=False),
    "CdrSegment": _object(
        {
            "index": _COUNT,
            "kind": _TEXT,
            "started_at": _TIME,
            "ended_at": _OPTIONAL_TIME,
            "outcome": _nullable("string"),
            "ivr_tree_id": _nullable("string"),
            "queue_id": _nullable("string"),
            "agent_id": _nullable("string"),
            "destination": _nullable("string"),
            **{
                k: _OPTIONAL_SECONDS
                for k in (
                    "wait_seconds",
                    "ring_seconds",
                    "talk_seconds",
                    "hold_seconds",
                    "wrap_up_seconds",
                )
            },
            "offers": _COUNT,
        }
    ),
    "Cdr": _object(
        {
            **{
                k: _TEXT for k in ("call_id", "node", "trunk_id", "did", "caller_id", "caller_name")
            },
            "started_at": _TIME,
            "answered_at": _OPTIONAL_TIME,
            "ended_at": _OPTIONAL_TIME,
            "end_reason": _nullable("string"),
            "hangup_by": _nullable("string"),
            "disposition": _TEXT,
            **{
                k: _OPTIONAL_SECONDS
                for k in (
                    "duration_seconds",
                    "ivr_seconds",
                    "wait_seconds",
                    "talk_seconds",
                    "hold_seconds",
                    "wrap_up_seconds",
                )
            },
            "agents": {"type": "array", "items": _TEXT},
            "segments": {"type": "array", "items": _ref("CdrSegment")},
        }
    ),
}

_ERRORS = {
    "400": "Bad input; `field` names it",
    "401": "No or invalid bearer token",
    "403": "The token's role does not allow this",
    "404": "Unknown id",
}


def _responses(ok: str, schema: Schema, *errors: str, ok_status: str = "200") -> Schema:
    responses: Schema = {
        ok_status: {"description": ok, "content": {"application/json": {"schema": schema}}}
    }
    for status in ("401", "403", *errors):
        responses[status] = {
            "description": _ERRORS.get(status, "Refused"),
            "content": {"application/json": {"schema": _ref("Error")}},
        }
    return responses


def _path_param(name: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _body(properties: dict[str, Schema]) -> Schema:
    return {
        "required": True,
        "content": {"application/json": {"schema": _object(properties)}},
    }


def _action(summary: str, target: str, body: dict[str, Schema] | None = None) -> Schema:
    operation: Schema = {
        "summary": summary,
        "parameters": [_path_param(target)],
        "responses": _responses("Accepted", _ref("Accepted"), "400", "404", "409", ok_status="202"),
    }
    if body is not None:
        operation["requestBody"] = _body(body)
    return {"post": operation}


_INTERVAL = [
    _query("from", "Start of the interval (default: today's midnight)", {**_TIME}),
    _query("to", "End of the interval (default: now)", {**_TIME}),
]


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
                            "application/json": {"schema": _object({"status": {"const": "ok"}})}
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
                                "schema": _object(
                                    {"ready": {"type": "boolean"}, "last_seq": _COUNT}
                                )
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
                "responses": _responses("OpenAPI document", {"type": "object"}),
            }
        },
        "/api/me": {
            "get": {
                "summary": "Who the token belongs to",
                "responses": _responses(
                    "The caller",
                    _object(
                        {
                            "name": _TEXT,
                            "role": {"enum": ["agent", "supervisor", "admin"]},
                            "agent_id": _nullable("string"),
                        }
                    ),
                ),
            }
        },
        "/api/queues": {
            "get": {
                "summary": "Live snapshot of every queue",
                "responses": _responses(
                    "Queues",
                    _object({"queues": {"type": "array", "items": _queue_with_calls()}}),
                    "400",
                ),
            }
        },
        "/api/queues/{queue_id}": {
            "get": {
                "summary": "Live snapshot of one queue, with its waiting callers",
                "parameters": [_path_param("queue_id")],
                "responses": _responses("Queue", _queue_with_calls(), "400", "404"),
            }
        },
        "/api/agents": {
            "get": {
                "summary": "Every agent's state",
                "responses": _responses(
                    "Agents", _object({"agents": {"type": "array", "items": _ref("Agent")}}), "400"
                ),
            }
        },
        "/api/agents/{agent_id}": {
            "get": {
                "summary": "One agent's state (an agent token: its own only)",
                "parameters": [_path_param("agent_id")],
                "responses": _responses("Agent", _ref("Agent"), "400", "404"),
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
                "responses": _responses(
                    "Calls", _object({"calls": {"type": "array", "items": _ref("Call")}}), "400"
                ),
            }
        },
        "/api/calls/{call_id}": {
            "get": {
                "summary": "One call in progress",
                "parameters": [_path_param("call_id")],
                "responses": _responses("Call", _ref("Call"), "400", "404"),
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
        "/api/calls/{call_id}/monitor": _action(
            "Join a supervisor's phone to the call: listen, whisper (agent only) or barge",
            "call_id",
            {
                "mode": {"enum": ["listen", "whisper", "barge"]},
                "agent_id": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": r"\S"},
            },
        ),
        "/api/kpis/queues": {
            "get": {
                "summary": "Queue KPIs over an interval (docs/metrics.md)",
                "parameters": [*_INTERVAL, _query("queue_id", "Only this queue")],
                "responses": _responses("KPIs", _kpi_report("queues", "QueueKpis"), "400", "404"),
            }
        },
        "/api/kpis/agents": {
            "get": {
                "summary": "Agent KPIs over an interval (docs/metrics.md)",
                "parameters": [*_INTERVAL, _query("agent_id", "Only this agent")],
                "responses": _responses("KPIs", _kpi_report("agents", "AgentKpis"), "400", "404"),
            }
        },
        "/api/history/queues": _history(
            "Queue KPIs per hour or day from the event log (docs/metrics.md)",
            "queue_id",
            "Only this queue",
            "queues",
            "QueueKpis",
        ),
        "/api/history/agents": _history(
            "Agent KPIs per hour or day from the event log (docs/metrics.md)",
            "agent_id",
            "Only this agent",
            "agents",
            "AgentKpis",
        ),
        "/api/history/calls": {
            "get": {
                "summary": "Call detail records of calls started in the interval, oldest first",
                "parameters": [
                    *_INTERVAL,
                    _query(
                        "limit",
                        "Records per page (default 100)",
                        {"type": "integer", "minimum": 1, "maximum": 1000},
                    ),
                    _query("cursor", "`next_cursor` of the previous page"),
                    _query("agent_id", "Only calls this agent took part in"),
                    _query("queue_id", "Only calls that waited in this queue"),
                ],
                "responses": _responses(
                    "A page of CDRs",
                    _object(
                        {
                            "from": _TIME,
                            "to": _TIME,
                            "calls": {"type": "array", "items": _ref("Cdr")},
                            "next_cursor": _nullable("string"),
                        }
                    ),
                    "400",
                    "404",
                ),
            }
        },
        "/api/wallboard": {
            "get": {
                "summary": "Everything the wallboard shows, with its colour thresholds",
                "responses": _responses("Wallboard", _wallboard(), "400"),
            }
        },
        "/api/events": {
            "get": {
                "summary": "The live event stream (WebSocket; see docs/api.md)",
                "parameters": [
                    _query("types", "Comma-separated types or families (`queue.*`)"),
                    _query("queue_id", "Events of this queue and of its calls"),
                    _query("agent_id", "Events of this agent and of its calls"),
                    _query("call_id", "Events of this call"),
                    _query("resume_from", "First seq wanted", {"type": "integer", "minimum": 1}),
                ],
                "responses": {
                    "101": {"description": "Switching to the WebSocket protocol"},
                    **{
                        k: v
                        for k, v in _responses("unused", {}, "400", "426", "503").items()
                        if k != "200"
                    },
                },
            }
        },
        "/api/admin/reload": {
            "post": {
                "summary": "Validate the configuration directory, then swap it in",
                "responses": {
                    **_responses(
                        "Reloaded", _object({"reloaded": {"const": True}}), "400", "404", "422"
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
                    **{k: v for k, v in _responses("unused", {}).items() if k != "200"},
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
    properties = {**tile["properties"], "calls": {"type": "array", "items": _ref("WaitingCall")}}
    return _object(properties)


def _kpi_report(key: str, item: str) -> Schema:
    return _object(
        {
            "from": _TIME,
            "to": _TIME,
            "complete": {"type": "boolean"},
            "events_from": {"type": ["string", "null"], "format": "date-time"},
            key: {"type": "array", "items": _ref(item)},
        }
    )


def _history(summary: str, id_name: str, id_text: str, key: str, item: str) -> Schema:
    bucket = _object({"from": _TIME, "to": _TIME, key: {"type": "array", "items": _ref(item)}})
    return {
        "get": {
            "summary": summary,
            "parameters": [
                *_INTERVAL,
                _query(
                    "interval",
                    "One bucket per hour or per day of api.yaml's time zone (default: none)",
                    {"enum": ["none", "hour", "day"]},
                ),
                _query(id_name, id_text),
            ],
            "responses": _responses(
                "KPIs per bucket",
                _object(
                    {
                        "from": _TIME,
                        "to": _TIME,
                        "interval": {"enum": ["none", "hour", "day"]},
                        "buckets": {"type": "array", "items": bucket},
                    }
                ),
                "400",
                "404",
            ),
        }
    }


def _wallboard() -> Schema:
    return _object(
        {
            "time": _TIME,
            "node": _TEXT,
            "last_seq": _COUNT,
            "thresholds": _object(
                {
                    "waiting": _THRESHOLDS,
                    "longest_wait_seconds": _THRESHOLDS,
                    "service_level_shortfall": _THRESHOLDS,
                    "state_seconds": _THRESHOLDS,
                }
            ),
            "queues": {"type": "array", "items": _ref("QueueTile")},
            "agents": {"type": "array", "items": _ref("Agent")},
        }
    )
