"""REST handlers for actions on agents and calls, and the admin reload.

Each validates its input (a 400 names the field), then hands the request to the
``SupervisorActions`` implementation. Actions answer 202: the request was accepted, and what
happens is reported as domain events on the bus (and so on the event stream).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from supervisor_api.actions import ActionRefusedError, MonitorMode, SupervisorActions
from supervisor_api.auth import PRINCIPAL, Access, access
from supervisor_api.errors import ApiError, Handler, bad_input, json_body
from supervisor_api.state import STATE

#: Waiting-caller priorities an API client may set (higher is served first).
PRIORITY_RANGE = (0, 100)
MAX_REASON = 100
MAX_ID = 128
#: How a recording lays out the call's two directions: caller left and agent right (the
#: default), or one channel with both.
RECORDING_LAYOUTS = ("stereo", "mixed")


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


Details = dict[str, Any]
#: Calls the action on the server: (actions, the path's agent or call id, details, by whom).
Perform = Callable[[SupervisorActions, str, Details, str], Awaitable[None]]
#: Reads and checks the body's fields into the action's details.
Read = Callable[[dict[str, Any]], Details]


def _no_fields(body: dict[str, Any]) -> Details:
    return {}


def _action(
    name: str, rule: Access, perform: Perform, read: Read = _no_fields, *fields: str
) -> Handler:
    """The handler of one action: check the body, perform, answer 202 with what was asked."""

    @access(rule)
    async def handler(request: web.Request) -> web.Response:
        details = read(await _body(request, *fields))
        agent_id = request.match_info.get("agent_id")
        call_id = request.match_info.get("call_id")
        target = {"agent_id": agent_id} if agent_id is not None else {"call_id": call_id}
        try:
            await perform(
                request.app[STATE].deps.actions,
                str(agent_id if agent_id is not None else call_id),
                details,
                request[PRINCIPAL].name,
            )
        except ActionRefusedError as exc:
            field = exc.field or next(f"path.{key}" for key in target)
            raise ApiError(exc.kind.status, exc.message, field=field, code=exc.kind.value) from None
        plain = {k: (v.value if isinstance(v, MonitorMode) else v) for k, v in details.items()}
        return web.json_response({"accepted": True, "action": name, **target, **plain}, status=202)

    return handler


def _pause_reason(body: dict[str, Any]) -> Details:
    return {"reason": _text(body, "reason", MAX_REASON)}


def _priority(body: dict[str, Any]) -> Details:
    return {"priority": _integer(body, "priority", *PRIORITY_RANGE)}


def _queue(body: dict[str, Any]) -> Details:
    return {"queue_id": _text(body, "queue_id", MAX_ID)}


def _recording(body: dict[str, Any]) -> Details:
    layout = _text(body, "layout", 16, required=False) or "stereo"
    if layout not in RECORDING_LAYOUTS:
        raise bad_input("body.layout", f"must be one of {', '.join(RECORDING_LAYOUTS)}")
    return {"layout": layout}


def _monitor(body: dict[str, Any]) -> Details:
    raw_mode = _text(body, "mode", 16)
    try:
        mode = MonitorMode(raw_mode)
    except ValueError:
        choices = ", ".join(m.value for m in MonitorMode)
        raise bad_input("body.mode", f"must be one of {choices}") from None
    return {"mode": mode, "agent_id": _text(body, "agent_id", MAX_ID)}


agent_login = _action(
    "login", Access.AGENT_SELF, lambda a, agent, d, by: a.agent_login(agent, by=by)
)
agent_logout = _action(
    "logout", Access.AGENT_SELF, lambda a, agent, d, by: a.agent_logout(agent, by=by)
)
agent_pause = _action(
    "pause",
    Access.AGENT_SELF,
    lambda a, agent, d, by: a.agent_pause(agent, d["reason"], by=by),
    _pause_reason,
    "reason",
)
agent_unpause = _action(
    "unpause", Access.AGENT_SELF, lambda a, agent, d, by: a.agent_unpause(agent, by=by)
)
call_priority = _action(
    "set_priority",
    Access.SUPERVISOR,
    lambda a, call, d, by: a.set_priority(call, d["priority"], by=by),
    _priority,
    "priority",
)
call_move = _action(
    "move",
    Access.SUPERVISOR,
    lambda a, call, d, by: a.move_call(call, d["queue_id"], by=by),
    _queue,
    "queue_id",
)
call_hangup = _action("hangup", Access.SUPERVISOR, lambda a, call, d, by: a.hangup(call, by=by))
recording_start = _action(
    "start_recording",
    Access.SUPERVISOR,
    lambda a, call, d, by: a.start_recording(call, by=by, layout=d["layout"]),
    _recording,
    "layout",
)
recording_stop = _action(
    "stop_recording", Access.SUPERVISOR, lambda a, call, d, by: a.stop_recording(call, by=by)
)
call_monitor = _action(
    "monitor",
    Access.SUPERVISOR,
    lambda a, call, d, by: a.monitor(call, d["mode"], d["agent_id"], by=by),
    _monitor,
    "mode",
    "agent_id",
)

call_end_monitor = _action(
    "end_monitor", Access.SUPERVISOR, lambda a, call, d, by: a.end_monitor(call, by=by)
)


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
