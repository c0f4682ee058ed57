"""Two nodes on one Redis change the same agent at the same moment: one pauses her while the
other ends her call. Whichever reaches Redis first, the pause is never lost: both nodes and the
store end up with her paused, and neither offers her the next caller. And a command given on
one node reaches the other."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

from acd.agent_state import AgentState
from acd.engine import AcdEngine
from acd.model import AgentProfile, QueueConfig
from acd.service import AcdService, ServiceSettings
from acd.store import InProcessAcdStore
from tests.acd.acd_redis import redis_store, unique_prefix
from tests.acd.acd_service_fixtures import FakeTelephony, VirtualClock, make_node, run_virtual

QUEUES = [QueueConfig(queue_id="q", wrapuptime=0)]
AGENTS = [AgentProfile(agent_id="alice", skills={}, sip_user="1001")]
ROUNDS = 20


async def _nodes(stack: AsyncExitStack) -> AsyncIterator[tuple[AcdService, FakeTelephony]]:
    prefix = unique_prefix()
    for name in ("node-a", "node-b"):
        store = await stack.enter_async_context(redis_store(prefix))  # a client of its own
        telephony = FakeTelephony()
        service = AcdService(
            AcdEngine(QUEUES, AGENTS, rng=random.Random(name)),
            store,
            telephony,
            lambda event: None,
            node_id=name,
        )
        telephony.service = service
        await service.start()
        stack.push_async_callback(service.stop)
        await service.login("alice")
        yield service, telephony


async def _jitter(rng: random.Random) -> None:
    for _ in range(rng.randrange(4)):
        await asyncio.sleep(0)
    if rng.random() < 0.5:
        await asyncio.sleep(rng.uniform(0, 0.002))


async def test_a_pause_on_one_node_survives_a_call_ending_on_the_other() -> None:
    rng = random.Random(6)
    async with AsyncExitStack() as stack:
        (a, phones_a), (b, _) = [node async for node in _nodes(stack)]
        for n in range(ROUNDS):
            call = f"c{n}"
            await a.enqueue(call, "q")
            a.ringing(call, "alice")
            a.answered(call, "alice")
            await a.drain()
            assert a.engine.agent_state("alice") is AgentState.ON_CALL

            async def hang_up_on_a(call: str = call) -> None:
                await _jitter(rng)
                a.agent_hung_up("alice")
                a.caller_hung_up(call)
                await a.drain()

            async def pause_on_b() -> None:
                await _jitter(rng)
                await b.pause("alice", "break")

            await asyncio.gather(hang_up_on_a(), pause_on_b())
            # Node A takes in the pause no later than when it next writes her status: the
            # offer of the next caller is that write.
            await a.enqueue(f"next{n}", "q")
            await a.drain()
            status = await a.store.agent_status("alice")
            assert status is not None and (status.state, status.reason) == ("paused", "break")
            assert a.engine.agent_state("alice") is AgentState.PAUSED
            assert b.engine.agent_state("alice") is AgentState.PAUSED
            assert a.engine.waiting("q") == (f"next{n}",)
            assert (f"next{n}", "alice", "1001") not in phones_a.of("ring")
            a.caller_hung_up(f"next{n}")
            await b.unpause("alice")
            await a.unpause("alice")
            await a.drain()


def test_a_pause_and_an_unpause_on_one_node_reach_the_other() -> None:
    async def main(clock: VirtualClock) -> None:
        shared = InProcessAcdStore()
        a = make_node(clock, QUEUES, AGENTS, store=shared, node_id="node-a")
        b = make_node(clock, QUEUES, AGENTS, store=shared, node_id="node-b")
        for node in (a, b):
            await node.service.start()
            await node.service.login("alice")
        await b.service.pause("alice", "meeting")
        # Node A writes her status as it offers her the caller: it sees the pause there.
        await a.service.enqueue("c1", "q")
        assert a.service.engine.agent_state("alice") is AgentState.PAUSED
        assert a.telephony.of("ring") == []
        await b.service.unpause("alice")
        await asyncio.sleep(ServiceSettings().heartbeat)  # node A's next heartbeat
        assert a.telephony.of("ring") == [("c1", "alice", "1001")]
        for node in (a, b):
            await node.service.stop()

    run_virtual(main)
