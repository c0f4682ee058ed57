"""The aiohttp application: routes, middlewares and the life of its background work.

``create_app(dependencies)`` builds it; the application's ``cleanup_ctx`` starts the projection
consumer (which follows the event bus) and, on shutdown, closes every event-stream socket with
"going away" before cancelling it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from importlib import resources

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from supervisor_api import action_routes as actions
from supervisor_api import history_routes as history
from supervisor_api import rest
from supervisor_api.auth import Access, access, auth_middleware
from supervisor_api.errors import Handler, error_middleware
from supervisor_api.openapi import openapi_document
from supervisor_api.state import STATE, ApiDependencies, ApiState
from supervisor_api.websocket import events_handler

#: Largest request body accepted (actions carry a few small fields).
MAX_BODY = 16 * 1024

_STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


def _static(name: str) -> Handler:
    body = (resources.files("supervisor_api") / "static" / name).read_bytes()
    content_type = _STATIC_TYPES[name[name.rfind(".") :]]

    @access(Access.PUBLIC)
    async def handler(request: web.Request) -> web.Response:
        # The page and its scripts hold no data; everything shown comes from authenticated calls.
        return web.Response(
            body=body,
            content_type=content_type,
            charset="utf-8",
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    return handler


async def _metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.catch_up()
    return web.Response(
        body=generate_latest(state.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


@access(Access.ANY_ROLE)  # an agent token is narrowed to its own agent's events
async def _events(request: web.Request) -> web.StreamResponse:
    return await events_handler(request, request.app[STATE].hub)


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


@web.middleware
async def _count_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if response.status >= 400:
        request.app[STATE].metrics.http_errors.labels(str(response.status)).inc()
    return response


async def _follow_bus(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    state.subscribe()
    tasks = [
        asyncio.create_task(state.run_projection(), name="supervisor-projection"),
        asyncio.create_task(state.hub.send_heartbeats(), name="supervisor-heartbeats"),
    ]
    yield
    await state.hub.close_all()
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if state.subscription is not None:
        state.subscription.close("API stopped")


def create_app(dependencies: ApiDependencies) -> web.Application:
    state = ApiState(dependencies)
    app = web.Application(
        middlewares=[_count_errors, error_middleware, auth_middleware(lambda: state.tokens)],
        client_max_size=MAX_BODY,
    )
    app[STATE] = state
    app.cleanup_ctx.append(_follow_bus)
    app.on_shutdown.append(lambda app: app[STATE].hub.close_all())
    router = app.router
    router.add_get("/api/health", rest.health)
    router.add_get("/api/ready", rest.ready)
    router.add_get("/api/openapi.json", _openapi)
    router.add_get("/api/me", rest.whoami)
    router.add_get("/api/queues", rest.list_queues)
    router.add_get("/api/queues/{queue_id}", rest.get_queue)
    router.add_get("/api/agents", rest.list_agents)
    router.add_get("/api/agents/{agent_id}", rest.get_agent)
    router.add_post("/api/agents/{agent_id}/login", actions.agent_login)
    router.add_post("/api/agents/{agent_id}/logout", actions.agent_logout)
    router.add_post("/api/agents/{agent_id}/pause", actions.agent_pause)
    router.add_post("/api/agents/{agent_id}/unpause", actions.agent_unpause)
    router.add_get("/api/calls", rest.list_calls)
    router.add_get("/api/calls/{call_id}", rest.get_call)
    router.add_post("/api/calls/{call_id}/priority", actions.call_priority)
    router.add_post("/api/calls/{call_id}/move", actions.call_move)
    router.add_post("/api/calls/{call_id}/hangup", actions.call_hangup)
    router.add_post("/api/calls/{call_id}/recording/start", actions.recording_start)
    router.add_post("/api/calls/{call_id}/recording/stop", actions.recording_stop)
    router.add_post("/api/calls/{call_id}/monitor", actions.call_monitor)
    router.add_delete("/api/calls/{call_id}/monitor", actions.call_end_monitor)
    router.add_get("/api/kpis/queues", rest.queue_kpis)
    router.add_get("/api/kpis/agents", rest.agent_kpis)
    router.add_get("/api/history/queues", history.queue_history)
    router.add_get("/api/history/agents", history.agent_history)
    router.add_get("/api/history/calls", history.call_history)
    router.add_get("/api/wallboard", rest.wallboard)
    router.add_get("/api/events", _events)
    router.add_post("/api/admin/reload", actions.reload_configuration)
    router.add_get("/metrics", access(Access.SUPERVISOR)(_metrics))
    router.add_get("/wallboard", _static("wallboard.html"))
    router.add_get("/wallboard/wallboard.js", _static("wallboard.js"))
    router.add_get("/wallboard/wallboard.css", _static("wallboard.css"))
    return app


__all__ = ["ApiDependencies", "create_app"]
