"""REST snapshots fed by the live projection, KPIs over an interval, actions and bad input."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from supervisor_api.actions import MonitorMode, ReloadProblem
from tests.supervisor.supervisor_app import ADMIN, SUPERVISOR, Harness, bearer
from tests.supervisor.supervisor_timeline import (
    T0,
    Timeline,
    answered,
    monitor_ended,
    monitoring,
    sales_morning,
)

Client = TestClient[web.Request, web.Application]
AUTH = bearer(SUPERVISOR)


async def get(client: Client, path: str, status: int = 200) -> Any:
    response = await client.get(path, headers=AUTH)
    assert response.status == status, await response.text()
    return await response.json()


async def test_queue_snapshot_counts_agents_and_service_level_today(
    client: Client, timeline: Timeline
) -> None:
    sales_morning(timeline)
    timeline.now = T0 + 120
    queue = await get(client, "/api/queues/sales")
    assert queue["waiting"] == 0 and queue["calls"] == []
    assert queue["agents"] == {
        "available": 1,
        "busy": 1,
        "wrap_up": 0,
        "paused": 0,
        "logged_out": 1,
    }
    assert queue["service_level"]["offered_today"] == 4
    assert queue["service_level"]["today"] == pytest.approx(33.333, abs=0.001)


async def test_waiting_calls_wait_and_position(client: Client, timeline: Timeline) -> None:
    from tests.supervisor.supervisor_timeline import joined, started

    timeline.at(0, started("x1"), joined("x1", position=1, priority=3))
    timeline.at(5, started("x2"), joined("x2", position=2))
    timeline.now = T0 + 12.5
    calls = (await get(client, "/api/queues/sales"))["calls"]
    assert [(c["call_id"], c["position"], c["priority"], c["wait_seconds"]) for c in calls] == [
        ("x1", 1, 3, 12.5),
        ("x2", 2, 0, 7.5),
    ]
    tiles = (await get(client, "/api/queues"))["queues"]
    assert [(t["queue_id"], t["waiting"], t["longest_wait_seconds"]) for t in tiles] == [
        ("sales", 2, 12.5),
        ("support", 0, 0.0),
    ]


async def test_agents_and_calls_in_progress(client: Client, timeline: Timeline) -> None:
    sales_morning(timeline)
    timeline.now = T0 + 100
    agents = {a["agent_id"]: a for a in (await get(client, "/api/agents"))["agents"]}
    assert agents["a1"]["state"] == "on_call"
    assert agents["a1"]["time_in_state_seconds"] == 5.0
    assert agents["a1"]["calls_handled"] == 1 and agents["a1"]["talk_seconds"] == 60.0
    assert agents["a3"]["since"] is None
    calls = (await get(client, "/api/calls"))["calls"]
    assert [c["call_id"] for c in calls] == ["c4"]
    call = await get(client, "/api/calls/c4")
    assert [(s["kind"], s["duration_seconds"]) for s in call["segments"]] == [
        ("queue", 45.0),
        ("agent", 5.0),
    ]
    await get(client, "/api/calls/c1", status=404)
    await get(client, "/api/agents/zz", status=404)
    await get(client, "/api/queues/zz", status=404)


async def test_a_supervisor_on_a_call_shows_on_the_call_and_the_wallboard(
    client: Client, timeline: Timeline
) -> None:
    sales_morning(timeline)  # a1 talks with c4 from +95 s
    timeline.at(100, monitoring("c4", "listen"))
    timeline.at(110, monitoring("c4", "whisper", "listen"))
    timeline.now = T0 + 115
    call = await get(client, "/api/calls/c4")
    assert call["monitor"] == {
        "call_id": "c4",
        "agent_id": "a1",
        "supervisor_id": "a3",  # the agent entry whose phone (1003) joined
        "sip_user": "1003",
        "mode": "whisper",
        "since": "2024-05-01T12:01:40.000Z",
        "seconds": 15.0,
    }
    # The caller is transferred to a2: the supervisor stays on, now with a2.
    timeline.at(120, answered("c4", "a2", 0))
    board = await get(client, "/api/wallboard")
    assert [(m["supervisor_id"], m["mode"], m["agent_id"]) for m in board["monitoring"]] == [
        ("a3", "whisper", "a2")
    ]
    timeline.at(130, monitor_ended("c4", "whisper", 30))
    assert (await get(client, "/api/wallboard"))["monitoring"] == []
    assert (await get(client, "/api/calls/c4"))["monitor"] is None


async def test_kpis_over_an_interval(client: Client, timeline: Timeline) -> None:
    sales_morning(timeline)
    timeline.now = T0 + 200
    body = await get(client, "/api/kpis/queues?from=2024-05-01T12:00:00Z&to=2024-05-01T12:03:20Z")
    assert body["from"] == "2024-05-01T12:00:00.000Z" and body["complete"] is True
    sales = next(q for q in body["queues"] if q["queue_id"] == "sales")
    assert (sales["offered"], sales["answered"], sales["short_abandoned"]) == (4, 2, 1)
    assert sales["service_level"] == pytest.approx(33.333)
    assert sales["asa_seconds"] == 27.0 and sales["aht_seconds"] == 70.0
    agents = await get(client, "/api/kpis/agents?agent_id=a1&to=2024-05-01T12:03:20%2B00:00")
    (a1,) = agents["agents"]
    assert a1["occupancy"] == 87.5 and a1["handled"] == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=yesterday", "query.from"),
        ("to=2024-05-01T12:00:00", "query.to"),
        ("from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z", "query.from"),
        ("colour=red", "query.colour"),
    ],
)
async def test_bad_kpi_query_names_the_field(client: Client, query: str, field: str) -> None:
    body = await get(client, f"/api/kpis/queues?{query}", status=400)
    assert body["field"] == field


async def test_actions_reach_the_actions_interface(client: Client, harness: Harness) -> None:
    requests: list[tuple[str, dict[str, Any] | None]] = [
        ("/api/agents/a2/login", None),
        ("/api/agents/a2/pause", {"reason": "training"}),
        ("/api/agents/a2/unpause", None),
        ("/api/agents/a2/logout", None),
        ("/api/calls/c1/priority", {"priority": 9}),
        ("/api/calls/c1/move", {"queue_id": "support"}),
        ("/api/calls/c1/recording/start", None),
        ("/api/calls/c1/recording/stop", None),
        ("/api/calls/c1/recording/start", {"layout": "mixed"}),
        ("/api/calls/c1/monitor", {"mode": "whisper", "agent_id": "a3"}),
        ("/api/calls/c1/hangup", None),
    ]
    for path, body in requests:
        response = await client.post(path, json=body, headers=AUTH)
        assert response.status == 202, await response.text()
        assert (await response.json())["accepted"] is True
    assert harness.actions.done == [
        ("login", "a2", "sup"),
        ("pause", "a2", "training", "sup"),
        ("unpause", "a2", "sup"),
        ("logout", "a2", "sup"),
        ("priority", "c1", 9, "sup"),
        ("move", "c1", "support", "sup"),
        ("record", "c1", "sup", "stereo"),
        ("stop_record", "c1", "sup"),
        ("record", "c1", "sup", "mixed"),
        ("monitor", "c1", MonitorMode.WHISPER, "a3", "sup"),
        ("hangup", "c1", "sup"),
    ]


async def test_a_recording_layout_that_does_not_exist_is_refused(
    client: Client, harness: Harness
) -> None:
    body = {"layout": "surround"}
    response = await client.post("/api/calls/c1/recording/start", json=body, headers=AUTH)
    assert response.status == 400
    assert (await response.json())["field"] == "body.layout"
    assert harness.actions.done == []


async def test_ending_monitoring_answers_202_then_409_once_nobody_monitors(
    client: Client, harness: Harness
) -> None:
    body = {"mode": "listen", "agent_id": "a3"}
    assert (await client.post("/api/calls/c1/monitor", json=body, headers=AUTH)).status == 202
    # Switching mode while monitoring: the same request with another mode.
    body["mode"] = "barge"
    assert (await client.post("/api/calls/c1/monitor", json=body, headers=AUTH)).status == 202
    response = await client.delete("/api/calls/c1/monitor", headers=AUTH)
    assert response.status == 202
    assert await response.json() == {"accepted": True, "action": "end_monitor", "call_id": "c1"}
    assert harness.actions.done[-1] == ("end_monitor", "c1", "sup")
    harness.actions.done.clear()
    response = await client.delete("/api/calls/c1/monitor", headers=AUTH)
    assert response.status == 409
    assert (await response.json())["error"] == "wrong_state"
    response = await client.delete("/api/calls/nope/monitor", headers=AUTH)
    assert (response.status, (await response.json())["field"]) == (404, "path.call_id")
    response = await client.delete("/api/calls/c1/monitor", json={"mode": "x"}, headers=AUTH)
    assert (response.status, (await response.json())["field"]) == (400, "body.mode")


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/api/calls/c1/priority", {"priority": "high"}, 400, "body.priority"),
        ("/api/calls/c1/priority", {"priority": 101}, 400, "body.priority"),
        ("/api/calls/c1/priority", {"priority": True}, 400, "body.priority"),
        ("/api/calls/c1/priority", {}, 400, "body.priority"),
        ("/api/calls/c1/priority", {"priority": 1, "extra": 1}, 400, "body.extra"),
        ("/api/calls/c1/monitor", {"mode": "spy", "agent_id": "a1"}, 400, "body.mode"),
        ("/api/agents/a2/pause", {"reason": "  "}, 400, "body.reason"),
        ("/api/agents/a2/pause", [1], 400, "body"),
        ("/api/calls/nope/hangup", None, 404, "path.call_id"),
        ("/api/agents/nope/login", None, 404, "path.agent_id"),
        ("/api/calls/c1/move", {"queue_id": "nope"}, 404, "body.queue_id"),
    ],
)
async def test_bad_action_input_is_4xx_naming_the_field(
    client: Client, harness: Harness, path: str, body: Any, status: int, field: str
) -> None:
    response = await client.post(path, json=body, headers=AUTH)
    assert response.status == status, await response.text()
    assert (await response.json())["field"] == field
    assert harness.actions.done == []


async def test_malformed_json_is_400(client: Client) -> None:
    response = await client.post("/api/calls/c1/priority", data=b'{"priority": ', headers=AUTH)
    assert response.status == 400
    assert (await response.json())["field"] == "body"


async def test_failed_reload_returns_the_validation_errors(
    client: Client, harness: Harness
) -> None:
    harness.administration.problems = [
        ReloadProblem(file="queues.yaml", line=7, message="sales.max_wait: must be > 0")
    ]
    response = await client.post("/api/admin/reload", headers=bearer(ADMIN))
    assert response.status == 422
    body = await response.json()
    assert body["error"] == "invalid_configuration"
    assert body["problems"] == [
        {"file": "queues.yaml", "line": 7, "message": "sales.max_wait: must be > 0"}
    ]


async def test_prometheus_metrics(client: Client, timeline: Timeline) -> None:
    sales_morning(timeline)
    response = await client.get("/metrics", headers=AUTH)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    assert "cxos_calls_started_total 4.0" in text
    assert 'cxos_queue_wait_seconds_count{outcome="answered",queue="sales"} 2.0' in text
    assert 'cxos_agents{state="on_call"} 1.0' in text
    assert 'cxos_queue_waiting{queue="sales"} 0.0' in text
    assert "cxos_calls_active 1.0" in text
    assert 'cxos_events_total{type="queue.joined"} 4.0' in text
