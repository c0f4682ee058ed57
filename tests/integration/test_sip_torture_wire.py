"""Every RFC 4475 and RFC 5118 torture message sent to a running server over UDP and TCP.

The server must answer each one as tests/fixtures/sip/expected.py says the RFCs want (a status,
any normal answer, or silence), never crash or log a traceback, and still complete a normal call
from SIPp afterwards. Each fixture goes out byte for byte but for the sent-by of its first Via,
which is rewritten to the test socket so that the response can reach it (see torture_wire).
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.sip.expected import CASES, DROP, NORMAL, TortureCase
from tests.integration.peers import (
    RunningServer,
    free_port,
    run_sipp,
    start_server,
    write_server_config,
)
from tests.integration.torture_wire import FIXTURES, Outcome, RawPeer, send_fixture, with_sent_by

pytestmark = pytest.mark.peer

# On a stream, Content-Length frames the message (RFC 3261 §18.3), so some fixtures mean
# something else over TCP than in a datagram:
# - the body is shorter than Content-Length (or the empty line is missing): the rest of the
#   message has not arrived yet, and the server waits for it without answering;
STREAM_INCOMPLETE = frozenset({"clerr", "ipv6-in-sdp", "baddn"})
# - the message cannot be framed at all (negative, repeated or missing Content-Length,
#   RFC 4475 §3.1.2.3 and §3.3.9): the server answers 400 and closes the connection;
STREAM_UNFRAMEABLE = frozenset({"ncl", "mcl01", "inv2543"})
# - the body is longer than Content-Length: the extra octets are the start of the next message,
#   so no probe can follow on that connection (RFC 5118 §4.8, §4.9 as printed).
STREAM_TRAILING = frozenset({"mult-ip-in-sdp", "ipv4-mapped-ipv6"})
# RFC 5118's REGISTERs (§4.1-§4.4) all carry the same From tag, Call-ID, CSeq and branch: they
# are one client's request, so they go out from one socket (over UDP the later ones are then
# retransmissions, answered with the first one's response, RFC 3261 §17.2.2). From several
# sockets they would be merged requests, rightly answered 482 (RFC 3261 §8.2.2.2).
SAME_CLIENT = frozenset({"ipv6-good", "ipv6-bad", "port-ambiguous", "port-unambiguous"})
# Statuses that say the server could not cope with a request that is well-formed, or took it for
# a copy of another (each pass runs against a fresh server: the fixtures' Call-IDs are fixed).
NOT_NORMAL = frozenset({400, 482, 500, 503, 513})


def _problem(case: TortureCase, transport: str, outcome: Outcome) -> str | None:
    """What is wrong with `outcome` for `case` sent over `transport`, or None."""
    finals = outcome.finals
    if case.parse_status is None and outcome.unparseable():
        # Only a response to a malformed request may echo malformed header fields.
        return f"malformed response(s) to a well-formed request: {outcome.unparseable()}"
    if transport == "tcp" and case.name in STREAM_INCOMPLETE:
        if outcome.answers or outcome.closed:
            return f"expected the server to wait for the rest, got {outcome.statuses}"
        return None
    if transport == "tcp" and case.name == "dblreq":
        # RFC 4475 §3.1.1.8: in a datagram the octets after Content-Length are ignored; on a
        # stream they are the next request. The REGISTER is challenged; the INVITE's SDP has
        # "m =video", which RFC 4566 §5 does not allow, so the call is refused with 400.
        if finals != [401, 400] or len(outcome.answered_call_ids()) != 2:
            return f"expected 401 for the REGISTER and 400 for the INVITE, got {finals}"
        return None
    if transport == "tcp" and case.name in STREAM_UNFRAMEABLE:
        if finals != [400] or not outcome.closed:
            return f"expected 400 and a closed connection, got {finals}, closed={outcome.closed}"
        return None
    if outcome.closed:
        return f"the server closed the connection (got {outcome.statuses})"
    if case.answer == DROP:
        return None if not outcome.answers else f"expected silence, got {outcome.statuses}"
    if case.answer == NORMAL:
        if not finals or any(status in NOT_NORMAL for status in finals):
            return f"expected a normal answer, got {outcome.statuses}"
        if len(outcome.answered_call_ids()) != 1:
            return f"expected one request answered, got {outcome.statuses}"
        return None
    if len(finals) != 1 or finals[0] not in case.answer:
        return f"expected one of {case.answer}, got {outcome.statuses}"
    return None


def _free_rtp_range(size: int = 100) -> tuple[int, int]:
    """An RTP port range nobody on this machine is bound in: the server answers a call only once
    it has its media port, and other servers may be using the default range."""
    rng = random.Random()
    for _ in range(50):
        first = rng.randrange(30000, 60000, 2)
        try:
            for port in range(first, first + size):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first, first + size - 1
    raise RuntimeError("no free RTP port range")


@pytest.fixture
def server(config_dir: Path, tmp_path: Path) -> Iterator[RunningServer]:
    port = free_port()
    first, last = _free_rtp_range()
    write_server_config(config_dir, port, {"rtp": {"port_min": first, "port_max": last}})
    running = start_server(config_dir, port, tmp_path / "server.log")
    yield running
    code = running.stop()
    assert code == 0, f"server exited with {code}:\n{running.log()[-4000:]}"


def _send_all(
    server: RunningServer, host: str, transport: str, cases: list[TortureCase]
) -> list[str]:
    problems = []
    shared = RawPeer.open(transport, (host, server.port))
    for case in cases:
        peer = shared if case.name in SAME_CLIENT else RawPeer.open(transport, (host, server.port))
        try:
            data = with_sent_by((FIXTURES / case.path).read_bytes(), peer.sent_by)
            probe = not (transport == "tcp" and case.name in STREAM_INCOMPLETE | STREAM_TRAILING)
            outcome = send_fixture(peer, data, probe=probe)
        finally:
            if peer is not shared:
                peer.close()
        problem = _problem(case, transport, outcome)
        if problem is not None:
            problems.append(f"{case.name} over {transport} to {host}: {problem}")
    shared.close()
    return problems


@pytest.mark.parametrize(
    ("transport", "host", "rfcs"),
    [
        ("udp", "127.0.0.1", (4475, 5118)),
        ("tcp", "127.0.0.1", (4475, 5118)),
        # RFC 5118's IPv6 messages also arrive over IPv6.
        ("udp", "::1", (5118,)),
    ],
    ids=["udp", "tcp", "udp-ipv6"],
)
def test_torture_messages_are_answered_as_the_rfcs_say(
    server: RunningServer, tmp_path: Path, transport: str, host: str, rfcs: tuple[int, ...]
) -> None:
    problems = _send_all(server, host, transport, [case for case in CASES if case.rfc in rfcs])
    assert not problems, "\n".join(problems + _server_lines(server, problems))

    # The server lives on, and a normal call still completes.
    result = run_sipp(
        server.address, ["-sn", "uac", "-s", "100", "-m", "1", "-d", "100"], tmp_path / "sipp"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.file("_errors.log")[-2000:]
    assert server.process.poll() is None
    assert "Traceback" not in server.log()


def _server_lines(server: RunningServer, problems: list[str]) -> list[str]:
    """The server's log lines about the cases that went wrong, to tell why."""
    names = [problem.split(" over ", 1)[0] for problem in problems]
    return [line for line in server.log().splitlines() if any(name in line for name in names)]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_oversized_request_is_answered_513(server: RunningServer, transport: str) -> None:
    # RFC 3261 §21.5.14 (and §18.1.1 for datagrams): a request over the configured
    # max_message_bytes (16384 by default) is refused with 513 Message Too Large.
    peer = RawPeer.open(transport, ("127.0.0.1", server.port))
    try:
        body = b"v=0\r\n" + b"a=x-padding:" + b"x" * 17000 + b"\r\n"
        request = (
            "OPTIONS sip:100@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport.upper()} {peer.sent_by};branch=z9hG4bKbig{transport}\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:big@127.0.0.1>;tag=big1\r\n"
            "To: <sip:100@127.0.0.1>\r\n"
            f"Call-ID: oversized-{transport}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Type: application/sdp\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        outcome = send_fixture(peer, request, probe=transport == "udp")
        # On a stream nothing after an unframeable message can be read: the server closes it.
        peer.read_until(lambda received: False, timeout=1.0 if transport == "tcp" else 0.0)
    finally:
        peer.close()
    assert outcome.finals == [513]
    assert outcome.answered_call_ids() == {f"oversized-{transport}"}
    assert peer.closed_by_server == (transport == "tcp")
    assert "Traceback" not in server.log()
