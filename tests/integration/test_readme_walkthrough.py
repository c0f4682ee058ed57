"""The README's "Your first call, step by step", run as a newcomer runs it.

The commands are read from README.md itself, so the walkthrough cannot drift from what is proven
here. What differs from a newcomer's machine, and only that:

- the server is `cxos run` as `make run` starts it, on a copy of the shipped configuration whose
  ports are free ones (SIP, API, RTP), with its own data directory (so its own embedded
  PostgreSQL), and whose ``main`` line is open at all hours, so the call reaches the agent
  whatever the time of the test;
- the commands' ports are those of this server and of this webhook receiver;
- baresip runs headless (no sound card) and SIPp without a keyboard, on free ports.
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.loader import default_config_dir
from tests.integration.readme_steps import (
    REPOSITORY,
    Walkthrough,
    curl,
    readme_commands,
    start_walkthrough_server,
    wait_until,
)
from tests.integration.softphones import baresip_phone

pytestmark = [pytest.mark.peer, pytest.mark.timeout(180)]


@pytest.fixture
def walkthrough() -> Iterator[Walkthrough]:
    # Not under pytest's 0700 temporary folder: running as root, the embedded PostgreSQL runs as
    # another account that must be able to reach its data directory (docs/storage.md).
    with tempfile.TemporaryDirectory(prefix="cxos-walk-", ignore_cleanup_errors=True) as name:
        workdir = Path(name)
        workdir.chmod(0o755)
        running = start_walkthrough_server(workdir)
        try:
            yield running
        finally:
            for process in running.helpers:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        process.wait(5)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait(5)
            code = running.server.stop()
            assert code == 0, f"server exited with {code}:\n{running.server.log()[-4000:]}"


def test_every_step_of_the_readme_walkthrough_works(walkthrough: Walkthrough) -> None:
    steps = readme_commands()
    w = walkthrough
    assert "make run" in steps.setup
    assert len(steps.setup) == 2

    with baresip_phone(w.workdir / "baresip") as phone:
        # 1. Register a softphone as agent alice.
        created = phone.command("uanew", w.adjust(steps.one("<sip:1001@")))
        assert created["ok"], created
        registered = phone.wait_event(("REGISTER_OK", "REGISTER_FAIL"))
        assert registered is not None and registered["type"] == "REGISTER_OK", phone.log()

        # 2. Log alice in.
        status, body = curl(w.adjust(steps.one("curl -X POST", "/login")))
        assert (status, body["accepted"]) == (202, True), body
        calls_url = w.adjust(steps.one("curl -H", "/api/calls"))
        wallboard_url = w.adjust(steps.one("curl -H", "/api/wallboard"))
        assert wait_until(lambda: agent(curl(wallboard_url)[1], "alice")["state"] == "available")

        # 3. The webhook receiver, crm.yaml in the configuration, a reload.
        w.start_receiver(steps.one(".venv/bin/python examples/crm_receiver.py"))
        assert steps.one("cp examples/crm.yaml") == "cp examples/crm.yaml config/defaults/crm.yaml"
        # `make run` installs CXOS editable: its configuration is this folder's config/defaults.
        assert default_config_dir().resolve() == REPOSITORY / "config" / "defaults"
        crm = (REPOSITORY / "examples" / "crm.yaml").read_text()
        assert crm.count("127.0.0.1:8088") == 1
        (w.config_dir / "crm.yaml").write_text(w.adjust(crm))
        status, body = curl(w.adjust(steps.one("curl -X POST", "/api/admin/reload")))
        assert status in (200, 202), body
        assert w.server.wait_for_log("configuration reloaded") == 1

        # 4. The test call: IVR, key 1, the sales queue, alice's phone answers by itself.
        caller = w.start_caller(steps.one("sipp "))
        established = phone.wait_event(("CALL_ESTABLISHED", "CALL_CLOSED"), timeout=20)
        assert established is not None and established["type"] == "CALL_ESTABLISHED", phone.log()

        # 5. The wallboard page and the REST snapshot show the call with alice on it.
        assert wait_until(lambda: bridged_to(curl(calls_url)[1], "alice") is not None)
        (call,) = curl(calls_url)[1]["calls"]
        assert (call["did"], call["caller_id"]) == ("100", "5551234")
        board = curl(wallboard_url)[1]
        assert agent(board, "alice")["state"] not in ("available", "logged_out", "paused")
        page = w.page(steps.wallboard_url)
        assert "<html" in page.lower()

        out, err = caller.communicate(timeout=60)
        assert caller.returncode == 0, f"{out[-2000:]}\n{err[-2000:]}"
        assert phone.wait_event(("CALL_CLOSED",), timeout=10) is not None

    # 6. The CDR, from the embedded PostgreSQL through its socket.
    query = steps.one("psql ")

    def cdr_row() -> list[str]:
        for line in w.shell(query).splitlines():
            cells = [cell.strip() for cell in line.split("|")]
            if cells[0] == call["call_id"]:
                return cells
        return []

    # The CDR closes once the call's last events are stored: the hang-up fills hangup_by.
    assert wait_until(lambda: cdr_row()[-1:] == ["caller"], within=15), w.shell(query)
    _, did, caller_id, agents, talk_seconds, _ = cdr_row()
    assert (did, caller_id, agents) == ("100", "5551234", "{alice}")
    assert 5 < float(talk_seconds) < 20  # answered ~8 s in, BYE ~20 s in

    # 7. The signed deliveries the receiver verified and stored, the call's from start to end.
    types = steps.one("python3 -m json.tool")
    assert wait_until(lambda: '"call.ended"' in w.shell(types), within=15), w.receiver_log()
    listed = [line.split('"')[3] for line in w.shell(types).splitlines()]
    stored = (w.workdir / "deliveries.jsonl").read_text().splitlines()
    of_call = [e["type"] for e in map(json.loads, stored) if e["call_id"] == call["call_id"]]
    assert of_call[0] == "call.started" and "call.ended" in of_call
    assert {"queue.joined", "agent.offered", "agent.answered"} <= set(of_call)
    assert listed == [json.loads(line)["type"] for line in stored]


def agent(board: dict[str, Any], agent_id: str) -> dict[str, Any]:
    (found,) = [a for a in board["agents"] if a["agent_id"] == agent_id]
    return dict(found)


def bridged_to(calls: dict[str, Any], agent_id: str) -> dict[str, Any] | None:
    for call in calls["calls"]:
        if call.get("agent_id") == agent_id:
            return dict(call)
    return None
