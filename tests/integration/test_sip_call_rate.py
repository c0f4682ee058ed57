"""A carrier's calls at more than the per-source request rate: its INVITEs count against the
trunk's own call rate limit, so none is dropped. Addresses that are no trunk's keep meeting the
per-source limit (both side by side: tests/sip/test_sip_call_table.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.peers import free_port, run_sipp, start_server, write_server_config

pytestmark = pytest.mark.peer


def test_a_trunk_calls_faster_than_the_per_source_limit_allows(
    config_dir: Path, tmp_path: Path
) -> None:
    # Two INVITEs a second per source: SIPp's 40 calls at 20 a second from the shipped trunk
    # (127.0.0.0/8, 500 calls a second by default) would take 20 s under it.
    port = free_port()
    write_server_config(config_dir, port, {"security": {"request_rate": 2.0, "request_burst": 2}})
    server = start_server(config_dir, port, tmp_path / "server.log")
    try:
        result = run_sipp(
            server.address,
            [*("-sn", "uac", "-s", "100", "-m", "40", "-r", "20", "-d", "0")],
            tmp_path / "sipp",
            timeout=30.0,
        )
        assert result.returncode == 0, (
            f"SIPp failed ({result.returncode}):\n{result.stdout[-2000:]}\n"
            f"errors:\n{result.file('_errors.log')[-2000:]}"
        )
        # Every call set up at the first INVITE: none was dropped and retransmitted.
        assert "Retransmissions" not in result.file("_errors.log")
        assert server.wait_for_log("hangup_by='caller'", 40) == 40
    finally:
        assert server.stop() == 0
