"""TCP connections to a running server are bounded: idle and stalled ones are closed, CRLF
keep-alives are answered and keep a connection open, and past the connection limit new ones are
closed on arrival while the others go on working."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.peers import RunningServer, free_port, start_server, write_server_config

pytestmark = [pytest.mark.peer, pytest.mark.timeout(60)]

IDLE_SECONDS = 1.0
PARTIAL_SECONDS = 1.0
MAX_CONNECTIONS = 3


@pytest.fixture
def server(
    config_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[RunningServer]:
    """A server with short TCP timeouts; a test marked ``patient`` gets a long idle timeout
    instead, so that its connections stay open however slowly the machine runs."""
    patient = request.node.get_closest_marker("patient") is not None
    port = free_port()
    write_server_config(
        config_dir,
        port,
        {
            "sip": {
                "tcp_idle_timeout": 300.0 if patient else IDLE_SECONDS,
                "tcp_partial_message_timeout": PARTIAL_SECONDS,
                "max_tcp_connections": MAX_CONNECTIONS,
            }
        },
    )
    running = start_server(config_dir, port, tmp_path / "server.log")
    yield running
    assert running.stop() == 0, running.log()[-4000:]


def connect(server: RunningServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10.0)


def closed_by_server(sock: socket.socket, within: float = 10.0) -> bool:
    """Whether the server closes `sock` within `within` seconds (reading and dropping whatever
    it sends before)."""
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def options(sock: socket.socket) -> bytes:
    """An OPTIONS over `sock`; returns the server's answer (the status line onwards)."""
    local = sock.getsockname()
    call_id = uuid.uuid4().hex
    sock.sendall(
        (
            f"OPTIONS sip:100@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/TCP {local[0]}:{local[1]};branch=z9hG4bK{call_id[:12]}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@127.0.0.1>;tag={call_id[:8]}\r\n"
            "To: <sip:100@127.0.0.1>\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
    )
    sock.settimeout(10.0)
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    return answer


def test_an_idle_connection_is_closed(server: RunningServer) -> None:
    with connect(server) as sock:
        assert options(sock).startswith(b"SIP/2.0 200")
        assert closed_by_server(sock)


def test_keepalive_pings_get_pongs_and_keep_the_connection_open(server: RunningServer) -> None:
    with connect(server) as sock:
        sock.settimeout(10.0)
        # RFC 5626 §3.5.1: a CRLFCRLF ping is answered with a CRLF pong.
        for _ in range(int(4 * IDLE_SECONDS / 0.25)):
            sock.sendall(b"\r\n\r\n")
            assert sock.recv(16) == b"\r\n"
            time.sleep(0.25)
        # Four idle timeouts went by with pings: still open and serving requests.
        assert options(sock).startswith(b"SIP/2.0 200")
        assert "idle or stalled" not in server.log()


def test_a_message_trickled_byte_by_byte_is_cut_off(server: RunningServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"OPTIONS sip:100@127.0.0.1 SIP/2.0\r\n")
        closed = False
        # Each byte keeps the connection busy, but the message never completes.
        for _ in range(int(10 * PARTIAL_SECONDS / 0.2)):
            try:
                sock.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            sock.settimeout(0.2)
            try:
                if sock.recv(4096) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
        assert closed, "the server kept a connection trickling a message for 10 timeouts"


@pytest.mark.patient
def test_connections_over_the_limit_are_closed_and_the_others_still_work(
    server: RunningServer,
) -> None:
    kept = [connect(server) for _ in range(MAX_CONNECTIONS)]
    try:
        for sock in kept:  # each is in use, so the idle sweep leaves it alone
            assert options(sock).startswith(b"SIP/2.0 200")
        with connect(server) as extra:
            assert closed_by_server(extra, within=5.0)
        assert options(kept[0]).startswith(b"SIP/2.0 200")
    finally:
        for sock in kept:
            sock.close()
    # With those gone, a new connection is served again.
    deadline = time.monotonic() + 10.0
    while True:
        with connect(server) as sock:
            answer = options(sock)
        if answer.startswith(b"SIP/2.0 200") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert answer.startswith(b"SIP/2.0 200")
