"""The contract every ACD store keeps, run against each of ``STORES``."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from acd.store import AcdStore, AgentStatus, QueueEntry
from tests.acd.acd_node_fixtures import STORES, open_store

# A new implementation adds itself to STORES (tests/acd/acd_node_fixtures.py).
store = pytest.fixture(params=STORES, name="store")(open_store)


async def test_an_agent_can_be_claimed_by_only_one_call(store: AcdStore) -> None:
    assert await store.claim_agent("a", "c1", lease_until=10.0, now=0.0)
    assert not await store.claim_agent("a", "c2", lease_until=10.0, now=1.0)
    claim = await store.claim_of("a", now=1.0)
    assert claim is not None and claim.call_id == "c1"


async def test_claiming_again_for_the_same_call_is_harmless(store: AcdStore) -> None:
    assert await store.claim_agent("a", "c1", lease_until=10.0, now=0.0)
    assert await store.claim_agent("a", "c1", lease_until=12.0, now=1.0)
    claim = await store.claim_of("a", now=11.0)
    assert claim is not None and claim.lease_until == 12.0


async def test_an_expired_claim_frees_the_agent(store: AcdStore) -> None:
    await store.claim_agent("a", "c1", lease_until=10.0, now=0.0)
    assert await store.claim_of("a", now=10.0) is None
    assert await store.claim_agent("a", "c2", lease_until=20.0, now=10.0)


async def test_renew_and_release_only_by_the_holder(store: AcdStore) -> None:
    await store.claim_agent("a", "c1", lease_until=10.0, now=0.0)
    assert not await store.renew_claim("a", "c2", lease_until=30.0, now=1.0)
    assert await store.renew_claim("a", "c1", lease_until=30.0, now=1.0)
    assert not await store.claim_agent("a", "c2", lease_until=40.0, now=20.0)
    assert not await store.release_agent("a", "c2")
    assert await store.release_agent("a", "c1")
    assert await store.claim_of("a", now=21.0) is None
    assert not await store.renew_claim("a", "c1", lease_until=50.0, now=21.0)


async def test_claims_on_different_agents_are_independent(store: AcdStore) -> None:
    assert await store.claim_agent("a", "c1", lease_until=10.0, now=0.0)
    assert await store.claim_agent("b", "c2", lease_until=10.0, now=0.0)


async def test_concurrent_claims_have_exactly_one_winner(store: AcdStore) -> None:
    results = await asyncio.gather(
        *(store.claim_agent("a", f"c{n}", lease_until=10.0, now=0.0) for n in range(20))
    )
    assert results.count(True) == 1


async def test_a_call_connects_to_one_agent_only(store: AcdStore) -> None:
    results = await asyncio.gather(*(store.connect_call("c1", f"a{n}") for n in range(10)))
    assert results.count(True) == 1
    winner = await store.connected_agent("c1")
    assert winner == f"a{results.index(True)}"
    assert await store.connect_call("c1", winner)  # the winner may repeat itself
    await store.finish_call("c1")
    await store.finish_call("c1")
    assert await store.connected_agent("c1") is None


async def test_agent_status_round_trip(store: AcdStore) -> None:
    assert await store.agent_status("a") is None
    status = AgentStatus(agent_id="a", state="paused", reason="lunch", since=5.0)
    await store.save_agent_status(status)
    assert await store.agent_status("a") == status


async def test_an_agent_status_is_changed_only_over_the_version_last_seen(
    store: AcdStore,
) -> None:
    paused = AgentStatus(agent_id="a", state="paused", reason="lunch", node="n1", commanded=True)
    saved, current = await store.compare_and_set_agent_status(paused, expected_version=0)
    assert saved and current == AgentStatus(
        agent_id="a", state="paused", reason="lunch", node="n1", commanded=True, version=1
    )
    # Another node that has not seen version 1 does not overwrite it; it is shown what is there.
    available = AgentStatus(agent_id="a", state="available", node="n2")
    saved, current = await store.compare_and_set_agent_status(available, expected_version=0)
    assert not saved and current == await store.agent_status("a")
    assert current is not None and current.state == "paused" and current.version == 1
    saved, current = await store.compare_and_set_agent_status(available, expected_version=1)
    assert saved and current is not None and current.version == 2
    assert await store.agent_status("a") == current
    # Over a version nobody saved: refused, and nothing is stored for an unknown agent.
    saved, current = await store.compare_and_set_agent_status(
        AgentStatus(agent_id="b", state="available"), expected_version=4
    )
    assert (saved, current) == (False, None)
    assert await store.agent_status("b") is None


async def test_of_two_writers_racing_from_one_version_exactly_one_wins(store: AcdStore) -> None:
    await store.compare_and_set_agent_status(AgentStatus(agent_id="a", state="on_call"), 0)
    for version in range(1, 21):
        writers = [
            AgentStatus(agent_id="a", state="paused", reason="break", node="n1", commanded=True),
            AgentStatus(agent_id="a", state="wrap_up", node="n2"),
        ]
        results = await asyncio.gather(
            *(store.compare_and_set_agent_status(w, version) for w in writers)
        )
        assert sorted(saved for saved, _ in results) == [False, True]
        (winner,) = [status for saved, status in results if saved]
        (loser,) = [status for saved, status in results if not saved]
        assert loser == winner == await store.agent_status("a")  # the loser sees the winner
        assert winner is not None and winner.version == version + 1


async def test_counters_add_atomically_and_reset(store: AcdStore) -> None:
    await asyncio.gather(*(store.add_counter("a", "no_answer", 1) for _ in range(10)))
    assert await store.add_counter("a", "talk_time", 12.5) == 12.5
    assert dict(await store.counters("a")) == {"no_answer": 10, "talk_time": 12.5}
    await store.reset_counter("a", "no_answer")
    assert dict(await store.counters("a")) == {"talk_time": 12.5}
    assert dict(await store.counters("nobody")) == {}


async def test_queue_entries_come_back_in_serving_order(store: AcdStore) -> None:
    def entry(call_id: str, rank: float, arrival: float) -> QueueEntry:
        return QueueEntry(call_id=call_id, queue_id="q", priority=0, rank=rank, arrival=arrival)

    await store.put_entry(entry("late", 0.0, 5.0))
    await store.put_entry(entry("early", 0.0, 1.0))
    await store.put_entry(entry("vip", -5.0, 9.0))
    await store.put_entry(QueueEntry(call_id="x", queue_id="other", priority=0, rank=0, arrival=0))
    assert [e.call_id for e in await store.entries("q")] == ["vip", "early", "late"]
    await store.put_entry(entry("late", -9.0, 5.0))  # a priority change replaces the entry
    assert [e.call_id for e in await store.entries("q")] == ["late", "vip", "early"]
    assert await store.remove_entry("q", "vip")
    assert not await store.remove_entry("q", "vip")
    assert [e.call_id for e in await store.entries("q")] == ["late", "early"]


async def test_round_robin_memory_and_customer_memory(store: AcdStore) -> None:
    assert await store.last_offered("q") is None
    await store.set_last_offered("q", "a3")
    assert await store.last_offered("q") == "a3"
    assert await store.agent_for_customer("k1") is None
    await store.remember_agent("k1", "a7")
    assert await store.agent_for_customer("k1") == "a7"


async def test_statuses_are_read_in_one_batch(store: AcdStore) -> None:
    saved = [
        AgentStatus(agent_id="a", state="wrap_up", since=5.0, wrap_up_until=35.5, node="n1"),
        AgentStatus(agent_id="b", state="paused", reason="lunch", since=6.0, node="n2"),
    ]
    for status in saved:
        await store.save_agent_status(status)
    assert await store.agent_statuses(["a", "b", "nobody"]) == {"a": saved[0], "b": saved[1]}
    assert await store.agent_statuses([]) == {}


async def test_a_queue_entry_keeps_its_callback_attempts_and_node(store: AcdStore) -> None:
    entry = QueueEntry(
        call_id="c1",
        queue_id="q",
        priority=1,
        rank=-1.0,
        arrival=1.7e9,
        attributes={"customer_id": "k1"},
        callback_destination="+15550100",
        callback_attempts=2,
        node="n1",
    )
    await store.put_entry(entry)
    assert await store.entries("q") == (entry,)


async def test_a_queue_entry_keeps_the_callers_own_skills(store: AcdStore) -> None:
    french = QueueEntry(
        call_id="c1",
        queue_id="q",
        priority=0,
        rank=0.0,
        arrival=1.7e9,
        required_skills={"french": 3, "mortgage": 1},
    )
    plain = QueueEntry(call_id="c2", queue_id="q", priority=0, rank=0.0, arrival=1.8e9)
    await store.put_entry(french)
    await store.put_entry(plain)
    assert await store.entries("q") == (french, plain)
    (stored, _) = await store.entries("q")
    assert dict(stored.required_skills) == {"french": 3, "mortgage": 1}


async def test_nodes_mark_themselves_alive_and_a_lapsed_one_is_forgotten_once(
    store: AcdStore,
) -> None:
    await store.mark_node_alive("n1", 30.0)
    await store.mark_node_alive("n2", 40.5)
    assert dict(await store.node_leases()) == {"n1": 30.0, "n2": 40.5}
    await store.forget_node("n1", 25.0)  # n1 renewed meanwhile: kept
    await store.forget_node("n2", 40.5)
    assert dict(await store.node_leases()) == {"n1": 30.0}


async def test_of_two_nodes_adopting_a_lost_nodes_entry_exactly_one_gets_it(
    store: AcdStore,
) -> None:
    entry = QueueEntry(
        call_id="cb1",
        queue_id="q",
        priority=2,
        rank=-3.5,
        arrival=1_700_000_123.456789,
        callback_destination="+15550100",
        callback_attempts=1,
        node="lost",
        required_skills={"french": 2},
    )
    await store.put_entry(entry)
    results = await asyncio.gather(
        store.adopt_entry("q", "cb1", "lost", "n1"), store.adopt_entry("q", "cb1", "lost", "n2")
    )
    (adopted,) = [r for r in results if r is not None]
    assert adopted.node in ("n1", "n2")
    # Everything else, its place (arrival) included, is kept exactly.
    assert dataclasses.replace(adopted, node="lost") == entry
    assert await store.entries("q") == (adopted,)
    assert await store.adopt_entry("q", "cb1", "lost", "n3") is None
    assert await store.adopt_entry("q", "nobody", "lost", "n3") is None
