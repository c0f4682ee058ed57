"""Calls agents place from their softphones to a colleague and to the outside, end to end on
127.0.0.1 with real phones.

The agents' phones are baresip, registered from 127.0.0.1, which no trunk covers (the trunk
callers come from 127.0.0.2): each INVITE they send is challenged with 401 and answered with the
agent's SIP password. Each phone sends a tone of its own and keeps what it hears, so that audio
through the server is judged where a user would judge it: alice's phone must hear bob's tone
and bob's phone alice's; behind the outbound trunk a SIPp carrier checks the server's digest
and the agent's caller id, and echoes alice's tone back to her.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.integration.contact_center import (
    ContactCenter,
    of_type,
    phone_done,
    running_center,
    settle,
    sipp_ok,
)
from tests.integration.e2e_peers import (
    sound_seconds,
    tone,
    tone_seconds,
    wav_channels,
    write_wav,
)
from tests.integration.peers import SCENARIOS, free_port, run_sipp
from tests.integration.softphones import Baresip, account_line, baresip_phone

pytestmark = [pytest.mark.peer, pytest.mark.timeout(90)]

ALICE_HZ = 700.0
BOB_HZ = 1300.0
ALICE_CALLER_ID = "+15550101"
CARRIER_USER = "acct42"
CARRIER_PASSWORD = "carrier-secret"
#: Trunk callers (the queue caller) come from here; the agents' phones from 127.0.0.1.
TRUNK_CALLER_IP = "127.0.0.2"

#: Support is served by alice (support 2) and bob (support 5) at once.
QUEUES = """\
queues:
  sales:
    skills: {sales: 3}
  support:
    skills: {support: 2}
    wrapuptime: 10
  billing:
    skills: {billing: 3}
"""

#: 9 + a number is an outside line (the 9 is removed), as docs/trunks.md shows.
DIALPLAN = """\
numbers:
  "500": {queue: support}
  "*": {ivr: main}
outbound:
  - {pattern: "9[0-9]{6,15}", strip: 1}
"""


def trunks_yaml(carrier_port: int) -> str:
    # No caller_id of the carrier trunk's own: the agent's one is presented.
    return f"""\
default_outbound: carrier
trunks:
  - id: pstn
    sources: [{TRUNK_CALLER_IP}/32]
  - id: carrier
    sources: [192.0.2.1/32]
    outbound:
      host: 127.0.0.1
      port: {carrier_port}
      auth: {{username: {CARRIER_USER}, password: {CARRIER_PASSWORD}}}
"""


@pytest.fixture
def center(config_dir: Path, tmp_path: Path) -> Iterator[tuple[ContactCenter, int]]:
    """The contact center, and the port its carrier (when a test starts one) listens on. The
    server's RTP ports are a range of its own below the kernel's ephemeral ones (`prepare`),
    where the phones' and SIPp's free ports are found: a leg's port is chosen with the offer and
    bound only once it is answered."""
    agents = config_dir / "agents.yaml"
    agents.write_text(
        agents.read_text().replace(
            'sip_user: "1001"\n', f'sip_user: "1001"\n    caller_id: "{ALICE_CALLER_ID}"\n'
        )
    )
    carrier_port = free_port()
    (config_dir / "trunks.yaml").write_text(trunks_yaml(carrier_port))
    with running_center(config_dir, tmp_path, QUEUES, dialplan_yaml=DIALPLAN) as running:
        yield running, carrier_port


# --- the agents' phones -------------------------------------------------------------------------


@asynccontextmanager
async def agent_phone(center: ContactCenter, user: str, frequency: float) -> AsyncIterator[Baresip]:
    """The agent's baresip, registered, sending `frequency` and keeping what it hears; it
    answers a call when told to (``accept``)."""
    directory = center.workdir / f"phone-{user}"
    directory.mkdir()
    sound = write_wav(center.workdir / f"{user}.wav", tone(frequency, 120))  # outlasts the call
    dumps = directory / "dumps"
    dumps.mkdir()
    with baresip_phone(directory, audio_file=sound, dump_dir=dumps) as phone:
        line = account_line(user, f"change-me-{user}", center.server.port)
        assert phone.command("uanew", line)["ok"]
        event = await asyncio.to_thread(phone.wait_event, ("REGISTER_OK", "REGISTER_FAIL"))
        assert event is not None and event["type"] == "REGISTER_OK", phone.log()[-2000:]
        yield phone


async def dial(phone: Baresip, center: ContactCenter, number: str) -> None:
    assert phone.command("dial", f"sip:{number}@127.0.0.1:{center.server.port}")["ok"]


async def phone_event(phone: Baresip, *types: str) -> dict[str, Any]:
    event = await asyncio.to_thread(phone.wait_event, types, 20.0)
    assert event is not None, f"no {types}:\n{phone.log()[-3000:]}"
    return event


def heard(phone: Baresip) -> tuple[Any, int]:
    """What the phone received on its (last) call: samples and their rate."""
    found = sorted((phone.log_path.parent / "dumps").glob("dump-*-dec.wav"))
    assert found, f"no call audio kept:\n{phone.log()[-2000:]}"
    channels, rate = wav_channels(found[-1])
    assert channels, f"{found[-1].name} is empty"
    return channels[0], rate


async def agent_row(center: ContactCenter, agent_id: str) -> dict[str, Any]:
    row: dict[str, Any] = await center.get(f"/api/agents/{agent_id}")
    return row


async def log_in(center: ContactCenter, *agents: str) -> None:
    for agent in agents:
        status, body = await center.post(f"/api/agents/{agent}/login")
        assert (status, body["accepted"]) == (202, True), body


@asynccontextmanager
async def alice_rings_bob(
    center: ContactCenter,
) -> AsyncIterator[tuple[list[dict[str, Any]], Baresip, Baresip]]:
    """Alice and bob logged in on their phones, and alice dialling bob's extension 1002 until
    his phone rings; yields the event stream, alice's phone and bob's."""
    async with (
        center.event_stream() as events,
        agent_phone(center, "1001", ALICE_HZ) as alice,
        agent_phone(center, "1002", BOB_HZ) as bob,
    ):
        await log_in(center, "alice", "bob")
        await settle(events, "agent.state_changed", count=2, state="available")
        await dial(alice, center, "1002")
        incoming = await phone_event(bob, "CALL_INCOMING")
        assert incoming["peeruri"].startswith("sip:1001@"), incoming  # he sees who calls
        yield events, alice, bob


# --- the other peers ----------------------------------------------------------------------------


def queue_caller(center: ContactCenter, number: str, seconds: float) -> None:
    """A trunk caller dialling `number` who stays `seconds` on the line, then hangs up."""
    folder = center.workdir / "queue-caller"
    args = ["-sf", str(SCENARIOS / "uac_caller_hangs_up.xml"), "-s", number, "-m", "1"]
    args += ["-key", "caller", "5550123", "-d", str(int(seconds * 1000)), "-mp", str(free_port())]
    result = run_sipp(center.server.address, args, folder, 40.0, local_ip=TRUNK_CALLER_IP)
    sipp_ok(result)


@asynccontextmanager
async def alice_dials_out(
    center: ContactCenter, carrier_port: int, scenario: str
) -> AsyncIterator[tuple[list[dict[str, Any]], Baresip, subprocess.Popen[str]]]:
    """The carrier on `carrier_port` playing `scenario` (one call, challenged, verified,
    answered or not, audio echoed), and alice logged in on her phone and dialling 9 + 5551234;
    yields the event stream, alice's phone and the carrier."""
    far_end = center.phone(scenario, carrier_port, "carrier")
    async with (
        center.event_stream() as events,
        agent_phone(center, "1001", ALICE_HZ) as alice,
    ):
        await log_in(center, "alice")
        await settle(events, "agent.state_changed", agent_id="alice", state="available")
        await dial(alice, center, "95551234")
        yield events, alice, far_end


# --- the tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("hangs_up", ["caller", "callee"])
async def test_an_agent_calls_a_colleagues_extension(
    center: tuple[ContactCenter, int], hangs_up: str
) -> None:
    """Alice dials bob's extension 1002: his phone rings, he answers, each hears the other;
    both are on a direct call meanwhile, so a queue caller waits; either may hang up."""
    running, _ = center
    async with alice_rings_bob(running) as (events, alice, bob):
        # Alice hears ringing (180) while bob's phone rings: her call is not answered yet.
        await phone_event(alice, "CALL_RINGING")
        # While bob's phone rings, then while the two talk, a caller for a queue both serve
        # waits: neither is offered the call.
        caller = asyncio.ensure_future(asyncio.to_thread(queue_caller, running, "500", 4.0))
        await settle(events, "queue.joined", queue_id="support")
        assert bob.command("accept")["ok"]
        await phone_event(bob, "CALL_ESTABLISHED")
        await phone_event(alice, "CALL_ESTABLISHED")
        (answered,) = await settle(events, "call.agent_answered", sip_user="1002")
        for agent in ("alice", "bob"):
            row = await agent_row(running, agent)
            assert (row["state"], row["reason"]) == ("on_call", "direct_call"), row
        await caller
        (left,) = await settle(events, "queue.left", queue_id="support")
        assert left["data"]["reason"] == "abandoned"
        assert of_type(events, "agent.offered") == []
        await asyncio.sleep(1.0)  # a second more of conversation after the queue caller left
        hanging_up, other = (alice, bob) if hangs_up == "caller" else (bob, alice)
        hanging_up.command("hangup")
        await phone_event(other, "CALL_CLOSED")
        await phone_event(hanging_up, "CALL_CLOSED")
        for agent in ("alice", "bob"):
            await settle(events, "agent.state_changed", count=2, agent_id=agent, state="available")
        (routed,) = await settle(events, "agent.call_routed", route="agent")
        (bob_leg,) = await settle(events, "media.leg_closed", call_id=answered["data"]["leg_id"])
    assert routed["data"]["agent_id"] == "alice" and routed["data"]["dialled"] == "1002"
    assert (routed["data"]["target"], routed["data"]["outcome"]) == ("bob", "answered")
    (started,) = of_type(events, "call.agent_started")
    assert (started["data"]["sip_user"], started["data"]["dialled"]) == ("1001", "1002")
    assert routed["call_id"] == started["call_id"]
    # Both agents are on that one call for the ACD.
    for agent in ("alice", "bob"):
        (on_call,) = of_type(events, "agent.state_changed", agent_id=agent, state="on_call")
        assert on_call["data"]["call_id"] == started["call_id"]
    (ended,) = of_type(events, "call.agent_ended", sip_user="1002")
    assert ended["data"]["hangup_by"] == ("callee" if hangs_up == "callee" else "server")
    # Back to available at once: a direct call has no wrap-up.
    assert of_type(events, "agent.state_changed", state="wrap_up") == []
    for agent in ("alice", "bob"):
        row = await agent_row(running, agent)
        assert row["state"] == "available", row
    # The call's CDR in PostgreSQL: an internal call, alice's talk time with bob.
    cdr, segments = await running.cdr(started["call_id"])
    assert (cdr["direction"], cdr["caller_id"], cdr["did"]) == ("internal", "1001", "1002")
    assert (cdr["disposition"], list(cdr["agents"])) == ("answered", ["alice", "bob"])
    assert cdr["talk_seconds"] >= 1.0
    assert [(s["kind"], s["agent_id"], s["destination"]) for s in segments] == [
        ("internal", "alice", "bob")
    ]
    # RTP both ways on bob's leg, and each phone heard the other's tone through the server.
    assert bob_leg["data"]["packets_received"] >= 100 and bob_leg["data"]["packets_sent"] >= 100
    samples, rate = heard(alice)
    assert tone_seconds(samples, rate, BOB_HZ) >= 2.0
    samples, rate = heard(bob)
    assert tone_seconds(samples, rate, ALICE_HZ) >= 2.0


@pytest.mark.parametrize("ends_ringing", ["callee", "caller"])
async def test_a_ringing_colleague_is_free_again_when_the_call_does_not_happen(
    center: tuple[ContactCenter, int], ends_ringing: str
) -> None:
    """Alice hears ringing while bob's phone rings; bob declines (then alice's call is answered
    to tell her why), or alice gives up first (bob's phone stops ringing): either way both are
    available again, with no wrap-up."""
    running, _ = center
    async with alice_rings_bob(running) as (events, alice, bob):
        ringing = await phone_event(alice, "CALL_RINGING", "CALL_ESTABLISHED")
        assert ringing["type"] == "CALL_RINGING", ringing  # 180 while bob's phone rings
        # Held from the first ring: no queue call can ring his phone on top of this one.
        await settle(events, "agent.state_changed", agent_id="bob", state="on_call")
        if ends_ringing == "callee":
            assert bob.command("hangup")["ok"]  # declines
        else:
            assert alice.command("hangup")["ok"]
            await phone_event(bob, "CALL_CLOSED")  # CANCEL: it stopped ringing
        closed = await phone_event(alice, "CALL_CLOSED")
        (routed,) = await settle(events, "agent.call_routed", route="agent")
        for agent in ("alice", "bob"):
            await settle(events, "agent.state_changed", count=2, agent_id=agent, state="available")
            row = await agent_row(running, agent)
            assert row["state"] == "available", row
    assert routed["data"]["target"] == "bob"
    assert of_type(events, "agent.state_changed", state="wrap_up") == []
    assert of_type(events, "call.agent_answered") == []
    if ends_ringing == "caller":
        assert routed["data"]["outcome"] == "abandoned"
        return
    assert routed["data"]["outcome"] in ("busy", "rejected"), routed
    (failed,) = of_type(events, "call.agent_failed", sip_user="1002")
    assert failed["data"]["reason"] == routed["data"]["outcome"]
    samples, rate = heard(alice)
    assert sound_seconds(samples, rate) >= 0.5, closed  # "There is no answer."


@pytest.mark.parametrize("hangs_up", ["agent", "carrier"])
async def test_an_agent_calls_an_outside_number_through_the_trunk(
    center: tuple[ContactCenter, int], hangs_up: str
) -> None:
    """Alice dials 9 + a number: it goes out through the carrier trunk (digest checked by the
    carrier) presenting her caller id; the carrier answers and echoes her; either hangs up."""
    running, carrier_port = center
    scenario = "carrier_agent_call.xml" if hangs_up == "agent" else "carrier_agent_call_bye.xml"
    async with alice_dials_out(running, carrier_port, scenario) as (events, alice, far_end):
        await phone_event(alice, "CALL_ESTABLISHED")
        (answered,) = await settle(events, "call.trunk_answered", trunk_id="carrier")
        await settle(events, "agent.state_changed", agent_id="alice", state="on_call")
        row = await agent_row(running, "alice")
        assert (row["state"], row["reason"]) == ("on_call", "direct_call"), row
        if hangs_up == "agent":
            await asyncio.sleep(3.0)  # three seconds of conversation
            alice.command("hangup")
        await phone_done(far_end)  # verified our digest and alice's number, got or sent BYE
        await phone_event(alice, "CALL_CLOSED")
        (routed,) = await settle(events, "agent.call_routed", route="external")
        await settle(events, "agent.state_changed", count=2, agent_id="alice", state="available")
        await settle(events, "media.leg_closed", call_id=answered["data"]["leg_id"])
    assert answered["data"]["number"] == "5551234"
    assert (routed["data"]["target"], routed["data"]["outcome"]) == ("5551234", "answered")
    assert routed["data"]["dialled"] == "95551234"
    assert of_type(events, "agent.state_changed", state="wrap_up") == []
    cdr, segments = await running.cdr(routed["call_id"])
    assert (cdr["direction"], cdr["trunk_id"], cdr["disposition"]) == (
        "outbound",
        "carrier",
        "answered",
    )
    assert [(s["kind"], s["agent_id"], s["destination"]) for s in segments] == [
        ("outbound", "alice", "5551234")
    ]
    assert segments[0]["talk_seconds"] > 0
    # The carrier echoed alice's tone: it crossed the server both ways.
    samples, rate = heard(alice)
    assert tone_seconds(samples, rate, ALICE_HZ) >= 1.5


async def test_an_agent_whose_outside_number_is_busy_hears_so_and_is_free_again(
    center: tuple[ContactCenter, int],
) -> None:
    """The carrier answers 486: alice hears the call could not be connected, the server hangs
    up, and she is available again."""
    running, carrier_port = center
    busy = "carrier_busy.xml"
    async with alice_dials_out(running, carrier_port, busy) as (events, alice, far_end):
        await phone_done(far_end)  # answered busy
        await phone_event(alice, "CALL_CLOSED")  # told, then hung up by the server
        (routed,) = await settle(events, "agent.call_routed", route="external")
        await settle(events, "agent.state_changed", count=2, agent_id="alice", state="available")
        row = await agent_row(running, "alice")
        assert row["state"] == "available", row
    assert (routed["data"]["target"], routed["data"]["outcome"]) == ("5551234", "busy")
    (failed,) = of_type(events, "call.trunk_failed")
    assert (failed["data"]["number"], failed["data"]["status"]) == ("5551234", 486)
    assert of_type(events, "call.trunk_answered") == []
    samples, rate = heard(alice)
    assert sound_seconds(samples, rate) >= 1.0  # "The call could not be connected."


async def test_an_agent_dialling_an_unknown_number_hears_it_is_not_recognised(
    center: tuple[ContactCenter, int],
) -> None:
    """No feature code, extension or outbound rule matches: a prompt, then the server hangs
    up. Alice is not even logged in: her phone may call all the same."""
    running, _ = center
    async with (
        running.event_stream() as events,
        agent_phone(running, "1001", ALICE_HZ) as alice,
    ):
        await dial(alice, running, "4242")
        await phone_event(alice, "CALL_ESTABLISHED")
        closed = await phone_event(alice, "CALL_CLOSED")  # the server hangs up after saying so
        (routed,) = await settle(events, "agent.call_routed", route="unrecognised")
    assert routed["data"]["outcome"] == "not_recognised"
    assert routed["data"]["dialled"] == "4242"
    samples, rate = heard(alice)
    assert sound_seconds(samples, rate) >= 1.0, closed
    assert of_type(events, "call.trunk_answered") == []
