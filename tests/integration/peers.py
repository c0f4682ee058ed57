"""Helpers to run a real CXOS server process on loopback and the real peers that talk to it."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML

SCENARIOS = Path(__file__).parent / "scenarios"


def free_port(kind: int = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``host`` (SIP listens on both with one number)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, kind) as first:
            first.bind((host, 0))
            port = int(first.getsockname()[1])
            other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
            with socket.socket(family, other) as second:
                try:
                    second.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    config_dir: Path
    log_path: Path
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 10.0) -> int:
        """How often ``text`` is in the log once it reaches ``count`` (or the timeout passes)."""
        deadline = time.monotonic() + timeout
        seen = self.log().count(text)
        while seen < count and time.monotonic() < deadline:
            time.sleep(0.05)
            seen = self.log().count(text)
        return seen

    def stop(self, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return int(self.process.returncode)


TEST_DATABASE_PREFIX = f"cxos_it_{os.getpid()}_"


def create_test_database() -> str:
    """A fresh database on the local PostgreSQL for one server process; its URL.

    Dropped at the end of the test session (tests/conftest.py).
    """
    name = f"{TEST_DATABASE_PREFIX}{uuid.uuid4().hex[:12]}"
    subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-qc",
            f"CREATE DATABASE {name}",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def rtp_range(width: int = 400) -> dict[str, int]:
    first = random.randrange(10000, 19000 - width, 2)
    return {"port_min": first, "port_max": first + width - 1}


def write_server_config(
    config_dir: Path, port: int, extra: dict[str, object] | None = None
) -> None:
    """server.yaml for a test server on ``port`` with its own database; ``extra`` overrides."""
    yaml = YAML()
    settings: dict[str, object] = {
        "node": "test-node",
        "sip": {
            "listen": [
                {"transport": "udp", "host": "127.0.0.1", "port": port},
                {"transport": "tcp", "host": "127.0.0.1", "port": port},
                {"transport": "udp", "host": "::1", "port": port},
                {"transport": "tcp", "host": "::1", "port": port},
            ]
        },
        "api": {"host": "127.0.0.1", "port": free_port(socket.SOCK_STREAM)},
        "storage": {"database_url": create_test_database()},
        # A range of its own, away from the shipped 20000-29999 a developer's `cxos run` or a
        # benchmark may be holding, and below the kernel's ephemeral ports.
        "rtp": rtp_range(),
        "shutdown_grace": 2.0,
    }
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(settings.get(key), dict):
            settings[key] = {**settings[key], **value}  # type: ignore[dict-item]
        else:
            settings[key] = value
    with (config_dir / "server.yaml").open("w") as handle:
        yaml.dump(settings, handle)


def start_server(
    config_dir: Path, port: int, log_path: Path, host: str = "127.0.0.1"
) -> RunningServer:
    log = log_path.open("wb")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cxos.cli",
            "--log-level",
            "DEBUG",
            "run",
            "--config",
            str(config_dir),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=config_dir,
    )
    server = RunningServer(process, config_dir, log_path, host, port)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        # The application's own line, logged once every component has started.
        if re.search(r"CXOS node \S+ ready", server.log()):
            return server
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"server did not become ready:\n{server.log()}")


@dataclass
class SippResult:
    returncode: int
    stdout: str
    stderr: str
    workdir: Path

    def file(self, suffix: str) -> str:
        found = sorted(self.workdir.glob(f"*{suffix}"))
        return found[0].read_text(errors="replace") if found else ""


def run_sipp(
    target: str,
    args: Sequence[str],
    workdir: Path,
    timeout: float = 60.0,
    local_ip: str = "127.0.0.1",
) -> SippResult:
    """Run SIPp to completion (``-m`` must bound the calls) and return what it reported."""
    workdir.mkdir(parents=True, exist_ok=True)
    command = [
        shutil.which("sipp") or "sipp",
        target,
        "-i",
        local_ip,
        "-p",
        str(free_port(host=local_ip)),
        "-nostdin",
        "-timeout",
        f"{int(timeout) - 5}s",
        "-timeout_error",
        "-trace_err",
        "-trace_screen",
        *args,
    ]
    result = subprocess.run(
        command,
        cwd=workdir,
        capture_output=True,
        text=True,
        errors="replace",  # SIPp echoes stray binary datagrams in its messages
        timeout=timeout,
        check=False,
    )
    return SippResult(result.returncode, result.stdout, result.stderr, workdir)
