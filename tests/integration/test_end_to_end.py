"""One call through the whole contact center, with real phones on every side.

A SIPp trunk caller dials 100 and keys 1 in the IVR menu (an RFC 4733 event); the caller is
queued to sales, and agent alice's baresip, registered with digest auth, answers by itself.
Caller and alice talk, each sending a tone of their own, while a supervisor records the call
through the API. Alice transfers the caller to bob with her phone's own blind transfer (REFER,
RFC 3515); bob's PyVoIP phone answers, hears the caller, and hangs up.

Then every record must tell that story: the audio each phone heard, the call recording, the
CDR and its segments in PostgreSQL (each agent charged with their own talk time), the signed
webhooks at the reference CRM receiver, the supervisor REST API and KPIs, and the WebSocket
event stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from pyVoIP.VoIP import PhoneStatus

from examples.crm_receiver import CrmReceiver
from tests.integration.contact_center import ContactCenter, of_type, settle, start
from tests.integration.e2e_peers import (
    BARESIP_HZ,
    CALLER_HZ,
    PYVOIP_HZ,
    PyvoipAgent,
    crm_receiver,
    crm_yaml,
    pyvoip_agent,
    sound_seconds,
    tone,
    tone_seconds,
    wait_until_true,
    wav_channels,
    write_caller_voice,
    write_wav,
)
from tests.integration.softphones import Baresip, account_line, baresip_phone, wait_for_status

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120)]

#: Sales is alice's skill, not bob's: only a transfer brings the caller to him. A long wrap-up
#: keeps both agents in it while the test reads the API.
QUEUES = """\
queues:
  sales:
    skills: {sales: 3}
    timeout: 15
    wrapuptime: 120
  support:
    skills: {support: 3}
  billing:
    skills: {billing: 3}
"""
#: Seconds of each other's tone the phones must hear before the test moves on.
TALK = 2.0


@pytest.fixture
async def crm() -> AsyncIterator[tuple[CrmReceiver, str]]:
    async with crm_receiver() as running:
        yield running


@pytest.fixture
async def center(
    config_dir: Path, tmp_path: Path, crm: tuple[CrmReceiver, str]
) -> AsyncIterator[ContactCenter]:
    (config_dir / "crm.yaml").write_text(crm_yaml(crm[1]))
    running = await asyncio.to_thread(start, config_dir, tmp_path, QUEUES)
    yield running
    code = await asyncio.to_thread(running.stop)
    assert code == 0, f"server exited with {code}:\n{running.server.log()[-4000:]}"


@pytest.fixture
def alice(tmp_path: Path) -> Iterator[Baresip]:
    """Alice's baresip: sends its tone, keeps what it hears in ``alice/dumps``."""
    sound = write_wav(tmp_path / "alice.wav", tone(BARESIP_HZ, 120))  # longer than the call
    dumps = tmp_path / "alice" / "dumps"
    dumps.mkdir(parents=True)
    with baresip_phone(tmp_path / "alice", audio_file=sound, dump_dir=dumps) as phone:
        yield phone


def baresip_dump(phone: Baresip, direction: str) -> tuple[npt.NDArray[np.float64], int]:
    """What alice's phone sent (``enc``) or received (``dec``) so far: samples and rate."""
    found = sorted((phone.log_path.parent / "dumps").glob(f"dump-*-{direction}.wav"))
    channels, rate = wav_channels(found[-1]) if found else ([], 8000)
    return (channels[0] if channels else np.zeros(0)), rate


def alice_heard(phone: Baresip, frequency: float) -> float:
    samples, rate = baresip_dump(phone, "dec")
    return tone_seconds(samples, rate, frequency)


async def calls(center: ContactCenter) -> list[dict[str, Any]]:
    """The calls in progress, as the supervisor API lists them."""
    return list((await center.get("/api/calls"))["calls"])


async def register(center: ContactCenter, alice: Baresip, bob: PyvoipAgent) -> None:
    """Both phones registered with digest, both agents logged in."""
    port = center.server.port
    line = account_line("1001", "change-me-1001", port, auto_answer=True)
    assert alice.command("uanew", line)["ok"]
    event = await asyncio.to_thread(alice.wait_event, ("REGISTER_OK", "REGISTER_FAIL"))
    assert event is not None and event["type"] == "REGISTER_OK", alice.log()[-2000:]
    assert bob.phone is not None
    settled = (PhoneStatus.REGISTERED, PhoneStatus.FAILED)
    assert await asyncio.to_thread(wait_for_status, bob.phone, settled) is PhoneStatus.REGISTERED
    for agent in ("alice", "bob"):
        status, body = await center.post(f"/api/agents/{agent}/login")
        assert (status, body["accepted"]) == (202, True)


async def test_a_caller_reaches_alice_who_transfers_to_bob_and_every_record_agrees(
    center: ContactCenter, crm: tuple[CrmReceiver, str], alice: Baresip, tmp_path: Path
) -> None:
    receiver = crm[0]
    port = center.server.port
    voice = write_caller_voice(tmp_path / "caller.pcap", 50)
    with pyvoip_agent(port, "1002", "change-me-1002") as bob:
        await register(center, alice, bob)

        async with center.event_stream() as events:
            caller = asyncio.create_task(
                center.call("uac_key_talk_await_bye.xml", "100", 0, captures=[voice])
            )
            (answered,) = await settle(events, "agent.answered", agent_id="alice", within=30)
            call_id = answered["call_id"]
            established = await asyncio.to_thread(alice.wait_event, ("CALL_ESTABLISHED",), 10)
            assert established is not None, alice.log()[-2000:]
            status, _ = await center.post(f"/api/calls/{call_id}/recording/start")
            assert status == 202

            # Caller and alice talk; then alice's phone transfers the caller to bob (REFER).
            await wait_until_true(lambda: alice_heard(alice, CALLER_HZ) >= TALK, 30, "alice")
            answer = await asyncio.to_thread(
                alice.command, "transfer", f"sip:1002@127.0.0.1:{port}"
            )
            assert answer["ok"], answer
            assert await asyncio.to_thread(bob.answered.wait, 30), "bob's phone never answered"
            await wait_until_true(lambda: bob.heard_seconds_of(CALLER_HZ) >= TALK, 30, "bob")
            closed = await asyncio.to_thread(alice.wait_event, ("CALL_CLOSED",), 10)
            assert closed is not None, "alice's call did not end after her transfer"

            # The supervisor sees bob on the call, alice wrapping up.
            live = [(c["call_id"], c["state"], c["agent_id"]) for c in await calls(center)]
            assert live == [(call_id, "connected", "bob")]
            agents = {a["agent_id"]: a for a in (await center.get("/api/agents"))["agents"]}
            assert (agents["bob"]["state"], agents["bob"]["call_id"]) == ("on_call", call_id)
            assert agents["alice"]["state"] == "wrap_up"

            # Bob hangs up; the server ends the caller's call.
            bob.hang_up()
            await caller
            (ended,) = await settle(events, "call.ended")
            await settle(events, "agent.state_changed", agent_id="bob", state="wrap_up")
            await settle(events, "media.leg_closed", 3)

    # --- audio both ways ---------------------------------------------------------------------
    sent, rate = baresip_dump(alice, "enc")
    assert tone_seconds(sent, rate, BARESIP_HZ) >= TALK
    heard, rate = baresip_dump(alice, "dec")  # the caller's tone, and nothing else
    assert tone_seconds(heard, rate, CALLER_HZ) >= TALK
    assert tone_seconds(heard, rate, CALLER_HZ) >= 0.95 * sound_seconds(heard, rate)
    heard = bob.heard_audio()
    assert tone_seconds(heard, 8000, CALLER_HZ) >= 0.95 * sound_seconds(heard, 8000)
    # The recording the supervisor started: the caller on the left, the agents on the right,
    # alice then bob, as the server sent them on to the caller.
    (recording,) = (center.server.config_dir / "data" / "recordings").glob("*.wav")
    (left, right), rate = wav_channels(recording)
    assert tone_seconds(left, rate, CALLER_HZ) >= 2 * TALK
    assert tone_seconds(right, rate, BARESIP_HZ) >= TALK
    assert tone_seconds(right, rate, PYVOIP_HZ) >= TALK / 2
    legs = {e["data"]["call_id"]: e["data"] for e in of_type(events, "media.leg_closed")}
    agent_legs = {e["data"]["sip_user"]: e["data"] for e in of_type(events, "call.agent_ended")}
    from_alice = legs[agent_legs["1001"]["leg_id"]]["packets_received"]
    from_bob = legs[agent_legs["1002"]["leg_id"]]["packets_received"]
    assert from_alice >= 50 * TALK and from_bob >= 50 * TALK / 2  # 50 packets a second
    # Everything the agents' phones sent went on to the caller (give or take the packets in
    # flight when alice's leg was swapped for bob's), besides the IVR prompt before them.
    assert legs[call_id]["packets_sent"] >= from_alice + from_bob - 25
    assert all(leg["packets_lost"] == 0 for leg in legs.values())

    # --- the event stream --------------------------------------------------------------------
    flow = [
        (e["type"], e["data"].get("agent_id") or e["data"].get("queue_id"))
        for e in events
        if e["call_id"] == call_id
        and e["type"]
        in {"ivr.exited", "queue.joined", "agent.answered", "queue.left", "call.transferred",
            "call.ended"}
    ]  # fmt: skip
    assert flow == [
        ("ivr.exited", None),
        ("queue.joined", "sales"),
        ("agent.answered", "alice"),
        ("queue.left", "alice"),
        ("call.transferred", None),
        ("agent.answered", "bob"),
        ("call.ended", None),
    ]
    (transfer,) = of_type(events, "call.transferred")
    assert transfer["data"]["kind"] == "blind" and transfer["data"]["succeeded"]
    assert transfer["data"]["target"] == "1002"
    assert transfer["data"]["from_leg_id"] == agent_legs["1001"]["leg_id"]
    assert transfer["data"]["to_leg_id"] == agent_legs["1002"]["leg_id"]
    assert agent_legs["1002"]["hangup_by"] == "callee"  # bob's phone hung up
    assert ended["data"]["hangup_by"] == "server"  # so the server ended the caller's call
    changes = {
        agent: [
            (e["data"]["previous_state"], e["data"]["state"])
            for e in of_type(events, "agent.state_changed", agent_id=agent)
        ]
        for agent in ("alice", "bob")
    }
    # Alice was offered the call (ringing or not: auto-answer may skip it), bob was not.
    assert [state for _, state in changes["alice"] if state != "ringing"] == [
        "reserved",
        "on_call",
        "wrap_up",
    ]
    assert changes["bob"] == [("available", "on_call"), ("on_call", "wrap_up")]
    talk = {
        e["data"]["agent_id"]: e["data"]["seconds_in_previous"]
        for e in of_type(events, "agent.state_changed", state="wrap_up")
    }

    # --- PostgreSQL: the CDR and its segments ------------------------------------------------
    cdr, segments = await center.cdr(call_id)
    assert (cdr["did"], cdr["caller_id"], cdr["disposition"]) == ("100", "5551234", "answered")
    assert list(cdr["agents"]) == ["alice", "bob"]
    assert [
        (s["kind"], s["outcome"], s["ivr_tree_id"] or s["queue_id"], s["agent_id"],
         s["destination"])
        for s in segments
    ] == [
        ("ivr", "queue", "test_line", None, "sales"),
        ("queue", "answered", "sales", "alice", None),
        ("agent", "transferred", "sales", "alice", None),
        ("transfer", "connected", None, None, "1002"),
        ("agent", "completed", "sales", "bob", None),
    ]  # fmt: skip
    alice_segment, bob_segment = segments[2], segments[4]
    assert alice_segment["talk_seconds"] == pytest.approx(talk["alice"], abs=1.0)
    assert bob_segment["talk_seconds"] == pytest.approx(talk["bob"], abs=1.0)
    assert bob_segment["started_at"] >= alice_segment["ended_at"]
    assert cdr["talk_seconds"] == pytest.approx(talk["alice"] + talk["bob"], abs=2.0)

    # --- the supervisor API ------------------------------------------------------------------
    assert await calls(center) == []
    agents = {a["agent_id"]: a for a in (await center.get("/api/agents"))["agents"]}
    for agent in ("alice", "bob"):
        assert (agents[agent]["state"], agents[agent]["calls_handled"]) == ("wrap_up", 1)
        assert agents[agent]["talk_seconds"] == pytest.approx(talk[agent], abs=0.01)
    kpis = {r["agent_id"]: r for r in (await center.get("/api/kpis/agents"))["agents"]}
    assert (kpis["alice"]["handled"], kpis["alice"]["transfers"]) == (1, 1)
    assert (kpis["bob"]["handled"], kpis["bob"]["transfers"]) == (1, 0)
    assert kpis["bob"]["offers"] == 0  # the ACD never offered him the call
    (sales,) = (await center.get("/api/kpis/queues?queue_id=sales"))["queues"]
    assert (sales["offered"], sales["answered"], sales["abandoned"]) == (1, 1, 0)

    # --- the webhooks at the CRM -------------------------------------------------------------
    streamed = [e["id"] for e in events if e["call_id"] == call_id]
    await wait_until_true(
        lambda: set(streamed) <= {e["id"] for e in receiver.envelopes()}, 30, "webhooks"
    )
    assert receiver.rejected == 0  # every signature verified
    delivered = [e for e in receiver.envelopes() if e["call_id"] == call_id]
    # The call's events in the order they happened, as on the WebSocket (and any that came
    # after the test stopped listening there).
    assert [e["id"] for e in delivered][: len(streamed)] == streamed
    assert [e["seq"] for e in delivered] == sorted(e["seq"] for e in delivered)
    # Each event once: a retry carries the same webhook-id and envelope (and is stored once),
    # and no event came under two webhook-ids.
    assert all(d.envelope == receiver.unique[d.webhook_id].envelope for d in receiver.accepted)
    every = receiver.envelopes()
    assert len({e["seq"] for e in every}) == len(every)
