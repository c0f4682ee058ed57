"""What a SIP server on the internet meets every day, aimed at a test server on loopback:
SIPVicious scans, request floods from one address and random garbage, and small probes that tell
whether a source still gets answers.

Linux routes all of 127.0.0.0/8 to the loopback interface, so each attacker binds its socket to
its own 127.0.0.x address and the server sees it as a distinct source. Every sender here is
bounded in count and time, and every wait has a timeout.
"""

from __future__ import annotations

import os
import random
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from telephony.sip.errors import SipParseError
from telephony.sip.message import SipResponse, parse_message
from tests.integration.peers import RunningServer, free_port, start_server, write_server_config

Address = tuple[str, int]

# --- a server whose only trunk is 127.0.0.1 ---------------------------------------------------


def attack_target(
    config_dir: Path,
    log_path: Path,
    *,
    trunk: str = "127.0.0.1/32",
    security: dict[str, object] | None = None,
) -> RunningServer:
    """A server with the shipped configuration except that the only trunk is ``trunk`` (the
    shipped trunk accepts all of 127.0.0.0/8, which would make every attacker here a carrier)
    and ``security`` overrides."""
    (config_dir / "trunks.yaml").write_text(
        f"trunks:\n  - {{id: carrier, name: Test carrier, sources: [{trunk}]}}\n"
    )
    port = free_port()
    write_server_config(config_dir, port, {"security": security} if security else None)
    return start_server(config_dir, port, log_path)


# --- SIP requests as simple scanners write them -------------------------------------------------


def sip_request(
    method: str,
    *,
    user: str,
    target: Address,
    source: Address,
    call_id: str | None = None,
    cseq: int = 1,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
) -> bytes:
    """One out-of-dialog request from ``source`` for ``user`` at the target, with a fresh branch
    and From tag."""
    host = f"{target[0]}:{target[1]}"
    lines = [
        f"{method} sip:{user}@{host} SIP/2.0",
        f"Via: SIP/2.0/UDP {source[0]}:{source[1]};branch=z9hG4bK{secrets.token_hex(8)};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@{host}>;tag={secrets.token_hex(4)}",
        f"To: <sip:{user}@{host}>",
        f"Call-ID: {call_id or secrets.token_hex(10)}",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:{user}@{source[0]}:{source[1]}>",
        *(f"{name}: {value}" for name, value in headers),
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def offer(source_ip: str) -> bytes:
    """A G.711 SDP offer, as a flood tool copies it from a real call."""
    return (
        "v=0\r\n"
        f"o=- 1 1 IN IP4 {source_ip}\r\n"
        "s=-\r\n"
        f"c=IN IP4 {source_ip}\r\n"
        "t=0 0\r\n"
        "m=audio 40000 RTP/AVP 0 8\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:8 PCMA/8000\r\n"
    ).encode()


# --- one UDP source, its answers collected by a thread ------------------------------------------


@dataclass(slots=True)
class UdpSource:
    """A UDP socket bound to one loopback address that records every datagram it gets back."""

    address: str
    sock: socket.socket = field(init=False)
    received: list[bytes] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _reader: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.address, 0))
        self.sock.settimeout(0.05)

    @property
    def local(self) -> Address:
        host, port = self.sock.getsockname()
        return str(host), int(port)

    def __enter__(self) -> UdpSource:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._reader is not None:
            self._reader.join(5)
        self.sock.close()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.received.append(data)

    def send(self, data: bytes, target: Address) -> None:
        self.sock.sendto(data, target)

    def datagrams(self) -> list[bytes]:
        with self._lock:
            return list(self.received)

    def clear(self) -> None:
        with self._lock:
            self.received.clear()

    def responses(self) -> list[SipResponse]:
        parsed = []
        for data in self.datagrams():
            try:
                message = parse_message(data)
            except SipParseError:
                continue
            if isinstance(message, SipResponse):
                parsed.append(message)
        return parsed

    def wait_quiet(self, quiet: float = 0.5, limit: float = 5.0) -> None:
        """Until nothing has arrived for ``quiet`` seconds (or ``limit`` has passed)."""
        deadline = time.monotonic() + limit
        seen = -1
        while time.monotonic() < deadline:
            with self._lock:
                count = len(self.received)
            if count == seen:
                return
            seen = count
            time.sleep(quiet)


def exchange(
    data: bytes, target: Address, source_ip: str, timeout: float = 1.0
) -> list[SipResponse]:
    """Send one datagram from ``source_ip`` and return every response within ``timeout``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source_ip, 0))
        sock.sendto(data, target)
        deadline = time.monotonic() + timeout
        answers = []
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                message = parse_message(sock.recv(65536))
            except TimeoutError:
                break
            if isinstance(message, SipResponse):
                answers.append(message)
        return answers


def options_round_trip(target: Address, source_ip: str, timeout: float = 2.0) -> float | None:
    """Seconds until an OPTIONS from ``source_ip`` is answered, or None when it is not."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source_ip, 0))
        local = sock.getsockname()
        request = sip_request("OPTIONS", user="ping", target=target, source=local)
        started = time.monotonic()
        sock.sendto(request, target)
        sock.settimeout(timeout)
        try:
            message = parse_message(sock.recv(65536))
        except TimeoutError:
            return None
        if isinstance(message, SipResponse) and message.status == 200:
            return time.monotonic() - started
        return None


# --- floods -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FloodReport:
    """What a flood sent and what came back."""

    sent: int
    seconds: float
    datagrams_back: int
    final_status_by_call: dict[str, int]
    """Call-ID → status of the first final response to that request."""

    @property
    def answered(self) -> int:
        return len(self.final_status_by_call)

    @property
    def statuses(self) -> Counter[int]:
        return Counter(self.final_status_by_call.values())


def paced(
    rate: float,
    send: Callable[[int], None],
    *,
    seconds: float,
    until: threading.Event | None = None,
    limit: float = 30.0,
) -> tuple[int, float]:
    """Call ``send(i)`` for i = 0, 1, ... at ``rate`` per second for at least ``seconds``, and
    on until ``until`` is set (never beyond ``limit`` seconds). How many were sent, in how many
    seconds."""
    started = time.monotonic()
    done = 0
    while True:
        elapsed = time.monotonic() - started
        finished = elapsed >= seconds and (until is None or until.is_set())
        if finished or elapsed >= limit:
            return done, elapsed
        due = int(elapsed * rate) + 1
        while done < due:
            send(done)
            done += 1
        time.sleep(0.001)


def request_flood(
    target: Address,
    *,
    source_ip: str,
    method: str,
    rate: float,
    seconds: float,
    until: threading.Event | None = None,
) -> FloodReport:
    """``method`` requests from ``source_ip`` at ``rate`` per second (see `paced` for how long),
    each a new transaction with its own Call-ID, never retransmitted, never acknowledged: what a
    flood tool sends. The users cycle through a few numbers."""
    with UdpSource(source_ip) as source:
        body = offer(source_ip) if method == "INVITE" else b""

        def send(index: int) -> None:
            request = sip_request(
                method,
                user=str(1000 + index % 10),
                target=target,
                source=source.local,
                call_id=f"flood-{index}-{secrets.token_hex(4)}",
                body=body,
            )
            source.send(request, target)

        sent, elapsed = paced(rate, send, seconds=seconds, until=until)
        # Final answers come at once; what follows is the server retransmitting them.
        source.wait_quiet(quiet=0.3, limit=1.5)
        finals: dict[str, int] = {}
        for response in source.responses():
            if response.status >= 200:
                finals.setdefault(response.call_id, response.status)
        return FloodReport(
            sent=sent,
            seconds=elapsed,
            datagrams_back=len(source.datagrams()),
            final_status_by_call=finals,
        )


def garbage(rng: random.Random) -> bytes:
    """One datagram no SIP parser can read a request from: random bytes, a request or response
    cut off before the end of its header section, or noise after a start line. Line feeds are
    left out of the random parts so that no header section can end by chance."""

    def noise(low: int, high: int) -> bytes:
        return bytes(b if b != 0x0A else 0 for b in rng.randbytes(rng.randint(low, high)))

    kind = rng.randrange(4)
    if kind == 0:
        return noise(1, 1400)
    if kind == 1:
        return b"INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP " + noise(1, 600)
    if kind == 2:
        return b"SIP/2.0 200 OK\r\n" + noise(1, 600)
    return rng.choice([b"REGISTER", b"OPTIONS ", b"\x16\x03\x01", b"GET / HTTP/1.1\r\n"]) + noise(
        0, 200
    )


def garbage_flood(
    target: Address,
    *,
    source_ip: str,
    rate: float,
    seconds: float,
    seed: int,
    until: threading.Event | None = None,
) -> FloodReport:
    """Random garbage datagrams from ``source_ip`` at ``rate`` per second (see `paced`)."""
    rng = random.Random(seed)
    with UdpSource(source_ip) as source:
        sent, elapsed = paced(
            rate, lambda _: source.send(garbage(rng), target), seconds=seconds, until=until
        )
        source.wait_quiet(quiet=0.3, limit=1.5)
        return FloodReport(
            sent=sent,
            seconds=elapsed,
            datagrams_back=len(source.datagrams()),
            final_status_by_call={},
        )


def udp_drops(port: int, host: str = "127.0.0.1") -> int:
    """Datagrams the kernel dropped for the UDP sockets bound to ``host:port`` because their
    receive buffers were full (the last column of /proc/net/udp)."""
    wanted = f"{socket.htonl(int.from_bytes(socket.inet_aton(host), 'big')):08X}:{port:04X}"
    drops = 0
    with open("/proc/net/udp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if fields[1] == wanted:
                drops += int(fields[-1])
    return drops


# --- SIPVicious -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanResult:
    returncode: int
    output: str


def sipvicious(tool: str, args: Sequence[str], workdir: Path, timeout: float = 45.0) -> ScanResult:
    """Run ``sipvicious_<tool>`` (svmap, svwar, svcrack) to completion; stdout and stderr as one
    text. The scripts live beside the interpreter in a virtualenv, else on PATH."""
    name = f"sipvicious_{tool}"
    beside = Path(sys.executable).parent / name
    program = str(beside) if beside.exists() else shutil.which(name) or name
    workdir.mkdir(parents=True, exist_ok=True)
    # Saved sessions go under $HOME/.sipvicious: keep them in the test's directory.
    env = {**os.environ, "HOME": str(workdir)}
    result = subprocess.run(
        [program, *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return ScanResult(returncode=result.returncode, output=result.stdout + result.stderr)


def svmap_user_agents(output: str) -> dict[str, str]:
    """The table svmap prints: device (host:port) → the User Agent it read from the answers."""
    rows = re.findall(r"^\|\s*(\S+:\d+)\s*\|\s*(.*?)\s*\|\s*$", output, re.MULTILINE)
    return dict(rows)
