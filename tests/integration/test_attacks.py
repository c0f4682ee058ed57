"""The attacks a SIP server on the internet meets every day, against a real server on loopback:
SIPVicious scans (svmap, svwar, svcrack), INVITE and REGISTER floods from one address, and
floods of garbage, each while a carrier's calls keep completing.

The attackers bind to their own 127.0.0.x addresses (all of 127.0.0.0/8 is loopback on Linux);
the server's only trunk is 127.0.0.1 unless a test says otherwise. svwar and svcrack ignore their
binding option and always come from 127.0.0.1.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from ruamel.yaml import YAML

from telephony.sip.digest import Challenge, answer_challenge
from tests.integration.attackers import (
    Address,
    FloodReport,
    UdpSource,
    attack_target,
    exchange,
    garbage_flood,
    options_round_trip,
    request_flood,
    sip_request,
    sipvicious,
    svmap_user_agents,
    udp_drops,
)
from tests.integration.peers import RunningServer, free_port, run_sipp

pytestmark = pytest.mark.peer

AGENTS = ("1001", "1002", "1003")  # the shipped agents' SIP users
STRANGERS = ("990", "1000", "1004", "4242", "alice")
# The shipped per-source limits for INVITE and REGISTER, written into the test configuration so
# that the flood rate below is tied to what the server enforces.
RATE = 50.0
BURST = 100


@pytest.fixture
def target(config_dir: Path, tmp_path: Path) -> Iterator[RunningServer]:
    server = attack_target(config_dir, tmp_path / "server.log")
    yield server
    code = server.stop()
    assert code == 0, f"server exited with {code}:\n{server.log()[-4000:]}"


def sip_address(server: RunningServer) -> Address:
    return (server.host, server.port)


def metric(server: RunningServer, name: str, **labels: str) -> float:
    """One sample of the server's /metrics, as an operator's Prometheus would read it."""
    api = YAML(typ="safe").load(server.config_dir / "server.yaml")["api"]
    request = urllib.request.Request(
        f"http://{api['host']}:{api['port']}/metrics",
        headers={"Authorization": "Bearer change-me-supervisor-token"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"{name}{labels} not in /metrics")


def wait_for_metric(
    server: RunningServer, name: str, at_least: float, timeout: float = 10.0, **labels: str
) -> float:
    """The metric once it reaches ``at_least`` (or the timeout passes): datagrams already
    received may still be waiting in the socket buffer."""
    deadline = time.monotonic() + timeout
    value = metric(server, name, **labels)
    while value < at_least and time.monotonic() < deadline:
        time.sleep(0.1)
        value = metric(server, name, **labels)
    return value


def carrier_calls(server: RunningServer, workdir: Path, calls: int) -> None:
    """``calls`` short calls from the trunk (127.0.0.1) with SIPp's stock caller; every one must
    be answered and hung up."""
    result = run_sipp(
        server.address,
        ["-sn", "uac", "-s", "100", "-m", str(calls), "-r", "5", "-d", "200"],
        workdir,
        timeout=40,
    )
    assert result.returncode == 0, (
        f"SIPp failed ({result.returncode}):\n{result.stdout[-2000:]}\n"
        f"errors:\n{result.file('_errors.log')[-2000:]}"
    )
    ended = server.wait_for_log("cause='normal', hangup_by='caller'", calls)
    assert ended == calls


# --- svmap: fingerprinting ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["OPTIONS", "INVITE", "REGISTER"])
def test_svmap_finds_the_server_but_no_version(
    target: RunningServer, tmp_path: Path, method: str
) -> None:
    scan = sipvicious(
        "svmap",
        [
            "-b",
            "127.0.0.9",
            "-P",
            str(free_port(host="127.0.0.9")),
            "-m",
            method,
            "-p",
            str(target.port),
            "--debug",  # print every answer as received
            "127.0.0.1",
        ],
        tmp_path / "svmap",
    )
    found = svmap_user_agents(scan.output)
    assert f"127.0.0.1:{target.port}" in found, scan.output
    # What svmap learned, and every product header in what it received: a name, no version.
    assert not re.search(r"\d", found[f"127.0.0.1:{target.port}"]), found
    products = re.findall(r"(?:Server|User-Agent|Warning): ([^\\]*)\\r\\n", scan.output)
    if method != "REGISTER":  # a challenge carries no Server header
        assert products, scan.output
    assert all(not re.search(r"\d", value) for value in products), products


# --- svwar: extension enumeration ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["REGISTER", "INVITE"])
def test_svwar_identifies_no_extension(config_dir: Path, tmp_path: Path, method: str) -> None:
    # svwar always sends from 127.0.0.1: make it a stranger, not a carrier.
    server = attack_target(config_dir, tmp_path / "server.log", trunk="127.0.0.2/32")
    try:
        words = tmp_path / "extensions.txt"
        # The real agents first: svwar compares each answer with the one a random number got.
        words.write_text("\n".join([*AGENTS, *STRANGERS]) + "\n")
        scan = sipvicious(
            "svwar",
            [
                "--force",  # scan even though an unknown extension is asked to authenticate
                "-m",
                method,
                "-d",
                str(words),
                "-x",
                "127.0.0.1",
                "-P",
                str(free_port()),
                "--maximumtime",
                "2",
                "-p",
                str(server.port),
                "127.0.0.1",
            ],
            tmp_path / "svwar",
        )
        assert scan.returncode == 0, scan.output  # 30: no answer at all, 40: found something
        assert "found nothing" in scan.output, scan.output
        assert "exists" not in scan.output, scan.output
    finally:
        assert server.stop() == 0


def normalised(response: bytes, user: str) -> bytes:
    """A response with what echoes the request (Via, Call-ID, tags, the user asked for) and the
    nonce taken out: what is left must not depend on whether the user exists."""
    text = response.decode("utf-8", "replace")
    lines = [
        line
        for line in text.split("\r\n")
        if not line.lower().startswith(("via:", "v:", "call-id:", "i:"))
    ]
    text = "\r\n".join(lines).replace(f"sip:{user}@", "sip:USER@")
    text = re.sub(r"tag=[^;>\s]+", "tag=T", text)
    text = re.sub(r'nonce="[^"]*"', 'nonce="N"', text)
    return text.encode()


def final_answers(source: UdpSource, call_id: str) -> list[bytes]:
    return [
        data
        for data in source.datagrams()
        if f"Call-ID: {call_id}\r\n".encode() in data and not data.startswith(b"SIP/2.0 1")
    ]


def test_every_user_gets_the_same_answer(target: RunningServer) -> None:
    # What svwar would compare, for every user rather than until the first repeat: a REGISTER
    # without credentials, one with a wrong password, an INVITE from a stranger.
    address = sip_address(target)
    answers: dict[str, set[bytes]] = {"register": set(), "wrong password": set(), "invite": set()}
    for index, user in enumerate((*AGENTS, *STRANGERS)):
        # A fresh source per user keeps each under the failure limit.
        with UdpSource(f"127.0.0.{40 + index}") as source:
            call_id = secrets.token_hex(8)
            source.send(
                sip_request(
                    "REGISTER", user=user, target=address, source=source.local, call_id=call_id
                ),
                address,
            )
            source.wait_quiet(0.2)
            (challenged,) = final_answers(source, call_id)
            answers["register"].add(normalised(challenged, user))

            header = re.search(rb"WWW-Authenticate: ([^\r]*)", challenged)
            assert header is not None, challenged
            challenge = Challenge.parse(header.group(1).decode())
            credentials = answer_challenge(
                challenge,
                username=user,
                password="not-the-password",
                method="REGISTER",
                uri=f"sip:{address[0]}:{address[1]}",
                cnonce=secrets.token_hex(8),
            )
            source.clear()
            source.send(
                sip_request(
                    "REGISTER",
                    user=user,
                    target=address,
                    source=source.local,
                    call_id=call_id,
                    cseq=2,
                    headers=[("Authorization", str(credentials))],
                ),
                address,
            )
            invite_id = secrets.token_hex(8)
            source.send(
                sip_request(
                    "INVITE", user=user, target=address, source=source.local, call_id=invite_id
                ),
                address,
            )
            source.wait_quiet(0.2)
            (refused,) = final_answers(source, call_id)
            answers["wrong password"].add(normalised(refused, user))
            invite_answers = set(final_answers(source, invite_id))  # 403 and its retransmissions
            assert len(invite_answers) == 1, invite_answers
            answers["invite"].add(normalised(invite_answers.pop(), user))
    assert {kind: len(seen) for kind, seen in answers.items()} == {
        "register": 1,
        "wrong password": 1,
        "invite": 1,
    }, answers
    assert [next(iter(seen)).split(b"\r\n", 1)[0] for seen in answers.values()] == [
        b"SIP/2.0 401 Unauthorized",
        b"SIP/2.0 401 Unauthorized",
        b"SIP/2.0 403 Forbidden",
    ]
    assert "registration.added" not in target.log()


# --- svcrack: password guessing -----------------------------------------------------------------


@pytest.mark.parametrize("password_at", [None, 6], ids=["wordlist-without", "password-after-block"])
def test_svcrack_gets_its_source_blocked(
    target: RunningServer, tmp_path: Path, password_at: int | None
) -> None:
    guesses = [f"guess-{n}" for n in range(1, 10)]
    if password_at is not None:
        # The very next guess after the fifth failure is the right one.
        guesses.insert(password_at - 1, "change-me-1001")
    words = tmp_path / "passwords.txt"
    words.write_text("\n".join(guesses) + "\n")
    scan = sipvicious(
        "svcrack",
        [
            "-u",
            "1001",
            "-d",
            str(words),
            "-x",
            "127.0.0.1",
            "-P",
            str(free_port()),
            "--maximumtime",
            "2",
            "-vvv",
            "-p",
            str(target.port),
            "127.0.0.1",
        ],
        tmp_path / "svcrack",
    )
    assert "found nothing" in scan.output, scan.output
    assert "The password for" not in scan.output, scan.output
    if password_at is not None:
        assert "trying change-me-1001" in scan.output, scan.output  # sent, and never answered

    log = target.log()
    failures = log.count("REGISTER authentication failed for '1001' from 127.0.0.1")
    assert 1 <= failures <= 5, log[-3000:]
    assert "security: blocking source 127.0.0.1 " in log
    assert "SourceBlocked(source='127.0.0.1', failures=5" in log
    assert "registration.added" not in log
    assert "change-me-1001" not in log and "guess-" not in log

    # The blocked source gets no answer to anything; other sources are served as before.
    address = sip_address(target)
    with UdpSource("127.0.0.1") as blocked:
        register = sip_request("REGISTER", user="1001", target=address, source=blocked.local)
        assert exchange(register, address, "127.0.0.1") == []
    assert options_round_trip(address, "127.0.0.1", timeout=1.0) is None
    assert options_round_trip(address, "127.0.0.22") is not None


# --- floods -------------------------------------------------------------------------------------


def measured_rate(flood: FloodReport) -> float:
    return flood.sent / flood.seconds


@pytest.mark.parametrize("method", ["INVITE", "REGISTER"])
def test_request_flood_from_one_address_is_limited_while_calls_complete(
    config_dir: Path, tmp_path: Path, method: str
) -> None:
    server = attack_target(
        config_dir,
        tmp_path / "server.log",
        security={"request_rate": RATE, "request_burst": BURST},
    )
    address = sip_address(server)
    calls_done = threading.Event()
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            flooding = pool.submit(
                request_flood,
                address,
                source_ip="127.0.0.5",
                method=method,
                rate=10 * RATE,
                seconds=2.0,
                until=calls_done,  # the flood lasts as long as the calls
            )
            time.sleep(0.3)  # the flooder's bucket is empty by now
            # While the flood runs: another address is answered at once, the carrier's calls
            # all complete.
            try:
                round_trip = options_round_trip(address, "127.0.0.21")
                carrier_calls(server, tmp_path / "sipp", calls=8)
            finally:
                calls_done.set()
            flood = flooding.result(timeout=30)
        assert round_trip is not None and round_trip < 0.5, round_trip
        assert measured_rate(flood) > 9 * RATE, (flood.sent, flood.seconds)
        # The bucket: BURST at once, then RATE per second; the rest is dropped unanswered.
        allowed = BURST + RATE * (flood.seconds + 0.5)
        assert 0 < flood.answered <= allowed, (flood.answered, allowed, flood.sent)
        assert flood.answered < flood.sent / 3
        expected = 403 if method == "INVITE" else 401  # not a trunk / no credentials
        assert set(flood.statuses) == {expected}, flood.statuses
        assert options_round_trip(address, "127.0.0.21") is not None
        # What an operator sees: the drops on /metrics, and one warning for the flooder.
        dropped = metric(server, "cxos_sip_requests_dropped_total", reason="rate_limited")
        assert dropped >= flood.sent / 2, (dropped, flood.sent)
        received = metric(server, "cxos_sip_requests_received_total", method=method)
        assert received >= dropped + flood.answered
        assert server.log().count("security: rate limiting source 127.0.0.5 ") == 1
    finally:
        assert server.stop() == 0


def test_garbage_flood_is_dropped_and_counted_while_calls_complete(
    target: RunningServer, tmp_path: Path
) -> None:
    address = sip_address(target)
    dropped_by_kernel = udp_drops(target.port)
    calls_done = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        flooding = pool.submit(
            garbage_flood,
            address,
            source_ip="127.0.0.6",
            rate=2000,
            seconds=2.0,
            seed=9,
            until=calls_done,
        )
        time.sleep(0.2)
        try:
            round_trip = options_round_trip(address, "127.0.0.21")
            carrier_calls(target, tmp_path / "sipp", calls=5)
        finally:
            calls_done.set()
        flood = flooding.result(timeout=30)
    assert round_trip is not None and round_trip < 0.5, round_trip
    assert measured_rate(flood) > 1500, (flood.sent, flood.seconds)
    assert flood.datagrams_back == 0  # nothing in it can be answered
    # Every datagram that reached the server (the kernel's own drops aside) is counted.
    reached = flood.sent - (udp_drops(target.port) - dropped_by_kernel)
    counted = wait_for_metric(
        target, "cxos_sip_malformed_messages_total", reached, outcome="dropped"
    )
    assert counted == reached, (counted, reached, flood.sent)
    assert "Traceback" not in target.log()
    assert options_round_trip(address, "127.0.0.21") is not None
