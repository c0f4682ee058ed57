"""Starting, reloading and stopping the server process the way an admin does."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.peers import (
    SCENARIOS,
    RunningServer,
    free_port,
    run_sipp,
    write_server_config,
)

pytestmark = pytest.mark.peer


def test_server_refuses_to_start_on_a_bad_configuration(config_dir: Path) -> None:
    write_server_config(config_dir, free_port())
    (config_dir / "agents.yaml").write_text("agents:\n  - {id: a1, sip_user: '2001'}\n")
    result = subprocess.run(
        [sys.executable, "-m", "cxos.cli", "run", "--config", str(config_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert f"{config_dir / 'agents.yaml'}:2: agents.0: an agent needs password" in result.stderr
    assert "refusing to start: 1 configuration problem(s)" in result.stderr


def test_sighup_with_a_broken_file_keeps_the_running_configuration(
    server: RunningServer, tmp_path: Path
) -> None:
    good = (server.config_dir / "trunks.yaml").read_text()
    (server.config_dir / "trunks.yaml").write_text("trunks:\n  - {id: t1, sources: [not-an-ip]}\n")
    server.process.send_signal(signal.SIGHUP)
    assert server.wait_for_log("reload refused:") == 1
    assert f"{server.config_dir / 'trunks.yaml'}:2: trunks.0.sources" in server.log()
    # Calls from the trunk of the running configuration still go through.
    result = run_sipp(
        server.address, ["-sn", "uac", "-s", "100", "-m", "1", "-d", "100"], tmp_path / "a"
    )
    assert result.returncode == 0, result.stdout[-2000:]

    # A fixed file is taken on the next SIGHUP: now 127.0.0.1 is no longer a trunk.
    (server.config_dir / "trunks.yaml").write_text(good.replace("127.0.0.0/8", "127.0.0.2/32"))
    server.process.send_signal(signal.SIGHUP)
    assert server.wait_for_log("configuration reloaded") == 1
    refused = run_sipp(
        server.address,
        ["-sf", str(SCENARIOS / "uac_forbidden.xml"), "-s", "100", "-m", "1"],
        tmp_path / "b",
    )
    assert refused.returncode == 0, refused.stdout[-2000:]
