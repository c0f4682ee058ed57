"""The asyncio ACD service: claim before ringing, connect before bridging, virtual-time timers."""

from __future__ import annotations

import asyncio

from acd.events import AgentRejected, AgentStateChanged, QueueLeft
from acd.feature_codes import FeatureCodeMap, FeatureCodes
from acd.model import AgentProfile, OfferFailure, QueueConfig, SkillRequirement
from acd.service import FeatureCodeResult, ServiceSettings
from tests.acd.acd_service_fixtures import Node, VirtualClock, make_node, run_virtual


def sales_queue(**options: object) -> QueueConfig:
    return QueueConfig(
        queue_id="sales",
        required_skills=(SkillRequirement(skill="sales"),),
        **options,  # type: ignore[arg-type]
    )


AGENTS = [
    AgentProfile(agent_id="alice", skills={"sales": 5}, sip_user="1001"),
    AgentProfile(agent_id="bob", skills={"sales": 3}, sip_user="1002"),
]


def node(clock: VirtualClock, **queue_options: object) -> Node:
    return make_node(clock, [sales_queue(**queue_options)], AGENTS)


def test_a_call_is_claimed_rung_connected_and_bridged() -> None:
    async def main(clock: VirtualClock) -> None:
        n = node(clock)
        await n.service.start()
        await n.service.login("alice")
        await n.service.enqueue("c1", "sales")
        assert n.telephony.of("ring") == [("c1", "alice", "1001")]
        claim = await n.store.claim_of("alice", clock())
        assert claim is not None and claim.call_id == "node-1/c1"
        assert [e.call_id for e in await n.store.entries("sales")] == ["c1"]

        n.service.ringing("c1", "alice")
        n.service.answered("c1", "alice")
        await n.service.drain()
        assert n.telephony.of("bridge") == [("c1", "alice")]
        assert await n.store.connected_agent("c1") == "node-1/alice"
        assert await n.store.entries("sales") == ()
        status = await n.store.agent_status("alice")
        assert status is not None and (status.state, status.call_id) == ("on_call", "c1")
        assert n.types()[-2:] == ["agent.answered", "queue.left"]

        await asyncio.sleep(3600)  # an hour-long call: the heartbeat keeps the claim alive
        claim = await n.store.claim_of("alice", clock())
        assert claim is not None and claim.call_id == "node-1/c1"

        n.service.agent_hung_up("alice")
        n.service.caller_hung_up("c1")
        await n.service.drain()
        assert await n.store.claim_of("alice", clock()) is None
        assert await n.store.connected_agent("c1") is None
        assert n.service.engine.agent_state("alice").value == "available"
        await n.service.stop()

    run_virtual(main)


def test_an_agent_held_by_another_node_is_skipped_without_counting_against_them() -> None:
    async def main(clock: VirtualClock) -> None:
        n = node(clock, autopause=1)
        await n.store.claim_agent("alice", "node-2/x1", clock() + 60, clock())
        await n.service.start()
        await n.service.login("alice")
        await n.service.login("bob")
        await n.service.enqueue("c1", "sales")
        assert n.telephony.of("ring") == [("c1", "bob", "1002")]
        # Not alice's failure: no rejection reported, and autopause=1 did not pause her.
        assert not [e for e in n.events if isinstance(e, AgentRejected)]
        assert n.service.engine.agent_state("alice").value == "available"
        assert n.service.engine.agents["alice"].failures == 0
        assert n.service.claims_refused == 1
        n.service.ringing("c1", "bob")
        n.service.answered("c1", "bob")
        await n.service.drain()

        # While node-2 holds her she is not offered calls here (no claim tried, none refused).
        await n.service.enqueue("c2", "sales")
        assert n.telephony.of("ring") == [("c1", "bob", "1002")]
        assert n.service.claims_refused == 1
        claim = await n.store.claim_of("alice", clock())
        assert claim is not None and claim.call_id == "node-2/x1"

        await asyncio.sleep(61)  # node-2's lease ends: she is tried again, and rung
        assert n.telephony.of("ring")[-1] == ("c2", "alice", "1001")
        assert n.service.claims_refused == 1
        await n.service.stop()

    run_virtual(main)


def test_an_answer_for_a_caller_connected_elsewhere_is_hung_up() -> None:
    async def main(clock: VirtualClock) -> None:
        n = node(clock)
        await n.service.start()
        await n.service.login("alice")
        await n.service.enqueue("c1", "sales")
        assert await n.store.connect_call("c1", "node-2/carol")
        n.service.answered("c1", "alice")
        await n.service.drain()
        assert n.telephony.of("bridge") == []
        assert n.telephony.of("cancel") == [("c1", "alice", "answered_elsewhere")]
        assert not any(isinstance(e, QueueLeft) for e in n.events)
        assert n.service.connects_refused == 1
        assert await n.store.claim_of("alice", clock()) is None
        assert n.service.engine.agent_state("alice").value == "available"
        await n.service.stop()

    run_virtual(main)


def test_ring_no_answer_moves_on_and_autopauses_on_virtual_time() -> None:
    async def main(clock: VirtualClock) -> None:
        n = node(clock, ring_timeout=15.0, autopause=1, retry=0.0)
        await n.service.start()
        await n.service.login("alice")
        await n.service.login("bob")
        await n.service.enqueue("c1", "sales")
        first = n.telephony.of("ring")[0][1]
        n.service.ringing("c1", first)
        start = clock()
        await asyncio.sleep(15.5)
        assert n.telephony.of("cancel") == [("c1", first, "expired")]
        second = n.telephony.of("ring")[1][1]
        assert second != first
        assert n.service.engine.agent_state(first).value == "paused"
        paused = [e for e in n.events if isinstance(e, AgentStateChanged) and e.state == "paused"]
        assert paused[0].reason == "autopause:no_answer"
        assert clock() - start < 16  # the timer fired at its deadline, not later
        assert await n.store.claim_of(first, clock()) is None
        await n.service.stop()

    run_virtual(main)


def test_wrap_up_keeps_the_claim_until_the_agent_is_free() -> None:
    async def main(clock: VirtualClock) -> None:
        n = node(clock, wrapuptime=30.0)
        await n.service.start()
        await n.service.login("alice")
        await n.service.enqueue("c1", "sales")
        n.service.answered("c1", "alice")
        n.service.agent_hung_up("alice")
        await n.service.drain()
        await asyncio.sleep(20)
        claim = await n.store.claim_of("alice", clock())
        assert claim is not None and claim.call_id == "node-1/c1"
        await n.service.enqueue("c2", "sales")
        assert [r[0] for r in n.telephony.of("ring")] == ["c1"]  # still wrapping up
        await asyncio.sleep(11)
        assert [r[0] for r in n.telephony.of("ring")] == ["c1", "c2"]
        claim = await n.store.claim_of("alice", clock())
        assert claim is not None and claim.call_id == "node-1/c2"
        await n.service.stop()

    run_virtual(main)


def test_waiting_callers_hear_position_and_wait_periodically() -> None:
    async def main(clock: VirtualClock) -> None:
        n = node(clock, announce_frequency=20.0)
        await n.service.start()
        await n.service.enqueue("c1", "sales")
        await n.service.enqueue("c2", "sales")
        await asyncio.sleep(45)
        announced = [(call, position) for call, position, _ in n.telephony.of("announce")]
        assert announced == [("c1", 1), ("c2", 2), ("c1", 1), ("c2", 2)]
        await n.service.stop()

    run_virtual(main)


def test_a_caller_hanging_up_while_ringing_cancels_the_ring_and_frees_the_agent() -> None:
    async def main(clock: VirtualClock) -> None:
        n = node(clock)
        await n.service.start()
        await n.service.login("alice")
        await n.service.enqueue("c1", "sales")
        n.service.ringing("c1", "alice")
        n.service.caller_hung_up("c1")
        await n.service.drain()
        assert n.telephony.of("cancel") == [("c1", "alice", "abandoned")]
        assert await n.store.claim_of("alice", clock()) is None
        left = [e for e in n.events if isinstance(e, QueueLeft)]
        assert [(e.call_id, e.reason) for e in left] == [("c1", "abandoned")]
        await n.service.stop()

    run_virtual(main)


def test_a_late_answer_is_hung_up() -> None:
    async def main(clock: VirtualClock) -> None:
        n = node(clock, ring_timeout=10.0)
        await n.service.start()
        await n.service.login("alice")
        await n.service.enqueue("c1", "sales")
        n.service.ringing("c1", "alice")
        await asyncio.sleep(11)
        n.service.answered("c1", "alice")
        await n.service.drain()
        assert ("c1", "alice", "stale") in n.telephony.of("cancel")
        assert n.telephony.of("bridge") == []
        assert await n.store.connected_agent("c1") is None
        await n.service.stop()

    run_virtual(main)


def test_an_agent_without_a_softphone_is_paused_as_unregistered() -> None:
    async def main(clock: VirtualClock) -> None:
        agents = [AgentProfile(agent_id="dan", skills={"sales": 1})]
        n = make_node(clock, [sales_queue()], agents)
        await n.service.start()
        await n.service.login("dan")
        await n.service.enqueue("c1", "sales")
        assert n.telephony.of("ring") == []
        assert n.service.engine.agent_state("dan").value == "paused"
        await n.service.stop()

    run_virtual(main)


def test_a_callback_rings_the_agent_then_dials_the_customer() -> None:
    async def main(clock: VirtualClock) -> None:
        n = node(clock)
        await n.service.start()
        await n.service.enqueue("c1", "sales")
        await n.service.request_callback("c1", "+15551234")
        await n.service.login("alice")
        n.service.answered("c1", "alice")
        await n.service.drain()
        assert n.telephony.of("dial") == [("c1", "alice", "+15551234", 1)]
        assert n.telephony.of("bridge") == []  # the dialled customer is connected by the port
        n.service.callback_result("c1", False)  # no answer: retried later, maybe by another agent
        await n.service.drain()
        assert await n.store.connected_agent("c1") is None
        assert [e.call_id for e in await n.store.entries("sales")] == ["c1"]
        await n.service.stop()

    run_virtual(main)


def test_engine_errors_reach_the_api_caller() -> None:
    async def main(clock: VirtualClock) -> None:
        n = node(clock)
        await n.service.start()
        try:
            await n.service.enqueue("c1", "no-such-queue")
        except KeyError as exc:
            assert "no-such-queue" in str(exc)
        else:
            raise AssertionError("enqueue into an unknown queue was accepted")
        n.service.agent_hung_up("alice")  # a report the engine refuses is logged, not fatal
        await n.service.login("alice")
        assert n.service.engine.agent_state("alice").value == "available"
        await n.service.stop()

    run_virtual(main)


def test_feature_codes_log_in_pause_with_reason_and_refuse_bad_codes() -> None:
    async def main(clock: VirtualClock) -> None:
        codes = FeatureCodeMap(FeatureCodes(pause_reasons={"1": "lunch"}), AGENTS)
        n = make_node(clock, [sales_queue()], AGENTS, feature_codes=codes)
        await n.service.start()
        service = n.service
        assert await service.feature_code("1001", "*48") is FeatureCodeResult.REFUSED
        assert await service.feature_code("1001", "*45") is FeatureCodeResult.DONE
        assert await service.feature_code("1001", "*47*1#") is FeatureCodeResult.DONE
        status = await n.store.agent_status("alice")
        assert status is not None and (status.state, status.reason) == ("paused", "lunch")
        assert await service.feature_code("1001", "*47*9") is FeatureCodeResult.INVALID
        assert await service.feature_code("1001", "*48") is FeatureCodeResult.DONE
        assert await service.feature_code("1001", "5551234") is FeatureCodeResult.NOT_A_CODE
        assert await service.feature_code("9999", "*45") is FeatureCodeResult.UNKNOWN_AGENT
        assert await service.feature_code("1001", "*46") is FeatureCodeResult.DONE
        assert service.engine.agent_state("alice").value == "logged_out"
        await service.stop()

    run_virtual(main)


def test_auto_answering_softphones_serve_a_stream_of_calls() -> None:
    async def main(clock: VirtualClock) -> None:
        n = make_node(clock, [sales_queue()], AGENTS, settings=ServiceSettings(heartbeat=5.0))
        n.telephony.auto_answer = 2.0
        await n.service.start()
        await n.service.login("alice")
        await n.service.login("bob")
        for number in range(6):
            await n.service.enqueue(f"c{number}", "sales")
        for _ in range(3):
            await asyncio.sleep(2.5)
            for _call, agent in n.telephony.of("bridge")[-2:]:
                n.service.agent_hung_up(agent)
            await n.service.drain()
        bridged = [call for call, _ in n.telephony.of("bridge")]
        assert sorted(bridged) == [f"c{n}" for n in range(6)]
        await n.service.stop()

    run_virtual(main)


def test_a_failed_ring_is_offered_to_the_next_agent() -> None:
    async def main(clock: VirtualClock) -> None:
        n = node(clock)
        await n.service.start()
        await n.service.login("alice")
        await n.service.login("bob")
        await n.service.enqueue("c1", "sales")
        first = n.telephony.of("ring")[0][1]
        n.service.ring_failed("c1", first, OfferFailure.REJECTED)
        await n.service.drain()
        other = "bob" if first == "alice" else "alice"
        assert [r[1] for r in n.telephony.of("ring")] == [first, other]
        await n.service.stop()

    run_virtual(main)
