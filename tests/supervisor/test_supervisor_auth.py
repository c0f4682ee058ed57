"""Every route and role: no token → 401, wrong role → 403, each with a JSON error body."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from supervisor_api.openapi import openapi_document
from tests.supervisor.supervisor_app import ADMIN, AGENT_A1, SUPERVISOR, Harness, bearer

Client = TestClient[web.Request, web.Application]

SUPERVISOR_ROUTES = [
    ("GET", "/api/queues"),
    ("GET", "/api/queues/sales"),
    ("GET", "/api/agents"),
    ("GET", "/api/agents/a2"),
    ("GET", "/api/calls"),
    ("GET", "/api/kpis/queues"),
    ("GET", "/api/kpis/agents"),
    ("GET", "/api/history/queues"),
    ("GET", "/api/history/agents"),
    ("GET", "/api/history/calls"),
    ("GET", "/api/wallboard"),
    ("GET", "/metrics"),
    ("POST", "/api/agents/a2/pause"),
    ("POST", "/api/calls/c1/hangup"),
    ("POST", "/api/calls/c1/priority"),
    ("POST", "/api/calls/c1/monitor"),
    ("DELETE", "/api/calls/c1/monitor"),
]


async def expect_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body: dict[str, Any] = await response.json()
    assert set(body) >= {"error", "message", "field"}
    return body


def every_documented_route() -> list[tuple[str, str]]:
    routes = []
    for path, item in openapi_document()["paths"].items():
        for method in item:
            concrete = path.replace("{queue_id}", "sales").replace("{agent_id}", "a1")
            routes.append((method.upper(), concrete.replace("{call_id}", "c1")))
    return routes


@pytest.mark.parametrize(("method", "path"), every_documented_route())
async def test_no_token_is_401_except_health(client: Client, method: str, path: str) -> None:
    response = await client.request(method, path)
    if path in {"/api/health", "/api/ready"}:
        assert response.status == 200
        return
    body = await expect_error(response, 401)
    assert body["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_wrong_token_is_401_invalid_token(client: Client) -> None:
    response = await client.get("/api/queues", headers=bearer("not-a-real-token-at-all"))
    await expect_error(response, 401)
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    response = await client.get("/api/queues", headers={"Authorization": f"Basic {SUPERVISOR}"})
    await expect_error(response, 401)


@pytest.mark.parametrize(("method", "path"), SUPERVISOR_ROUTES)
async def test_agent_token_is_403_on_supervisor_routes(
    client: Client, method: str, path: str
) -> None:
    body = await expect_error(await client.request(method, path, headers=bearer(AGENT_A1)), 403)
    assert body["error"] == "forbidden"


async def test_agent_token_reads_and_changes_only_its_own_state(
    client: Client, harness: Harness
) -> None:
    own = await client.get("/api/agents/a1", headers=bearer(AGENT_A1))
    assert own.status == 200 and (await own.json())["agent_id"] == "a1"
    pause = await client.post(
        "/api/agents/a1/pause", json={"reason": "lunch"}, headers=bearer(AGENT_A1)
    )
    assert pause.status == 202
    assert harness.actions.done == [("pause", "a1", "lunch", "a1-phone")]
    me = await client.get("/api/me", headers=bearer(AGENT_A1))
    assert await me.json() == {"name": "a1-phone", "role": "agent", "agent_id": "a1"}


async def test_reload_needs_admin(client: Client, harness: Harness) -> None:
    await expect_error(await client.post("/api/admin/reload", headers=bearer(SUPERVISOR)), 403)
    response = await client.post("/api/admin/reload", headers=bearer(ADMIN))
    assert response.status == 200 and await response.json() == {"reloaded": True}
    assert harness.administration.reloads == 1


async def test_admin_may_do_what_a_supervisor_may(client: Client) -> None:
    response = await client.get("/api/queues", headers=bearer(ADMIN))
    assert response.status == 200


async def test_unknown_path_is_a_json_404_once_authenticated(client: Client) -> None:
    await expect_error(await client.get("/api/nothing"), 401)
    await expect_error(await client.get("/api/nothing", headers=bearer(SUPERVISOR)), 404)
    body = await expect_error(await client.put("/api/queues", headers=bearer(SUPERVISOR)), 405)
    assert body["error"] == "method_not_allowed"


async def test_health_and_readiness_need_no_token(client: Client) -> None:
    assert await (await client.get("/api/health")).json() == {"status": "ok"}
    ready = await (await client.get("/api/ready")).json()
    assert ready["ready"] is True
