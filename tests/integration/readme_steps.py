"""The README walkthrough's commands, and a server and peers to run them against.

The commands are taken from README.md's fenced blocks; `Walkthrough.adjust` moves their ports to
those of the test server and receiver, nothing else.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from config.loader import default_config_dir
from tests.integration.peers import RunningServer, free_port, rtp_range

REPOSITORY = Path(__file__).resolve().parents[2]
README = REPOSITORY / "README.md"
WALKTHROUGH_HEADING = "## Your first call, step by step"
#: The shipped addresses the README's commands use.
SHIPPED_SIP = "127.0.0.1:5060"
SHIPPED_API = "127.0.0.1:8080"
SHIPPED_RECEIVER = "8088"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadmeCommands:
    setup: list[str]
    """The command lines of the set-up block."""
    walkthrough: list[str]
    """Every line of every fenced block of the walkthrough section."""
    wallboard_url: str

    def one(self, prefix: str, contains: str = "") -> str:
        """The only walkthrough line starting with ``prefix`` (and containing ``contains``)."""
        found = [c for c in self.walkthrough if c.startswith(prefix) and contains in c]
        assert len(found) == 1, f"README: {len(found)} lines start with {prefix!r}: {found}"
        return found[0]


def _blocks(text: str) -> list[list[str]]:
    return [
        [line for line in block.splitlines() if line.strip()]
        for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.M | re.S)
    ]


def readme_commands() -> ReadmeCommands:
    text = README.read_text()
    before, heading, after = text.partition(WALKTHROUGH_HEADING)
    assert heading, f"README has no {WALKTHROUGH_HEADING!r}"
    section = after.split("\n## ", 1)[0]
    setup_block = before.split("## Set up", 1)[1]
    setup = [line.split("#", 1)[0].strip() for line in _blocks(setup_block)[0]]
    urls = re.findall(r"<(http://[^>]*/wallboard#token=[^>]*)>", section)
    assert len(urls) == 1, urls
    return ReadmeCommands(
        setup=setup,
        walkthrough=[line for block in _blocks(section) for line in block],
        wallboard_url=urls[0],
    )


def curl(command: str) -> tuple[int, Any]:
    """Run a README curl command; its HTTP status and JSON answer."""
    arguments = shlex.split(command)
    assert arguments[0] == "curl"
    result = subprocess.run(
        [*arguments, "-sS", "-w", "\n%{http_code}"],
        capture_output=True,
        text=True,
        timeout=15,
        check=True,
    )
    body, _, status = result.stdout.rpartition("\n")
    return int(status), json.loads(body) if body.strip() else None


def wait_until(check: Callable[[], bool], within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@dataclass
class Walkthrough:
    server: RunningServer
    workdir: Path
    config_dir: Path
    api_port: int
    receiver_port: int = field(default_factory=lambda: free_port(socket.SOCK_STREAM))
    helpers: list[subprocess.Popen[str]] = field(default_factory=list)

    def adjust(self, text: str) -> str:
        """A README command (or file) with the ports of this test's server and receiver."""
        text = text.replace(SHIPPED_SIP, f"127.0.0.1:{self.server.port}")
        text = text.replace(SHIPPED_API, f"127.0.0.1:{self.api_port}")
        text = text.replace(f"--port {SHIPPED_RECEIVER}", f"--port {self.receiver_port}")
        return text.replace(f"127.0.0.1:{SHIPPED_RECEIVER}", f"127.0.0.1:{self.receiver_port}")

    def shell(self, command: str) -> str:
        """A README shell command run in the work directory (where `make run` would be)."""
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
        return result.stdout + result.stderr

    def page(self, url: str) -> str:
        with urllib.request.urlopen(self.adjust(url), timeout=10) as response:
            assert response.status == 200
            return str(response.read().decode())

    def start_receiver(self, command: str) -> None:
        """examples/crm_receiver.py as the README starts it (in the background), once it listens."""
        arguments = shlex.split(self.adjust(command).removesuffix("&").strip())
        assert arguments[:2] == [".venv/bin/python", "examples/crm_receiver.py"], arguments
        arguments[:2] = [sys.executable, str(REPOSITORY / "examples" / "crm_receiver.py")]
        log = (self.workdir / "receiver.log").open("w")
        process = subprocess.Popen(
            arguments, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, text=True
        )
        self.helpers.append(process)

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.receiver_port), timeout=1).close()
            except OSError:
                return process.poll() is not None
            return True

        assert wait_until(listening) and process.poll() is None, self.receiver_log()

    def receiver_log(self) -> str:
        return (self.workdir / "receiver.log").read_text(errors="replace")

    def start_caller(self, command: str) -> subprocess.Popen[str]:
        """The README's SIPp caller, on free local ports and without a keyboard."""
        arguments = shlex.split(self.adjust(command))
        scenario = arguments.index("-sf") + 1
        arguments[scenario] = str(REPOSITORY / arguments[scenario])
        arguments[0] = shutil.which("sipp") or "sipp"
        arguments += ["-p", str(free_port()), "-mp", str(free_port()), "-nostdin"]
        arguments += ["-timeout", "50s", "-timeout_error", "-trace_err"]
        process = subprocess.Popen(
            arguments, cwd=self.workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.helpers.append(process)
        return process


def _open_at_all_hours(config_dir: Path) -> None:
    """The main line's business-hours check always goes on to the menu (see the test's doc): a
    first branch that every new call takes (``vip`` starts as "false")."""
    tree = config_dir / "ivr" / "main.yaml"
    text = tree.read_text()
    holiday = "          - when: {holiday: us}\n"
    assert text.count(holiday) == 1
    always = (
        '          - when: {variable: vip, one_of: ["false"]}\n            next: identify_caller\n'
    )
    tree.write_text(text.replace(holiday, always + holiday))


def _free_ports(config_dir: Path, sip_port: int, api_port: int) -> None:
    yaml = YAML()
    path = config_dir / "server.yaml"
    settings = yaml.load(path.read_text())
    for listen in settings["sip"]["listen"]:
        listen["port"] = sip_port
    settings["api"]["port"] = api_port
    settings["rtp"].update(rtp_range())
    with path.open("w") as handle:
        yaml.dump(settings, handle)


def start_walkthrough_server(workdir: Path) -> Walkthrough:
    """`cxos run` as `make run` starts it, on a copy of the shipped configuration."""
    config_dir = workdir / "conf"
    shutil.copytree(default_config_dir(), config_dir)
    sip_port, api_port = free_port(), free_port(socket.SOCK_STREAM)
    _free_ports(config_dir, sip_port, api_port)
    _open_at_all_hours(config_dir)
    log_path = workdir / "server.log"
    command = [sys.executable, "-m", "cxos.cli", "run", "--config", str(config_dir)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--data-dir", str(workdir / "cxos-data")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            cwd=workdir,
        )
    server = RunningServer(process, config_dir, log_path, "127.0.0.1", sip_port)
    deadline = time.monotonic() + 90  # the first start creates the embedded cluster
    while re.search(r"CXOS node \S+ ready", server.log()) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            process.send_signal(signal.SIGTERM)
            process.wait(15)
            raise RuntimeError(f"server did not become ready:\n{server.log()[-4000:]}")
        time.sleep(0.1)
    return Walkthrough(server=server, workdir=workdir, config_dir=config_dir, api_port=api_port)
