"""Calls through SIP trunks with digest authentication, end to end on 127.0.0.1.

A SIPp UAS plays the carrier behind an outbound trunk: it challenges the server's INVITE with
401 and checks the digest of the retry with SIPp's own ``verifyauth`` before it answers (and
echoes the audio). An IVR transfer to an external number must reach it and bridge the caller; a
callback a caller asked for in the IVR must ring the agent once she logs in, then call the
customer out through the carrier and connect the two. A PBX trunk that must authenticate its
INVITEs gets in with the right password and is refused with a wrong one.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.contact_center import (
    SIPP_PCAPS,
    ContactCenter,
    of_type,
    phone_done,
    running_center,
    settle,
)
from tests.integration.peers import SCENARIOS, free_port, run_sipp

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120)]

CARRIER_USER = "acct42"
CARRIER_PASSWORD = "carrier-secret"

TREES = """\
trees:
  transfer_line:
    description: Every caller is put through to an outside number
    start: out
    nodes:
      out:
        type: transfer
        kind: external
        target: "+49 30 1234567"
        trunk: carrier
  callback_line:
    description: Every caller is called back from the sales queue
    start: later
    nodes:
      later:
        type: callback
        queue: sales
        number: "{caller_id}"
        prompt: "We will call you back."
  bye_line:
    description: A short greeting, then the server hangs up
    start: bye
    nodes:
      bye:
        type: hangup
        prompt: "Goodbye."
"""


#: Sales offers a callback to a caller who waited a second (escalation ``offer_callback``).
QUEUES = """\
queues:
  sales:
    skills: {sales: 3}
    wrapuptime: 5
    escalation:
      - {after: 1, offer_callback: true}
  support:
    skills: {support: 3}
  billing:
    skills: {billing: 3}
"""

DIALPLAN = """\
numbers:
  "200": {ivr: transfer_line}
  "300": {ivr: callback_line}
  "400": {ivr: bye_line}
  "500": {queue: sales}
  "*": {ivr: main}
"""


def trunks_yaml(carrier_port: int, *, pbx_auth: bool) -> str:
    pbx = (
        "  - id: pbx\n"
        "    sources: [127.0.0.1/32]\n"
        "    inbound_auth: {username: pbx-in, password: pbx-secret}\n"
        if pbx_auth
        else ""
    )
    return f"""\
default_outbound: carrier
trunks:
  - id: local-test
    sources: [127.0.0.0/8, "::1"]
{pbx}  - id: carrier
    sources: [192.0.2.1/32]
    outbound:
      host: 127.0.0.1
      port: {carrier_port}
      auth: {{username: {CARRIER_USER}, password: {CARRIER_PASSWORD}}}
      caller_id: "+15550100"
      strip_plus: "00"
"""


@contextlib.contextmanager
def trunk_center(
    config_dir: Path, workdir: Path, *, pbx_auth: bool = False
) -> Iterator[tuple[ContactCenter, int]]:
    """The running contact center with the test trunks, and the port its carrier listens on."""
    (config_dir / "ivr" / "trunk_lines.yaml").write_text(TREES)
    carrier_port = free_port()
    (config_dir / "trunks.yaml").write_text(trunks_yaml(carrier_port, pbx_auth=pbx_auth))
    with running_center(config_dir, workdir, QUEUES, dialplan_yaml=DIALPLAN) as running:
        yield running, carrier_port


@pytest.fixture
def center(config_dir: Path, tmp_path: Path) -> Iterator[tuple[ContactCenter, int]]:
    with trunk_center(config_dir, tmp_path) as started:
        yield started


@pytest.fixture
def pbx_center(config_dir: Path, tmp_path: Path) -> Iterator[ContactCenter]:
    with trunk_center(config_dir, tmp_path, pbx_auth=True) as (running, _):
        yield running


def carrier(center: ContactCenter, port: int, name: str) -> subprocess.Popen[str]:
    """The carrier on ``port``: one call, challenged, verified, answered, audio echoed."""
    return center.phone("carrier_auth_answer.xml", port, name)


def talking_customer(center: ContactCenter, port: int) -> subprocess.Popen[str]:
    """The customer's phone behind the carrier on ``port``: challenged, verified, answered, and
    speaking (A-law speech) until the server's BYE."""
    folder = center.workdir / "customer"
    (folder / "pcap").mkdir(parents=True)
    shutil.copy(SIPP_PCAPS / "g711a.pcap", folder / "pcap" / "g711a.pcap")
    command = [
        shutil.which("sipp") or "sipp",
        center.server.address,
        "-sf",
        str(SCENARIOS / "carrier_auth_talk.xml"),
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-mp",
        str(free_port()),
        "-m",
        "1",
        "-nostdin",
        "-trace_err",
        "-timeout",
        "50s",
        "-timeout_error",
    ]
    phone = subprocess.Popen(
        command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    center.phones.append(phone)
    return phone


def leg_figures(events: list[dict[str, Any]], leg_id: str) -> dict[str, Any]:
    (closed,) = of_type(events, "media.leg_closed", call_id=leg_id)
    return dict(closed["data"])


async def test_ivr_transfer_reaches_the_carrier_with_digest_and_bridges_the_caller(
    center: tuple[ContactCenter, int],
) -> None:
    running, carrier_port = center
    async with running.event_stream() as events:
        far_end = carrier(running, carrier_port, "carrier")
        # The caller plays speech for about five seconds, then hangs up.
        await running.call("uac_pcap_hangup.xml", "200", wait_ms=0)
        await phone_done(far_end)  # verified our digest, answered, got the server's BYE
        (answered,) = await settle(events, "call.trunk_answered", trunk_id="carrier")
        await settle(events, "media.leg_closed", 2)
        await settle(events, "call.trunk_ended", leg_id=answered["data"]["leg_id"])
    data = answered["data"]
    # Written without separators, the leading + replaced by the trunk's strip_plus "00".
    assert data["number"] == "0049301234567" and data["codec"] == "PCMA"
    (transferred,) = of_type(events, "call.transferred", to_leg_id=data["leg_id"])
    assert transferred["data"]["succeeded"] is True
    assert transferred["data"]["target"] == "+49 30 1234567"
    caller_call = transferred["call_id"]
    assert data["call_id"] == caller_call
    # Audio both ways through the bridge: the caller's speech reached the carrier, which
    # echoed it, and the echo reached the caller.
    far = leg_figures(events, data["leg_id"])
    near = leg_figures(events, caller_call)
    assert far["packets_sent"] >= 150 and far["packets_received"] >= 150
    assert near["packets_received"] >= 150 and near["packets_sent"] >= 150
    assert of_type(events, "call.trunk_failed") == []


@pytest.mark.parametrize(
    ("number", "caller"),
    [
        # The IVR's callback node: the server says so and hangs up.
        ("300", "uac_await_bye.xml"),
        # Waiting in the sales queue, the caller is offered a callback and keys 1 (3 s in).
        ("500", "uac_ivr_sales.xml"),
    ],
    ids=["ivr-node", "queue-offer"],
)
async def test_callback_rings_the_agent_then_calls_the_customer_through_the_carrier(
    center: tuple[ContactCenter, int], number: str, caller: str
) -> None:
    running, carrier_port = center
    agent_port = await running.register("1001", "change-me-1001")
    async with running.event_stream() as events:
        await running.call(caller, number, wait_ms=0)
        (requested,) = await settle(events, "callback.requested", queue_id="sales")
        callback_id = requested["call_id"]
        assert requested["data"]["destination"] == "5551234"
        assert of_type(events, "agent.offered") == []  # nobody logged in yet
        customer_phone = talking_customer(running, carrier_port)
        agent = running.phone("agent_answer_hangup.xml", agent_port, "alice-phone")
        status, _ = await running.post("/api/agents/alice/login")
        assert status == 202
        await phone_done(agent)  # rung for the callback, answered, hung up after talking
        await phone_done(customer_phone)  # called, challenged us, talked, got the BYE
        (completed,) = await settle(events, "callback.completed", call_id=callback_id)
        (answered,) = await settle(events, "call.trunk_answered", number="5551234")
        await settle(events, "agent.state_changed", state="wrap_up")
        await settle(events, "media.leg_closed", call_id=answered["data"]["leg_id"])
    assert completed["data"]["agent_id"] == "alice"
    assert completed["data"]["attempts"] == 1
    assert answered["data"]["trunk_id"] == "carrier"
    # The customer's speech crossed the bridge to the agent, whose phone echoed it back.
    customer = leg_figures(events, answered["data"]["leg_id"])
    assert customer["packets_received"] >= 50 and customer["packets_sent"] >= 50


def pbx_call(center: ContactCenter, scenario: str, password: str, name: str) -> tuple[int, str]:
    folder = center.workdir / name
    (folder / "pcap").mkdir(parents=True)
    args = ["-sf", str(Path(__file__).parent / "scenarios" / scenario), "-s", "400", "-m", "1"]
    args += ["-au", "pbx-in", "-ap", password, "-mp", str(free_port())]
    result = run_sipp(center.server.address, args, folder, 40.0)
    return result.returncode, result.file("_errors.log") + result.stdout[-2000:]


async def test_inbound_trunk_must_answer_the_challenge_with_its_password(
    pbx_center: ContactCenter,
) -> None:
    async with pbx_center.event_stream() as events:
        code, output = await asyncio.to_thread(
            pbx_call, pbx_center, "uac_trunk_auth.xml", "pbx-secret", "pbx-right"
        )
        assert code == 0, output
        (started,) = await settle(events, "call.started")
        assert started["data"]["trunk_id"] == "pbx"
        code, output = await asyncio.to_thread(
            pbx_call, pbx_center, "uac_trunk_auth_refused.xml", "not-the-password", "pbx-wrong"
        )
        assert code == 0, output
        (failure,) = await settle(events, "security.auth_failed", method="INVITE")
    assert failure["data"]["username"] == "pbx-in"
    assert len(of_type(events, "call.started")) == 1  # the refused INVITE made no call


async def test_a_carrier_that_challenges_the_bye_gets_it_again_with_credentials(
    center: tuple[ContactCenter, int],
) -> None:
    running, carrier_port = center
    async with running.event_stream() as events:
        far_end = running.phone("carrier_challenges_bye.xml", carrier_port, "carrier")
        await running.call("uac_pcap_hangup.xml", "200", wait_ms=0)
        # Answered, challenged the server's BYE, verified the digest of the BYE sent again.
        await phone_done(far_end)
        (answered,) = await settle(events, "call.trunk_answered", trunk_id="carrier")
        (ended,) = await settle(events, "call.trunk_ended", leg_id=answered["data"]["leg_id"])
    assert (ended["data"]["cause"], ended["data"]["hangup_by"]) == ("normal", "server")
