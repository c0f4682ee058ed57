"""REST handlers for actions on agents and calls, and the admin reload.

Each validates its input (a 400 names the field), then hands the request to the
``SupervisorActions`` implementation. Actions answer 202: the request was accepted, and what
happens is reported as domain events on the bus (and so on the event stream).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from supervisor_api.actions import ActionRefusedError, MonitorMode
from supervisor_api.auth import PRINCIPAL, Access, access
from supervisor_api.errors import ApiError, bad_input, json_body
from supervisor_api.state import STATE

#: Waiting-caller priorities an API client may set (higher is served first).
PRIORITY_RANGE = (0, 100)
MAX_REASON = 100
MAX_ID = 128


async def _body(request: web.Request, *fields: str) -> dict[str, Any]:
    body = await json_body(request)
    for name in body:
        if name not in fields:
            raise bad_input(f"body.{name}", "unexpected field")
    return body


def _text(body: dict[str, Any], name: str, max_length: int, *, required: bool = True) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if value is None:
        raise bad_input(f"body.{name}", "required field missing")
    if not isinstance(value, str):
        raise bad_input(f"body.{name}", "must be a string")
    if not value.strip() or len(value) > max_length:
        raise bad_input(f"body.{name}", f"must be 1 to {max_length} characters")
    return value


def _integer(body: dict[str, Any], name: str, low: int, high: int) -> int:
    value = body.get(name)
    if value is None:
        raise bad_input(f"body.{name}", "required field missing")
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_input(f"body.{name}", "must be an integer")
    if not low <= value <= high:
        raise bad_input(f"body.{name}", f"must be between {low} and {high}")
    return value


async def _act(request: web.Request, action: str, **details: Any) -> web.Response:
    state = request.app[STATE]
    actions = state.deps.actions
    by = request[PRINCIPAL].name
    agent_id = request.match_info.get("agent_id")
    call_id = request.match_info.get("call_id")
    try:
        if action == "login":
            await actions.agent_login(str(agent_id), by=by)
        elif action == "logout":
            await actions.agent_logout(str(agent_id), by=by)
        elif action == "pause":
            await actions.agent_pause(str(agent_id), details["reason"], by=by)
        elif action == "unpause":
            await actions.agent_unpause(str(agent_id), by=by)
        elif action == "set_priority":
            await actions.set_priority(str(call_id), details["priority"], by=by)
        elif action == "move":
            await actions.move_call(str(call_id), details["queue_id"], by=by)
        elif action == "hangup":
            await actions.hangup(str(call_id), by=by)
        elif action == "start_recording":
            await actions.start_recording(str(call_id), by=by)
        elif action == "stop_recording":
            await actions.stop_recording(str(call_id), by=by)
        elif action == "monitor":
            await actions.monitor(str(call_id), details["mode"], details["agent_id"], by=by)
        else:  # pragma: no cover - the route table only names the actions above
            raise AssertionError(action)
    except ActionRefusedError as exc:
        field = exc.field or ("path.agent_id" if agent_id is not None else "path.call_id")
        raise ApiError(exc.kind.status, exc.message, field=field, code=exc.kind.value) from None
    target = {"agent_id": agent_id} if agent_id is not None else {"call_id": call_id}
    plain = {k: (v.value if isinstance(v, MonitorMode) else v) for k, v in details.items()}
    return web.json_response({"accepted": True, "action": action, **target, **plain}, status=202)


@access(Access.AGENT_SELF)
async def agent_login(request: web.Request) -> web.Response:
    await _body(request)
    return await _act(request, "login")


@access(Access.AGENT_SELF)
async def agent_logout(request: web.Request) -> web.Response:
    await _body(request)
    return await _act(request, "logout")


@access(Access.AGENT_SELF)
async def agent_pause(request: web.Request) -> web.Response:
    body = await _body(request, "reason")
    return await _act(request, "pause", reason=_text(body, "reason", MAX_REASON))


@access(Access.AGENT_SELF)
async def agent_unpause(request: web.Request) -> web.Response:
    await _body(request)
    return await _act(request, "unpause")


@access(Access.SUPERVISOR)
async def call_priority(request: web.Request) -> web.Response:
    body = await _body(request, "priority")
    return await _act(request, "set_priority", priority=_integer(body, "priority", *PRIORITY_RANGE))


@access(Access.SUPERVISOR)
async def call_move(request: web.Request) -> web.Response:
    body = await _body(request, "queue_id")
    return await _act(request, "move", queue_id=_text(body, "queue_id", MAX_ID))


@access(Access.SUPERVISOR)
async def call_hangup(request: web.Request) -> web.Response:
    await _body(request)
    return await _act(request, "hangup")


@access(Access.SUPERVISOR)
async def recording_start(request: web.Request) -> web.Response:
    await _body(request)
    return await _act(request, "start_recording")


@access(Access.SUPERVISOR)
async def recording_stop(request: web.Request) -> web.Response:
    await _body(request)
    return await _act(request, "stop_recording")


@access(Access.SUPERVISOR)
async def call_monitor(request: web.Request) -> web.Response:
    body = await _body(request, "mode", "agent_id")
    raw_mode = _text(body, "mode", 16)
    try:
        mode = MonitorMode(raw_mode)
    except ValueError:
        choices = ", ".join(m.value for m in MonitorMode)
        raise bad_input("body.mode", f"must be one of {choices}") from None
    return await _act(request, "monitor", mode=mode, agent_id=_text(body, "agent_id", MAX_ID))


@access(Access.ADMIN)
async def reload_configuration(request: web.Request) -> web.Response:
    await _body(request)
    administration = request.app[STATE].deps.administration
    if administration is None:
        raise ApiError(404, "configuration reload is not available on this server")
    problems = await administration.reload_configuration()
    if problems:
        raise ApiError(
            422,
            "the configuration is not valid; the running one stays in force",
            code="invalid_configuration",
            extra={
                "problems": [
                    {"file": p.file, "line": p.line, "message": p.message} for p in problems
                ]
            },
        )
    return web.json_response({"reloaded": True})
