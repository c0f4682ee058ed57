"""Real softphones for tests: PyVoIP inside this process, baresip as a child process driven over
its TCP control socket (netstring-framed JSON commands, events on the same connection).

Every helper is a context manager that always stops what it started, and every wait is bounded.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyVoIP.VoIP import PhoneStatus, VoIPCall, VoIPPhone

from tests.integration.peers import free_port

# --- PyVoIP -------------------------------------------------------------------------------------


@contextmanager
def pyvoip_phone(
    server_port: int,
    user: str,
    password: str,
    *,
    answer_timeout: int = 5,
    on_call: Callable[[VoIPCall], None] | None = None,
) -> Iterator[VoIPPhone]:
    """A PyVoIP phone for ``user`` aimed at the server on 127.0.0.1; not started yet.
    ``answer_timeout`` bounds each wait for a server answer, in seconds (PyVoIP's default: 30).
    ``on_call`` runs in a thread of its own for each incoming call (None: calls are refused
    busy); the phone has sent 180 Ringing, and the call waits for ``answer()``."""
    phone = VoIPPhone(
        "127.0.0.1",
        server_port,
        user,
        password,
        myIP="127.0.0.1",
        callCallback=on_call,
        sipPort=free_port(),
    )
    phone.sip.register_timeout = answer_timeout
    try:
        yield phone
    finally:
        phone.stop()


def wait_for_status(
    phone: VoIPPhone, wanted: tuple[PhoneStatus, ...], timeout: float = 10.0
) -> PhoneStatus:
    """The phone's status once it is one of ``wanted``, or whatever it is when time runs out.
    PyVoIP retries a failed registration in a background thread before it settles on FAILED."""
    deadline = time.monotonic() + timeout
    status: PhoneStatus = phone.get_status()
    while status not in wanted and time.monotonic() < deadline:
        time.sleep(0.02)
        status = phone.get_status()
    return status


# --- baresip ------------------------------------------------------------------------------------

BARESIP_MODULES = "/usr/lib/baresip/modules"


def baresip_config(
    ctrl_port: int, sip_port: int, *, audio_file: Path | None = None, dump_dir: Path | None = None
) -> str:
    """A headless configuration: loopback only, no sound card, G.711, control over TCP.

    The phone sends a 440 Hz sine, or ``audio_file`` (an 8 kHz mono WAV; baresip hangs up when
    it ends, so make it longer than the call). With ``dump_dir`` each call's audio is written
    there by the ``sndfile`` filter: ``dump-*-enc.wav`` what the phone sent, ``-dec.wav`` what
    it received."""
    if audio_file is None:
        source = ["audio_source ausine,440", "ausrc_srate 48000", "ausrc_channels 2"]
        source_module = "module ausine.so"
    else:
        source = [f"audio_source aufile,{audio_file}", "ausrc_srate 8000", "ausrc_channels 1"]
        source_module = "module aufile.so"
    dump = [] if dump_dir is None else ["module sndfile.so", f"snd_path {dump_dir}"]
    return "\n".join(
        [
            "poll_method epoll",
            f"sip_listen 127.0.0.1:{sip_port}",
            # Without it the SDP carries the machine's external address.
            "net_interface 127.0.0.1",
            "audio_player aubridge,nil",
            "audio_alert aubridge,nil",
            *source,
            f"module_path {BARESIP_MODULES}",
            "module g711.so",
            "module aubridge.so",
            source_module,
            *dump,
            "module_app account.so",
            "module_app menu.so",
            "module_app ctrl_tcp.so",
            f"ctrl_tcp_listen 127.0.0.1:{ctrl_port}",
            "",
        ]
    )


@dataclass
class Baresip:
    """A running baresip with its control connection."""

    process: subprocess.Popen[bytes]
    control: socket.socket
    log_path: Path
    events: list[dict[str, Any]] = field(default_factory=list)
    _buffer: bytes = b""
    _tokens: int = 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> dict[str, Any]:
        """Run a command and return its response; events that arrive meanwhile are kept."""
        self._tokens += 1
        token = f"t{self._tokens}"
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self.control.sendall(b"%d:%s," % (len(body), body))
        deadline = time.monotonic() + timeout
        while True:
            message = self._next(deadline)
            if message is None:
                raise TimeoutError(f"baresip did not answer {command!r} within {timeout} s")
            if message.get("response") and message.get("token") == token:
                return message
            self.events.append(message)

    def wait_event(self, types: tuple[str, ...], timeout: float = 10.0) -> dict[str, Any] | None:
        """The first event (already seen or arriving within ``timeout``) whose type is one of
        ``types``; None when none came."""
        for event in self.events:
            if event.get("type") in types:
                return event
        deadline = time.monotonic() + timeout
        while (message := self._next(deadline)) is not None:
            if message.get("event"):
                self.events.append(message)
                if message.get("type") in types:
                    return message
        return None

    def _next(self, deadline: float) -> dict[str, Any] | None:
        """One netstring-framed JSON message, or None at the deadline."""
        while True:
            colon = self._buffer.find(b":")
            if colon > 0:
                length = int(self._buffer[:colon])
                end = colon + 1 + length
                if len(self._buffer) > end:
                    payload, self._buffer = self._buffer[colon + 1 : end], self._buffer[end + 1 :]
                    decoded: dict[str, Any] = json.loads(payload)
                    return decoded
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.control.settimeout(remaining)
            try:
                chunk = self.control.recv(65536)
            except TimeoutError:
                return None
            if not chunk:
                raise ConnectionError(f"baresip closed its control socket:\n{self.log()[-2000:]}")
            self._buffer += chunk


def _sip_port() -> int:
    """A port for baresip's ``sip_listen``: free for UDP and TCP, and the next one free for
    TCP too, where baresip listens for SIP over TLS (it does not start when that bind fails)."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tls:
            try:
                tls.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port for baresip's SIP and SIP over TLS")


@contextmanager
def baresip_phone(
    directory: Path, *, audio_file: Path | None = None, dump_dir: Path | None = None
) -> Iterator[Baresip]:
    """Start baresip with no account (add one with ``uanew`` once the control connection is up,
    so that no registration event is missed); stop it on exit, killing it if it lingers.
    ``audio_file`` and ``dump_dir``: see :func:`baresip_config`."""
    directory.mkdir(parents=True, exist_ok=True)
    ctrl_port = free_port(socket.SOCK_STREAM)
    config = baresip_config(ctrl_port, _sip_port(), audio_file=audio_file, dump_dir=dump_dir)
    (directory / "config").write_text(config)
    (directory / "accounts").write_text("")
    log_path = directory / "baresip.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["baresip", "-f", str(directory)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
        )
    control: socket.socket | None = None
    try:
        deadline = time.monotonic() + 10
        while control is None:
            if process.poll() is not None:
                raise RuntimeError(f"baresip exited early:\n{log_path.read_text()[-2000:]}")
            try:
                control = socket.create_connection(("127.0.0.1", ctrl_port), timeout=1)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield Baresip(process, control, log_path)
    finally:
        if control is not None:
            control.close()
        process.terminate()
        try:
            # baresip unregisters on SIGTERM; a server that no longer answers would keep it
            # waiting for the transaction timeout.
            process.wait(3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def account_line(
    user: str, password: str, server_port: int, *, regint: int = 60, auto_answer: bool = False
) -> str:
    """baresip's account syntax: an address with the password and registration interval;
    ``auto_answer`` has the phone answer incoming calls by itself (``answermode=auto``)."""
    line = (
        f"<sip:{user}@127.0.0.1:{server_port};transport=udp>;auth_pass={password};regint={regint}"
    )
    return line + (";answermode=auto" if auto_answer else "")
