"""SIP signalling against real peers (SIPp) over UDP and TCP, IPv4 and IPv6, on loopback."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.integration.peers import (
    SCENARIOS,
    RunningServer,
    SippResult,
    free_port,
    run_sipp,
    start_server,
    write_server_config,
)

pytestmark = pytest.mark.peer


def sipp_ok(result: SippResult) -> None:
    assert result.returncode == 0, (
        f"SIPp failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
        f"{result.stderr[-2000:]}\nerrors:\n{result.file('_errors.log')[-3000:]}"
    )


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_options_ping_is_answered_with_capabilities(
    server: RunningServer, tmp_path: Path, transport: str
) -> None:
    result = run_sipp(
        server.address,
        ["-sf", str(SCENARIOS / "options.xml"), "-m", "3", "-t", transport],
        tmp_path,
    )
    sipp_ok(result)


def test_options_ping_over_ipv6(server: RunningServer, tmp_path: Path) -> None:
    result = run_sipp(
        f"[::1]:{server.port}",
        ["-sf", str(SCENARIOS / "options.xml"), "-m", "1"],
        tmp_path,
        local_ip="::1",
    )
    sipp_ok(result)


def credentials_file(directory: Path, user: str, password: str) -> Path:
    path = directory / "agents.csv"
    path.write_text(f"SEQUENTIAL\n{user};[authentication username={user} password={password}]\n")
    return path


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_agent_registers_with_digest_and_unregisters(
    server: RunningServer, tmp_path: Path, transport: str
) -> None:
    users = credentials_file(tmp_path, "1001", "change-me-1001")
    result = run_sipp(
        server.address,
        ["-sf", str(SCENARIOS / "register.xml"), "-inf", str(users), "-m", "1", "-t", transport],
        tmp_path / "sipp",
    )
    sipp_ok(result)
    log = server.log()
    assert "change-me-1001" not in log  # credentials never reach the log


def test_wrong_password_is_refused(server: RunningServer, tmp_path: Path) -> None:
    users = credentials_file(tmp_path, "1001", "not-the-password")
    result = run_sipp(
        server.address,
        ["-sf", str(SCENARIOS / "register_wrong_password.xml"), "-inf", str(users), "-m", "1"],
        tmp_path / "sipp",
    )
    sipp_ok(result)


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_stock_uac_calls_are_answered_and_hung_up(
    server: RunningServer, tmp_path: Path, transport: str
) -> None:
    # SIPp's built-in caller: INVITE with SDP, 100/180 optional, 200, ACK, pause, BYE → 200.
    result = run_sipp(
        server.address,
        ["-sn", "uac", "-s", "100", "-m", "10", "-r", "10", "-d", "200", "-t", transport],
        tmp_path,
    )
    sipp_ok(result)
    assert server.wait_for_log("cause='normal', hangup_by='caller'", 10) == 10
    assert server.log().count("CallAnswered(") == 10


def test_call_from_unknown_source_is_forbidden(config_dir: Path, tmp_path: Path) -> None:
    (config_dir / "trunks.yaml").write_text("trunks:\n  - {id: carrier, sources: [127.0.0.2/32]}\n")
    port = free_port()
    write_server_config(config_dir, port)
    server = start_server(config_dir, port, tmp_path / "server.log")
    try:
        refused = run_sipp(
            server.address,
            ["-sf", str(SCENARIOS / "uac_forbidden.xml"), "-m", "1", "-s", "100"],
            tmp_path / "a",
        )
        sipp_ok(refused)
        # The same call from the trunk's own address goes through.
        accepted = run_sipp(
            server.address,
            ["-sn", "uac", "-s", "100", "-m", "1", "-d", "100"],
            tmp_path / "b",
            local_ip="127.0.0.2",
        )
        sipp_ok(accepted)
    finally:
        assert server.stop() == 0


def test_cancel_while_ringing(config_dir: Path, tmp_path: Path) -> None:
    (config_dir / "dialplan.yaml").write_text(
        'numbers:\n  "200": {ivr: main, answer_after: 10}\n  "*": {ivr: main}\n'
    )
    port = free_port()
    write_server_config(config_dir, port)
    server = start_server(config_dir, port, tmp_path / "server.log")
    try:
        result = run_sipp(
            server.address,
            ["-sf", str(SCENARIOS / "uac_cancel.xml"), "-s", "200", "-m", "2"],
            tmp_path / "s",
        )
        sipp_ok(result)
        assert server.wait_for_log("cause='cancelled', hangup_by='caller'", 2) == 2
    finally:
        assert server.stop() == 0


def test_sigterm_ends_calls_in_progress_with_bye(config_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    write_server_config(config_dir, port)
    server = start_server(config_dir, port, tmp_path / "server.log")
    workdir = tmp_path / "sipp"
    workdir.mkdir()
    caller = subprocess.Popen(
        [
            "sipp",
            server.address,
            "-sf",
            str(SCENARIOS / "uac_await_bye.xml"),
            "-s",
            "100",
            "-m",
            "3",
            "-l",
            "3",
            "-i",
            "127.0.0.1",
            "-p",
            str(free_port()),
            "-nostdin",
            "-timeout",
            "40s",
            "-timeout_error",
            "-trace_err",
        ],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert server.wait_for_log("CallAnswered(", 3, timeout=20) == 3
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(20) == 0
        out, err = caller.communicate(timeout=30)
        assert caller.returncode == 0, out.decode()[-3000:] + err.decode()[-2000:]
        assert server.log().count("cause='normal', hangup_by='server'") == 3
    finally:
        if caller.poll() is None:
            caller.kill()
        server.stop()
