"""A working contact center end to end: a real ``cxos run`` process on 127.0.0.1.

A SIPp agent phone registers as 1001 (alice) with digest and is logged in through the REST API;
a SIPp trunk caller dials 100, keys 1 in the IVR (an RFC 4733 capture), is queued to sales, the
agent's phone rings and answers (echoing RTP), caller and agent talk, the caller hangs up. The
supervisor API (REST snapshot, KPIs, WebSocket stream) and the CDR in PostgreSQL must all tell
that story. A second call shows the ring-no-answer policy: the first agent's phone rings out,
she is paused (``autopause``) and the call goes to the next agent.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.contact_center import (
    ADMIN_TOKEN,
    ContactCenter,
    of_type,
    phone_done,
    running_center,
    settle,
    start,
)
from tests.integration.e2e_peers import sound_seconds, wav_channels

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120)]

#: Sales answered by alice first, then carol; the first unanswered offer pauses an agent.
NO_ANSWER_QUEUES = """\
queues:
  sales:
    skills: {sales: 2}
    strategy: linear
    linear_order: [alice, carol]
    timeout: 3
    retry: 30
    wrapuptime: 0
    autopause: 1
  support:
    skills: {support: 3}
  billing:
    skills: {billing: 3}
"""


#: The default test queues, with sales recording every call it connects, in one channel.
RECORDED_QUEUES = """\
queues:
  sales:
    skills: {sales: 2}
    record: mixed
  support:
    skills: {support: 3}
  billing:
    skills: {billing: 3}
"""


@pytest.fixture
def center(config_dir: Path, tmp_path: Path) -> Iterator[ContactCenter]:
    running = start(config_dir, tmp_path)
    yield running
    code = running.stop()
    assert code == 0, f"server exited with {code}:\n{running.server.log()[-4000:]}"


@pytest.fixture
def no_answer_center(config_dir: Path, tmp_path: Path) -> Iterator[ContactCenter]:
    running = start(config_dir, tmp_path, NO_ANSWER_QUEUES)
    yield running
    code = running.stop()
    assert code == 0, f"server exited with {code}:\n{running.server.log()[-4000:]}"


def closed_leg(events: list[dict[str, Any]], call_id: str) -> dict[str, Any]:
    (leg,) = of_type(events, "media.leg_closed", call_id=call_id)
    return dict(leg["data"])


async def test_caller_reaches_an_agent_through_the_ivr_and_every_record_agrees(
    center: ContactCenter,
) -> None:
    port = await center.register("1001", "change-me-1001")
    status, body = await center.post("/api/agents/alice/login")
    assert (status, body["accepted"]) == (202, True)
    assert (await center.get("/api/agents/alice"))["state"] == "available"

    async with center.event_stream() as events:
        phone = center.phone("agent_answer.xml", port, "alice-phone")
        await center.call("uac_queue_talk.xml", "100", wait_ms=3000)
        await phone_done(phone)  # the server's BYE reached the agent when the caller hung up
        (ended,) = await settle(events, "call.ended")
        call_id = ended["call_id"]
        await settle(events, "media.leg_closed", 2)
        await settle(events, "agent.state_changed", agent_id="alice", state="wrap_up")

    flow = [
        (e["type"], e["data"].get("agent_id") or e["data"].get("queue_id"))
        for e in events
        if e["call_id"] == call_id
        and e["type"]
        in {"call.started", "ivr.exited", "queue.joined", "agent.offered", "agent.answered",
            "queue.left", "call.ended"}
    ]  # fmt: skip
    assert flow == [
        ("call.started", None),
        ("ivr.exited", None),
        ("queue.joined", "sales"),
        ("agent.offered", "alice"),
        ("agent.answered", "alice"),
        ("queue.left", "alice"),  # answered by alice
        ("call.ended", None),
    ]
    started = of_type(events, "call.started")[0]["data"]
    assert (started["did"], started["caller_id"]) == ("100", "5551234")
    (exited,) = of_type(events, "ivr.exited")
    assert (exited["data"]["destination"], exited["data"]["target"]) == ("queue", "sales")
    assert of_type(events, "queue.left")[0]["data"]["reason"] == "answered"
    assert ended["data"]["hangup_by"] == "caller"
    (agent_ended,) = await settle(events, "call.agent_ended")
    assert agent_ended["data"]["sip_user"] == "1001"

    # Audio both ways: the caller's speech was relayed to alice's phone, which echoed it back
    # into the server, and the server sent it on to the caller.
    leg_id = agent_ended["data"]["leg_id"]
    caller_leg, agent_leg = closed_leg(events, call_id), closed_leg(events, leg_id)
    assert agent_leg["packets_sent"] >= 150
    assert agent_leg["packets_received"] >= agent_leg["packets_sent"] - 5
    assert caller_leg["packets_sent"] >= agent_leg["packets_received"]
    assert caller_leg["packets_lost"] == agent_leg["packets_lost"] == 0

    # The REST snapshot and KPIs count the call the test made.
    sales = await center.get("/api/queues/sales")
    assert sales["waiting"] == 0
    assert sales["service_level"]["offered_today"] == 1
    assert sales["service_level"]["answered_today"] == 1
    alice = await center.get("/api/agents/alice")
    assert (alice["state"], alice["calls_handled"]) == ("wrap_up", 1)
    assert alice["talk_seconds"] == pytest.approx(7.9, abs=1.5)  # answer at ~3.3 s, BYE at 11.2 s
    kpis = await center.get("/api/kpis/queues?queue_id=sales")
    (row,) = kpis["queues"]
    assert (row["offered"], row["answered"], row["abandoned"]) == (1, 1, 0)
    assert row["service_level"] == 100.0
    (answered,) = of_type(events, "agent.answered")
    assert row["asa_seconds"] == pytest.approx(answered["data"]["wait_seconds"], abs=0.002)
    assert row["asa_seconds"] < 3
    assert (await center.get("/api/calls"))["calls"] == []

    # PostgreSQL holds the CDR: IVR, then the sales queue, then alice.
    cdr, segments = await center.cdr(call_id)
    assert (cdr["did"], cdr["caller_id"], cdr["hangup_by"]) == ("100", "5551234", "caller")
    assert list(cdr["agents"]) == ["alice"]
    assert [(s["kind"], s["ivr_tree_id"], s["queue_id"], s["agent_id"]) for s in segments] == [
        ("ivr", "test_line", None, None),
        ("queue", None, "sales", "alice"),  # answered by alice
        ("agent", None, "sales", "alice"),
    ]
    assert segments[1]["outcome"] == "answered"
    assert segments[2]["talk_seconds"] == pytest.approx(alice["talk_seconds"], abs=1.0)


async def test_an_agent_who_does_not_answer_is_paused_and_the_next_one_takes_the_call(
    no_answer_center: ContactCenter,
) -> None:
    center = no_answer_center
    alice_port = await center.register("1001", "change-me-1001")
    carol_port = await center.register("1003", "change-me-1003")
    for agent in ("alice", "carol"):
        status, _ = await center.post(f"/api/agents/{agent}/login")
        assert status == 202

    async with center.event_stream() as events:
        alice_phone = center.phone("agent_no_answer.xml", alice_port, "alice-phone")
        carol_phone = center.phone("agent_answer.xml", carol_port, "carol-phone")
        await center.call("uac_queue_talk.xml", "100", wait_ms=6000)
        await phone_done(alice_phone)  # rang for 3 s, then the server's CANCEL
        await phone_done(carol_phone)
        (ended,) = await settle(events, "call.ended")
        await settle(events, "queue.left")

    call_id = ended["call_id"]
    offers = [e["data"]["agent_id"] for e in of_type(events, "agent.offered")]
    assert offers == ["alice", "carol"]
    (no_answer,) = of_type(events, "agent.no_answer")
    assert no_answer["data"]["agent_id"] == "alice"
    assert no_answer["data"]["ring_seconds"] == pytest.approx(3.0, abs=1.0)
    paused = of_type(events, "agent.state_changed", agent_id="alice", state="paused")
    assert [e["data"]["reason"] for e in paused] == ["autopause:no_answer"]
    (answered,) = of_type(events, "agent.answered")
    assert answered["data"]["agent_id"] == "carol"

    alice = await center.get("/api/agents/alice")
    assert (alice["state"], alice["reason"]) == ("paused", "autopause:no_answer")
    kpis = await center.get("/api/kpis/agents?agent_id=alice")
    (row,) = kpis["agents"]
    assert (row["offers"], row["no_answers"], row["handled"]) == (1, 1, 0)

    cdr, segments = await center.cdr(call_id)
    assert list(cdr["agents"]) == ["carol"]
    queue, agent = segments[1], segments[2]
    assert (queue["kind"], queue["offers"], queue["outcome"]) == ("queue", 2, "answered")
    assert (agent["kind"], agent["agent_id"]) == ("agent", "carol")

    # Unpausing puts alice back to work.
    status, _ = await center.post("/api/agents/alice/unpause")
    assert status == 202
    assert (await center.get("/api/agents/alice"))["state"] == "available"


async def test_a_reload_through_the_api_is_validated_then_reaches_new_calls(
    center: ContactCenter,
) -> None:
    config_dir = center.server.config_dir
    good = (config_dir / "queues.yaml").read_text()
    (config_dir / "queues.yaml").write_text(good.replace("strategy: round_robin", "strategy: 7"))
    status, body = await center.post("/api/admin/reload", token=ADMIN_TOKEN)
    assert status == 422
    assert [p["file"] for p in body["problems"]] == ["queues.yaml"]

    # Number 100 now skips the IVR and goes straight to the sales queue.
    (config_dir / "queues.yaml").write_text(good)
    (config_dir / "dialplan.yaml").write_text('numbers:\n  "100": {queue: sales}\n')
    status, body = await center.post("/api/admin/reload", token=ADMIN_TOKEN)
    assert (status, body) == (200, {"reloaded": True})
    async with center.event_stream() as events:
        # Nobody is logged in: the caller waits (sales lets callers join an empty queue),
        # then hangs up.
        await center.call("uac_pcap_hangup.xml", "100", wait_ms=0)
        (left,) = await settle(events, "queue.left")
    assert of_type(events, "ivr.entered") == []
    assert (left["data"]["queue_id"], left["data"]["reason"]) == ("sales", "abandoned")
    cdr, segments = await center.cdr(left["call_id"])
    assert [s["kind"] for s in segments] == ["queue"]
    assert cdr["disposition"] == "queue_abandoned"


async def test_a_queue_that_records_its_calls_records_each_from_the_answer_to_the_end(
    config_dir: Path, tmp_path: Path
) -> None:
    with running_center(config_dir, tmp_path, RECORDED_QUEUES) as center:
        port = await center.register("1001", "change-me-1001")
        await center.post("/api/agents/alice/login")
        async with center.event_stream() as events:
            phone = center.phone("agent_answer.xml", port, "alice-phone")
            await center.call("uac_queue_talk.xml", "100", wait_ms=3000)
            await phone_done(phone)
            (ended,) = await settle(events, "call.ended")
            (stopped,) = await settle(events, "media.recording_stopped")
    call_id = ended["call_id"]
    (started,) = of_type(events, "media.recording_started", call_id=call_id)
    assert started["data"]["layout"] == "mixed"
    recording = center.server.config_dir / "data" / "recordings" / started["data"]["file"]
    # One channel: the caller's audio (sip-tester's g711a.pcap) and alice's phone echoing it,
    # from her answer (about 3.3 s into the call) until the caller's BYE (11.2 s).
    (mixed,), rate = wav_channels(recording)
    assert len(mixed) / rate == pytest.approx(7.9, abs=1.5)
    assert stopped["data"]["duration_seconds"] == pytest.approx(len(mixed) / rate, abs=0.1)
    assert sound_seconds(mixed, rate) >= 3.0  # the pcap's speech, less its pauses: 3.6 s
    assert [p.name for p in recording.parent.iterdir()] == [recording.name]
