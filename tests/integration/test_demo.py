"""``cxos demo`` against a real ``cxos run`` process on 127.0.0.1.

Two simulated agents and Poisson callers for about 20 s: the supervisor API must show calls
answered by the agents, the demo must exit 0, and no SIPp process may be left behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.peers import RunningServer, free_port, start_server, write_server_config

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120)]

SUPERVISOR_TOKEN = "change-me-supervisor-token"
#: A number straight to a queue, and a menu open at all hours: what callers get does not depend
#: on the shipped IVR's business hours.
DEMO_DIALPLAN = """\
numbers:
  "100": {ivr: open_line}
  "202": {queue: support}
  "*": {ivr: main}
"""
OPEN_TREE = """\
trees:
  open_line:
    start: menu
    nodes:
      menu:
        type: menu
        greet_long: "For sales, press 1. For support, press 2. For billing, press 3."
        choices:
          - {dtmf: 1, next: sales}
          - {dtmf: 2, next: support}
          - {dtmf: 3, next: billing}
        on_failure: goodbye
      sales: {type: queue, queue: sales}
      support: {type: queue, queue: support}
      billing: {type: queue, queue: billing}
      goodbye: {type: hangup}
"""
#: Short wrap-up so two agents take several calls in a short run.
QUICK_QUEUES = """\
queues:
  sales: {skills: {sales: 3}, wrapuptime: 1}
  support: {skills: {support: 3}, wrapuptime: 1}
  billing: {skills: {billing: 3}, wrapuptime: 1}
"""


@pytest.fixture
def demo_server(config_dir: Path, tmp_path: Path) -> Iterator[tuple[RunningServer, str]]:
    (config_dir / "dialplan.yaml").write_text(DEMO_DIALPLAN)
    (config_dir / "ivr" / "open_line.yaml").write_text(OPEN_TREE)
    (config_dir / "queues.yaml").write_text(QUICK_QUEUES)
    port = free_port()
    api_port = free_port(socket.SOCK_STREAM)
    write_server_config(config_dir, port, {"api": {"host": "127.0.0.1", "port": api_port}})
    running = start_server(config_dir, port, tmp_path / "server.log")
    yield running, f"http://127.0.0.1:{api_port}"
    code = running.stop()
    assert code == 0, f"server exited with {code}:\n{running.log()[-4000:]}"


async def get(api: str, path: str) -> Any:
    headers = {"Authorization": f"Bearer {SUPERVISOR_TOKEN}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.get(f"{api}{path}") as response,
    ):
        assert response.status == 200, await response.text()
        return await response.json()


def sipps_under(folder: Path) -> list[int]:
    """SIPp processes alive whose command line names a file under ``folder``: the demo keeps
    its scenarios in a temporary directory, and the tests point TMPDIR at ``folder``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"sipp") and any(str(folder).encode() in a for a in argv):
            found.append(int(entry.name))
    return found


def agent_story(server: RunningServer) -> str:
    """The server's log lines about offers, agent states and trouble, to tell why calls
    went unanswered."""
    told = ("AgentStateChanged", "AgentOffered", "RingFailure", "AgentLegFailed", "WARNING")
    lines = [line for line in server.log().splitlines() if any(w in line for w in told)]
    return "\n".join(lines[-60:])


def demo_env(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "TMPDIR": str(folder)}


def demo_command(config_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cxos.cli", "demo", "--config", str(config_dir), *extra]


async def test_the_demo_gets_calls_answered_by_simulated_agents_and_ends_cleanly(
    demo_server: tuple[RunningServer, str], config_dir: Path, tmp_path: Path
) -> None:
    server, api = demo_server
    args = ["--agents", "2", "--rate", "0.5", "--duration", "20", "--talk", "3"]
    args += ["--number", "100", "--number", "202"]  # callers key 1, 2, 3 in turn in the menu of 100
    scratch = tmp_path / "demo"
    demo = await asyncio.create_subprocess_exec(
        *demo_command(config_dir, *args),
        env=demo_env(scratch),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    await asyncio.sleep(8)
    assert len(sipps_under(scratch)) >= 2, "no agent phones running"
    raw_out, raw_err = await asyncio.wait_for(demo.communicate(), 60)
    out, err = raw_out.decode(), raw_err.decode()
    assert demo.returncode == 0, f"{out[-2000:]}\n{err[-3000:]}"
    assert sipps_under(scratch) == []

    # A status line a second, naming the agents and the queues.
    lines = [line for line in out.splitlines() if "waiting" in line]
    assert len(lines) >= 15, out
    assert "alice:" in lines[-1] and "bob:" in lines[-1] and "sales=" in lines[-1]

    kpis = {row["queue_id"]: row for row in (await get(api, "/api/kpis/queues"))["queues"]}
    answered = sum(row["answered"] for row in kpis.values())
    assert answered >= 3, f"{kpis}\n{out[-3000:]}\n{err[-3000:]}\n{agent_story(server)}"
    # Menu keys took callers to sales or billing (only 100's menu leads there).
    assert kpis["sales"]["offered"] + kpis["billing"]["offered"] >= 1, kpis
    agents = {a["agent_id"]: a for a in (await get(api, "/api/agents"))["agents"]}
    assert agents["alice"]["calls_handled"] + agents["bob"]["calls_handled"] >= 3, agents
    assert agents["carol"]["calls_handled"] == 0  # only two simulated agents
    # The demo logged its agents out when it ended.
    assert {agents["alice"]["state"], agents["bob"]["state"]} == {"logged_out"}, agents
    # Callers still waiting when the demo ended were hung up: no call is left in the IVR,
    # queued, ringing an agent or talking.
    for _ in range(50):
        calls = (await get(api, "/api/calls"))["calls"]
        if not calls:
            break
        await asyncio.sleep(0.1)
    assert calls == [], err
    waiting = {q["queue_id"]: q["waiting"] for q in (await get(api, "/api/queues"))["queues"]}
    assert waiting == {"sales": 0, "support": 0, "billing": 0}


@pytest.mark.parametrize(
    ("stop", "code", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
async def test_ctrl_c_stops_every_sipp_process_and_leaves_no_call_behind(
    demo_server: tuple[RunningServer, str],
    config_dir: Path,
    tmp_path: Path,
    stop: signal.Signals,
    code: int,
    said: str,
) -> None:
    server, api = demo_server
    # Support callers: bob (support 5) answers them; alice (support 2) does not qualify.
    args = ["--agents", "2", "--rate", "1", "--duration", "60", "--talk", "30", "--number", "202"]
    scratch = tmp_path / "demo"
    demo = await asyncio.create_subprocess_exec(
        *demo_command(config_dir, *args),
        env=demo_env(scratch),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    for _ in range(400):  # until bob is talking to a caller (generous: a loaded machine)
        if (await get(api, "/api/agents/bob"))["state"] == "on_call":
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"no simulated call reached bob\n{agent_story(server)}")
    assert len(sipps_under(scratch)) >= 2
    demo.send_signal(stop)
    _, raw_err = await asyncio.wait_for(demo.communicate(), 30)
    err = raw_err.decode()
    assert demo.returncode == code, err[-3000:]
    assert said in err
    assert sipps_under(scratch) == []
    for _ in range(50):
        calls = (await get(api, "/api/calls"))["calls"]
        if not calls:
            break
        await asyncio.sleep(0.1)
    assert calls == []
    # The demo logged its agents out; bob's logout took effect when his call was hung up.
    for _ in range(50):
        states = {a["agent_id"]: a["state"] for a in (await get(api, "/api/agents"))["agents"]}
        if states["bob"] == "logged_out":
            break
        await asyncio.sleep(0.1)
    assert (states["alice"], states["bob"]) == ("logged_out", "logged_out"), states


def test_a_server_that_does_not_answer_is_a_clear_error(config_dir: Path) -> None:
    write_server_config(config_dir, free_port(), {"api": {"port": free_port(socket.SOCK_STREAM)}})
    demo = subprocess.run(
        demo_command(config_dir, "--duration", "5"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert demo.returncode == 1
    assert "does not answer" in demo.stderr and "cxos run" in demo.stderr, demo.stderr


def test_without_sipp_the_demo_says_how_to_get_it(config_dir: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    demo = subprocess.run(
        demo_command(config_dir),
        env={**os.environ, "PATH": str(bare)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert demo.returncode == 1
    assert "SIPp is not installed" in demo.stderr, demo.stderr
