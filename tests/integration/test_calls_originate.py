"""The call API end to end on 127.0.0.1: a SIPp trunk caller bridged to a SIPp agent phone.

The telephony service runs in the test's event loop with a configuration written here; its call
handler plays the part of the ACD: it rings agent 1001 through the call API and bridges the
caller to the answered leg. The agent's phone is SIPp: one run registers it with digest, a second
run on the same port (where the server sends the agent's calls: the REGISTER's source) answers
with -rtp_echo, sending back whatever audio reaches it. The caller plays A-law speech; audio
flows caller -> server -> agent -> server -> caller, which the server's per-leg counters show.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from config.loader import default_config_dir, load_configuration
from telephony.calls import AgentLeg, Call, RingFailure
from telephony.events import AgentLegAnswered, AgentLegEnded, CallEnded, CallRinging
from telephony.media.calls import MediaCall
from telephony.media.events import MediaLegClosed
from telephony.service import TelephonyService
from tests.integration.peers import SCENARIOS, SippResult, free_port, run_sipp, write_server_config

pytestmark = [pytest.mark.peer, pytest.mark.timeout(60)]

SIPP_PCAPS = Path("/usr/share/sip-tester")


@dataclass
class Node:
    service: TelephonyService
    events: list[object]
    address: str
    outcomes: list[AgentLeg | RingFailure] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    config_dir = tmp_path / "conf"
    shutil.copytree(default_config_dir(), config_dir)
    port = free_port()
    # write_server_config gives the node a private RTP range below the ephemeral ports.
    write_server_config(config_dir, port)
    events: list[object] = []
    service = TelephonyService(load_configuration(config_dir), publish=events.append)
    await service.start()
    node = Node(service, events, f"127.0.0.1:{port}")

    async def connect_to_agent(media: MediaCall) -> None:
        # What the ACD does once it picked agent 1001 for the caller.
        call = service.call(media.call_id)
        assert call is not None
        node.calls.append(call)
        outcome = await call.originate_agent("1001", ring_timeout=10)
        node.outcomes.append(outcome)
        if isinstance(outcome, AgentLeg):
            call.bridge(outcome)
        await call.wait_ended()

    service.call_handler = connect_to_agent
    yield node
    await service.stop(1.0)


def sipp_ok(result: SippResult) -> None:
    assert result.returncode == 0, f"{result.stdout[-2000:]}\n{result.file('_errors.log')[-2000:]}"


async def register_agent(node: Node, workdir: Path) -> int:
    """Register 1001 from a fresh port; returns it (the agent's phone listens there next)."""
    users = workdir / "agents.csv"
    credentials = "SEQUENTIAL\n1001;[authentication username=1001 password=change-me-1001]\n"
    await asyncio.to_thread(workdir.mkdir, parents=True)
    await asyncio.to_thread(users.write_text, credentials)
    port = free_port()
    scenario = str(SCENARIOS / "agent_register.xml")
    result = await asyncio.to_thread(
        run_sipp,
        node.address,
        ["-sf", scenario, "-inf", str(users), "-m", "1", "-p", str(port)],
        workdir,
    )
    sipp_ok(result)
    return port


def agent_phone(node: Node, scenario: str, port: int, workdir: Path) -> subprocess.Popen[str]:
    """The agent's phone answering on `port`, echoing RTP; runs until its call is over."""
    workdir.mkdir(parents=True)
    command = [
        shutil.which("sipp") or "sipp",
        node.address,
        "-sf",
        str(SCENARIOS / scenario),
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-mp",
        str(free_port()),
        "-rtp_echo",
        "-m",
        "1",
        "-nostdin",
        "-trace_err",
        "-timeout",
        "40s",
        "-timeout_error",
    ]
    return subprocess.Popen(
        command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


async def caller(node: Node, scenario: str, workdir: Path) -> None:
    (workdir / "pcap").mkdir(parents=True)
    shutil.copy(SIPP_PCAPS / "g711a.pcap", workdir / "pcap" / "g711a.pcap")
    args = ["-sf", str(SCENARIOS / scenario), "-m", "1", "-s", "100", "-mp", str(free_port())]
    sipp_ok(await asyncio.to_thread(run_sipp, node.address, args, workdir))


async def finished(phone: subprocess.Popen[str]) -> None:
    out, err = await asyncio.to_thread(phone.communicate, None, 30)
    assert phone.returncode == 0, f"agent phone failed:\n{out[-2000:]}\n{err[-2000:]}"


async def settle(node: Node, kind: type, count: int) -> list[object]:
    for _ in range(200):
        found = [e for e in node.events if isinstance(e, kind)]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.02)
    return [e for e in node.events if isinstance(e, kind)]


def closed(node: Node, leg_id: str) -> MediaLegClosed:
    (leg,) = [e for e in node.events if isinstance(e, MediaLegClosed) and e.call_id == leg_id]
    return leg


async def test_caller_bridged_to_agent_hears_the_agent_and_hangs_up(
    node: Node, tmp_path: Path
) -> None:
    port = await register_agent(node, tmp_path / "register")
    phone = agent_phone(node, "agent_answer.xml", port, tmp_path / "agent")
    try:
        await caller(node, "uac_pcap_hangup.xml", tmp_path / "caller")
        await finished(phone)  # the server's BYE reached the agent when the caller hung up
    finally:
        if phone.poll() is None:
            phone.kill()
    (agent,) = node.outcomes
    assert isinstance(agent, AgentLeg) and agent.sip_user == "1001"
    (call,) = node.calls
    assert [type(e) for e in node.events if isinstance(e, CallRinging | AgentLegAnswered)] == [
        CallRinging,
        AgentLegAnswered,
    ]
    (ended,) = await settle(node, AgentLegEnded, 1)
    assert isinstance(ended, AgentLegEnded)
    assert (ended.call_id, ended.hangup_by, ended.cause) == (call.call_id, "server", "normal")
    caller_end = [e for e in node.events if isinstance(e, CallEnded)]
    assert [e.hangup_by for e in caller_end] == ["caller"]
    await settle(node, MediaLegClosed, 2)
    caller_leg, agent_leg = closed(node, call.call_id), closed(node, agent.leg_id)
    # The caller's speech (3.5 s and more) went to the agent and came back from its echo to
    # the caller, packet for packet.
    assert caller_leg.packets_received >= 150
    assert agent_leg.packets_sent >= caller_leg.packets_received - 5
    assert agent_leg.packets_received >= agent_leg.packets_sent - 5
    assert caller_leg.packets_sent >= agent_leg.packets_received - 5
    assert caller_leg.packets_lost == agent_leg.packets_lost == 0
    service = node.service
    assert service.ports.available == service.ports.capacity  # both legs' ports returned
    assert service.core.active_calls() == []


async def test_agent_hanging_up_ends_the_caller_too(node: Node, tmp_path: Path) -> None:
    port = await register_agent(node, tmp_path / "register")
    phone = agent_phone(node, "agent_answer_hangup.xml", port, tmp_path / "agent")
    try:
        # The caller stays until the server's BYE, which follows the agent's.
        await caller(node, "uac_pcap_await_bye.xml", tmp_path / "caller")
        await finished(phone)
    finally:
        if phone.poll() is None:
            phone.kill()
    (agent,) = node.outcomes
    assert isinstance(agent, AgentLeg)
    (ended,) = await settle(node, AgentLegEnded, 1)
    assert isinstance(ended, AgentLegEnded) and ended.hangup_by == "callee"
    assert ended.talk_seconds == pytest.approx(3.0, abs=1.0)
    (caller_end,) = await settle(node, CallEnded, 1)
    assert isinstance(caller_end, CallEnded) and caller_end.hangup_by == "server"
    await settle(node, MediaLegClosed, 2)
    agent_leg = closed(node, agent.leg_id)
    assert agent_leg.packets_sent >= 50  # the caller's speech reached the agent
    assert agent_leg.packets_received >= agent_leg.packets_sent - 5  # and came back


async def test_unregistered_agent_is_reported_and_the_caller_stays(
    node: Node, tmp_path: Path
) -> None:
    # No agent phone at all: the call API says so at once, and the call handler goes on
    # (here it waits for the caller, who is hung up by the server's BYE at the end).
    async def hang_up_later() -> None:
        for _ in range(300):
            if node.calls:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        node.calls[0].hangup()

    task = asyncio.get_running_loop().create_task(hang_up_later())
    # A caller ready for the BYE from the moment it has sent its ACK.
    await caller(node, "uac_await_bye.xml", tmp_path / "caller")
    await task
    assert node.outcomes == [RingFailure.UNREGISTERED]
