"""A server with the Redis store, killed with SIGKILL and started again, finds its agents as they
were: logged in, or paused with their reason, as the supervisor API shows them.

Its own Redis database (14) and node name keep it apart from anything else on the machine's
Redis; every key of the ACD's prefix there is deleted at the end.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from ruamel.yaml import YAML

from tests.integration.peers import RunningServer, free_port, start_server, write_server_config

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120)]

REDIS_URL = "redis://127.0.0.1:6379/14"
SUPERVISOR = "change-me-supervisor-token"


def call_api(server: RunningServer, method: str, path: str, body: object = None) -> object:
    port = YAML(typ="safe").load((server.config_dir / "server.yaml").read_text())["api"]["port"]
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {SUPERVISOR}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read() or b"null")


def agent(server: RunningServer, agent_id: str, state: str) -> tuple[object, object]:
    """The agent's (state, reason) once it is ``state``, or as it is after 20 s."""
    deadline = time.monotonic() + 20
    while True:
        view = call_api(server, "GET", f"/api/agents/{agent_id}")
        assert isinstance(view, dict)
        if view["state"] == state or time.monotonic() > deadline:
            return view["state"], view["reason"]
        time.sleep(0.1)


@pytest.fixture
def redis_db() -> Iterator[None]:
    client = Redis.from_url(REDIS_URL)
    try:
        yield
    finally:
        keys = list(client.scan_iter(match="cxos:acd:*", count=500))
        if keys:
            client.delete(*keys)
        client.close()


def test_agents_come_back_as_they_were_after_a_kill(
    config_dir: Path, tmp_path: Path, redis_db: None
) -> None:
    port = free_port()
    node = f"restart-{uuid.uuid4().hex[:8]}"
    write_server_config(config_dir, port, {"node": node, "storage": {"redis_url": REDIS_URL}})
    server = start_server(config_dir, port, tmp_path / "first.log")
    try:
        call_api(server, "POST", "/api/agents/alice/login")
        call_api(server, "POST", "/api/agents/bob/login")
        call_api(server, "POST", "/api/agents/bob/pause", {"reason": "lunch"})
        assert agent(server, "bob", "paused") == ("paused", "lunch")
        assert agent(server, "alice", "available")[0] == "available"
    finally:
        server.process.kill()  # no shutdown: what a crash leaves behind
        server.process.wait(10)

    restarted = start_server(config_dir, port, tmp_path / "second.log")
    try:
        assert agent(restarted, "alice", "available") == ("available", "restored")
        assert agent(restarted, "bob", "paused") == ("paused", "lunch")
        assert agent(restarted, "carol", "logged_out")[0] == "logged_out"
    finally:
        assert restarted.stop() == 0, restarted.log()[-4000:]
