"""Agents' softphones placing calls, end to end on 127.0.0.1: a SIPp softphone registers as
alice from 127.0.0.1 (the only trunk is 127.0.0.2/32, so the phone is no trunk) and dials the
feature codes of the shipped ``queues.yaml``; the supervisor API shows her logged in, paused
with the reason of the code, available, logged out. A wrong password is challenged again, the
call fails and the failure is counted. PyVoIP, a phone with its own idea of digest
authentication, logs in with ``*45`` too."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pyVoIP.VoIP import PhoneStatus

from tests.integration.contact_center import ContactCenter, of_type, settle, sipp_ok, start
from tests.integration.peers import SCENARIOS, free_port, run_sipp
from tests.integration.softphones import pyvoip_phone, wait_for_status

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120)]

SETTLED = (PhoneStatus.REGISTERED, PhoneStatus.FAILED)


def _agent_phone_center(config_dir: Path, workdir: Path) -> ContactCenter:
    (config_dir / "trunks.yaml").write_text("trunks:\n  - {id: carrier, sources: [127.0.0.2/32]}\n")
    return start(config_dir, workdir)


async def dial(cc: ContactCenter, number: str, password: str, name: str, port: int) -> int:
    """Alice's phone (on `port`, where she registered) dials `number`; SIPp's exit code."""
    folder = cc.workdir / name
    folder.mkdir(parents=True)
    users = folder / "users.csv"
    users.write_text(f"SEQUENTIAL\n1001;[authentication username=1001 password={password}]\n")
    args = ["-sf", str(SCENARIOS / "agent_dial_code.xml"), "-inf", str(users), "-s", number]
    args += ["-m", "1", "-p", str(port), "-mp", str(free_port())]
    result = await asyncio.to_thread(run_sipp, cc.server.address, args, folder, 40.0)
    if password == "change-me-1001":
        sipp_ok(result)
    return result.returncode


async def alice(cc: ContactCenter) -> dict[str, object]:
    agents = await cc.get("/api/agents")
    rows = agents["agents"] if isinstance(agents, dict) else agents
    return next(a for a in rows if a["agent_id"] == "alice" or a.get("id") == "alice")


def test_feature_codes_from_an_agent_softphone(config_dir: Path, tmp_path: Path) -> None:
    cc = _agent_phone_center(config_dir, tmp_path)

    async def scenario() -> None:
        async with cc.event_stream() as events:
            port = await cc.register("1001", "change-me-1001")
            await dial(cc, "*45", "change-me-1001", "login", port)
            await settle(events, "agent.state_changed", agent_id="alice", state="available")
            assert (await alice(cc))["state"] == "available"
            await dial(cc, "*47*2", "change-me-1001", "pause", port)
            await settle(events, "agent.state_changed", agent_id="alice", state="paused")
            row = await alice(cc)
            assert (row["state"], row["reason"]) == ("paused", "training")
            await dial(cc, "*48", "change-me-1001", "unpause", port)
            await settle(
                events, "agent.state_changed", count=2, agent_id="alice", state="available"
            )
            await dial(cc, "*46", "change-me-1001", "logout", port)
            await settle(events, "agent.state_changed", agent_id="alice", state="logged_out")
            assert (await alice(cc))["state"] == "logged_out"
            routed = await settle(events, "agent.call_routed", count=4, route="feature_code")
            assert [e["data"]["outcome"] for e in routed] == ["done"] * 4
            assert [e["data"]["dialled"] for e in routed] == ["*45", "*47*2", "*48", "*46"]
            # A wrong password: challenged again, the call fails, the failure is counted.
            assert await dial(cc, "*45", "wrong-password", "wrong", port) != 0
            await settle(events, "security.auth_failed", method="INVITE", username="1001")
            assert (await alice(cc))["state"] == "logged_out"
            assert not of_type(events, "call.started")

    try:
        asyncio.run(scenario())
    finally:
        assert cc.stop() == 0


def test_pyvoip_logs_its_agent_in_with_a_feature_code(config_dir: Path, tmp_path: Path) -> None:
    """PyVoIP answers only a 401 to its INVITE, takes a 100 Trying for the end of the exchange,
    and sends its credentials on the branch of the challenged INVITE: the server challenges it
    with a lone 401 and takes that INVITE for a new one, so its call goes through."""
    cc = _agent_phone_center(config_dir, tmp_path)

    async def scenario() -> None:
        async with cc.event_stream() as events:
            with pyvoip_phone(cc.server.port, "1001", "change-me-1001") as phone:
                phone.start()
                registered = await asyncio.to_thread(wait_for_status, phone, SETTLED)
                assert registered is PhoneStatus.REGISTERED
                await asyncio.to_thread(phone.call, "*45")
                (routed,) = await settle(events, "agent.call_routed", route="feature_code")
                await settle(events, "agent.state_changed", agent_id="alice", state="available")
                await settle(events, "call.ended", call_id=routed["call_id"])
        assert (routed["data"]["agent_id"], routed["data"]["outcome"]) == ("alice", "done")
        assert (await alice(cc))["state"] == "available"
        assert not of_type(events, "security.auth_failed")

    try:
        asyncio.run(scenario())
    finally:
        assert cc.stop() == 0
