"""A contact center killed with SIGKILL in the middle of 50 calls loses nothing.

A real ``cxos run`` process with its own PostgreSQL database. When it is killed, calls are in
every phase: alice (1001) is talking to one caller, carol's phone (1003) is ringing for the
next, more callers wait in the sales queue, others are still in the IVR menu, and one call has
already ended normally. The server is started again on the same database. Then, in
PostgreSQL: every started call has exactly one ``call.ended`` and one closed CDR (cause
``server restart`` by ``server`` for the calls that were in progress, with the open segment
closed as such; its own ending for the one that had ended); the node's event sequence numbers
have no duplicates or holes and continue after the restart. The restarted server shows no
ghost calls, its agents are logged out (the ACD keeps agent state in the process when no
shared store is configured), and a new call goes through the IVR and the queue to alice and
ends normally.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.contact_center import ContactCenter, phone_done, start
from tests.integration.kill_restart import (
    StoredEvent,
    await_stored,
    callers,
    cdr_rows,
    kill,
    restart,
    stored_events,
)

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120)]

QUEUED = 25  # callers who keyed 1: alice talks to the first, carol's phone rings for the next
IN_IVR = 25  # callers still listening to the menu
IN_PROGRESS = QUEUED + IN_IVR
SERVER_RESTART = "server restart"

#: Sales offered to alice, then carol, whose phone rings for longer than the test runs.
QUEUES = """\
queues:
  sales:
    skills: {sales: 2}
    strategy: linear
    linear_order: [alice, carol]
    timeout: 60
    wrapuptime: 0
  support:
    skills: {support: 3}
  billing:
    skills: {billing: 3}
"""


def before_changes(events: list[StoredEvent]) -> list[StoredEvent]:
    return [e for e in events if e.type == "agent.state_changed"]


@pytest.fixture
def center(config_dir: Path, tmp_path: Path) -> Iterator[ContactCenter]:
    running = start(config_dir, tmp_path, QUEUES)
    yield running
    code = running.stop()
    assert code == 0, f"server exited with {code}:\n{running.server.log()[-4000:]}"


async def test_calls_in_every_phase_survive_a_sigkill_and_the_server_carries_on(
    center: ContactCenter,
) -> None:
    url = center.database_url
    port = await center.register("1001", "change-me-1001")
    carol_port = await center.register("1003", "change-me-1003")
    for agent in ("alice", "carol"):
        status, _ = await center.post(f"/api/agents/{agent}/login")
        assert status == 202

    # One call ends normally before the kill (the caller hangs up in the IVR).
    await center.call("uac_pcap_hangup.xml", "100", wait_ms=0)
    (finished,) = await await_stored(url, "call.ended", 1)

    # Alice answers the first queued caller, carol's phone rings for the second, the others
    # wait; more callers sit in the IVR.
    center.phone("agent_answer.xml", port, "alice-phone")
    center.phone("agent_no_answer.xml", carol_port, "carol-phone")
    callers(center, "uac_queue_talk.xml", "100", QUEUED, "queued", wait_ms=100_000)
    await await_stored(url, "queue.joined", QUEUED)
    await await_stored(url, "agent.answered", 1)
    await await_stored(url, "agent.offered", 2)
    callers(center, "uac_await_bye.xml", "100", IN_IVR, "in-ivr")
    await await_stored(url, "ivr.entered", 1 + QUEUED + IN_IVR)
    assert (await center.get("/api/agents/alice"))["state"] == "on_call"
    assert (await center.get("/api/agents/carol"))["state"] == "ringing"
    live = {c["call_id"]: c["state"] for c in (await center.get("/api/calls"))["calls"]}
    before = await stored_events(url)
    in_progress = {e.call_id for e in before if e.type == "call.started"} - {finished.call_id}
    assert len(in_progress) == IN_PROGRESS
    assert Counter(live[call_id] for call_id in in_progress) == {
        "ivr": IN_IVR,
        "queued": QUEUED - 2,
        "offered": 1,  # carol's phone is ringing
        "connected": 1,
    }

    assert kill(center) == -9
    stored_before = await stored_events(url)
    last_seq_before = max(e.seq for e in stored_before)
    last_alive = max(e.time for e in stored_before)
    restart(center)

    # Every started call has exactly one ending: its own, or the restart's.
    ended = await await_stored(url, "call.ended", 1 + IN_PROGRESS)
    events = await stored_events(url)
    started = [e.call_id for e in events if e.type == "call.started"]
    assert len(started) == 1 + IN_PROGRESS
    assert Counter(e.call_id for e in ended) == Counter(started)
    closures = {e.call_id: e for e in ended if e.data["cause"] == SERVER_RESTART}
    assert set(closures) == in_progress
    assert {e.data["hangup_by"] for e in closures.values()} == {"server"}

    # The agents' history is closed too: the killed node last saw alice and carol logged in
    # (talking, ringing), and the restart logs them out as of its last sign of life, so no KPI
    # counts them as working while no server was running.
    last_change: dict[str, StoredEvent] = {}
    for event in stored_before:
        if event.type == "agent.state_changed":
            last_change[event.data["agent_id"]] = event
    assert {agent: e.data["state"] for agent, e in last_change.items()} == {
        "alice": "on_call",
        "carol": "ringing",
    }
    changes = await await_stored(url, "agent.state_changed", len(before_changes(stored_before)) + 2)
    logouts = {e.data["agent_id"]: e for e in changes if e.data["reason"] == SERVER_RESTART}
    assert {agent: (e.data["previous_state"], e.data["state"]) for agent, e in logouts.items()} == {
        "alice": ("on_call", "logged_out"),
        "carol": ("ringing", "logged_out"),
    }
    for agent, logout in logouts.items():
        since = last_change[agent].time
        assert logout.data["seconds_in_previous"] == pytest.approx(
            (last_alive - since).total_seconds(), abs=1e-3
        )
        assert logout.seq > last_seq_before
    events = await stored_events(url)

    # Event sequence numbers: no duplicates, no holes, and the restart continues the count.
    assert {e.node for e in events} == {"test-node"}
    seqs = [e.seq for e in events]
    assert seqs == list(range(1, len(events) + 1))
    assert min(e.seq for e in closures.values()) == last_seq_before + 1

    # PostgreSQL: one closed CDR per started call, each segment closed.
    cdrs = await cdr_rows(url)
    assert set(cdrs) == set(started)
    for call_id, cdr in cdrs.items():
        assert cdr["ended_at"] is not None, call_id
        assert all(s["ended_at"] is not None for s in cdr["segments"]), call_id
    assert (cdrs[finished.call_id]["end_reason"], cdrs[finished.call_id]["hangup_by"]) == (
        "normal",
        "caller",
    )
    interrupted = {call_id: cdrs[call_id] for call_id in in_progress}
    assert {(c["end_reason"], c["hangup_by"]) for c in interrupted.values()} == {
        (SERVER_RESTART, "server")
    }
    phases = Counter(
        tuple((s["kind"], s["outcome"]) for s in cdr["segments"]) for cdr in interrupted.values()
    )
    assert phases == {
        (("ivr", SERVER_RESTART),): IN_IVR,
        (("ivr", "queue"), ("queue", SERVER_RESTART)): QUEUED - 1,  # one of them ringing
        (("ivr", "queue"), ("queue", "answered"), ("agent", SERVER_RESTART)): 1,
    }
    ringing = [c for c in interrupted.values() if c["segments"][-1]["offers"] == 1]
    assert len(ringing) == 1  # offered to carol, not answered
    (talking,) = [c for c in interrupted.values() if c["agents"]]
    assert (list(talking["agents"]), talking["disposition"]) == (["alice"], "answered")
    # A call is taken to have ended when the node was last known alive: its latest event.
    assert {c["ended_at"] for c in interrupted.values()} == {last_alive}
    assert all(c["duration_seconds"] > 0 for c in interrupted.values())

    # The restarted server holds no ghost of the killed calls; the ACD starts afresh, with
    # alice logged out (agent state lives in the process unless a shared store is set).
    assert (await center.get("/api/calls"))["calls"] == []
    assert (await center.get("/api/queues/sales"))["waiting"] == 0
    # Alice's call, cut by the kill, counts as one she handled (the history closed it).
    for agent, handled in (("alice", 1), ("carol", 0)):
        view = await center.get(f"/api/agents/{agent}")
        assert (view["state"], view["call_id"], view["calls_handled"]) == (
            "logged_out",
            None,
            handled,
        )

    # Alice registers and logs in again; a new call goes through the IVR and queue to her.
    port = await center.register("1001", "change-me-1001")
    status, _ = await center.post("/api/agents/alice/login")
    assert status == 202
    phone = center.phone("agent_answer.xml", port, "alice-phone-again")
    await center.call("uac_queue_talk.xml", "100", wait_ms=3000)
    await phone_done(phone)
    (new_start,) = [
        e for e in await await_stored(url, "call.started", 2 + IN_PROGRESS) if e.call_id not in cdrs
    ]
    cdr, segments = await center.cdr(new_start.call_id)
    assert (cdr["end_reason"], cdr["hangup_by"], list(cdr["agents"])) == (
        "normal",
        "caller",
        ["alice"],
    )
    assert [(s["kind"], s["outcome"]) for s in segments] == [
        ("ivr", "queue"),
        ("queue", "answered"),
        ("agent", "completed"),
    ]
    assert new_start.seq > max(e.seq for e in closures.values())
    events = await stored_events(url)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert (await center.get("/api/calls"))["calls"] == []
