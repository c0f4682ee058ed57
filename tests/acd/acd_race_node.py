"""One ACD node for the two-process race test: ``python -m tests.acd.acd_race_node PREFIX NAME``.

It runs the engine and the service on the shared Redis with auto-answering fake softphones, waits
for the start signal, queues the whole call stream and serves it until no caller is left. While
doing so it records, in Redis sets only written here, every agent it rings and every call it
bridges: ``mon:agent:<agent>`` holds the calls the agent is on (from ringing to the end of their
leg), ``mon:call:<call>`` the agents the call is bridged to. A set ever holding two members is a
double offer or a double connection, whichever node caused it. The result goes to stdout as JSON.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Mapping

from redis.asyncio import Redis

from acd.actions import CancelReason, RouteReason
from acd.engine import AcdEngine
from acd.events import AcdEvent, AgentNoAnswer, AgentRejected
from acd.model import AgentProfile, EngineSettings, QueueConfig
from acd.redis_store import RedisAcdStore
from acd.service import AcdService
from tests.acd.acd_redis import REDIS_URL

CALLS = 30
AGENTS = 4


class RacingPhones:
    """Softphones that answer after 1-3 ms and talk 2-6 ms; every step is checked in Redis."""

    def __init__(self, client: Redis, prefix: str, rng: random.Random) -> None:
        self.client = client
        self.prefix = prefix
        self.rng = rng
        self.service: AcdService | None = None
        self.bridged: list[tuple[str, str]] = []
        self.most_calls_on_an_agent = 0
        self.most_agents_on_a_call = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def _enter(self, key: str, member: str) -> int:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.sadd(key, member)
            pipe.scard(key)
            _, size = await pipe.execute()
        return int(size)

    async def ring_agent(
        self,
        call_id: str,
        agent_id: str,
        sip_user: str,
        ring_timeout: float,
        attributes: Mapping[str, str],
    ) -> None:
        held = await self._enter(f"{self.prefix}mon:agent:{agent_id}", call_id)
        self.most_calls_on_an_agent = max(self.most_calls_on_an_agent, held)
        service = self.service
        assert service is not None
        asyncio.get_running_loop().call_later(
            self.rng.uniform(0.001, 0.003), service.answered, call_id, agent_id
        )

    async def cancel_ring(self, call_id: str, agent_id: str, reason: CancelReason) -> None:
        await self.client.srem(f"{self.prefix}mon:agent:{agent_id}", call_id)

    async def bridge(self, call_id: str, agent_id: str) -> None:
        on_call = await self._enter(f"{self.prefix}mon:call:{call_id}", agent_id)
        self.most_agents_on_a_call = max(self.most_agents_on_a_call, on_call)
        self.bridged.append((call_id, agent_id))
        task = asyncio.create_task(self._talk(call_id, agent_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _talk(self, call_id: str, agent_id: str) -> None:
        await asyncio.sleep(self.rng.uniform(0.002, 0.006))
        await self.client.srem(f"{self.prefix}mon:call:{call_id}", agent_id)
        await self.client.srem(f"{self.prefix}mon:agent:{agent_id}", call_id)
        assert self.service is not None
        self.service.agent_hung_up(agent_id)

    async def announce(
        self, call_id: str, queue_id: str, position: int | None, ewt_seconds: float | None
    ) -> None:
        return None

    async def route_call(
        self, call_id: str, queue_id: str, destination: str | None, reason: RouteReason
    ) -> None:
        raise AssertionError(f"call {call_id} routed out ({reason}): not expected here")

    async def offer_callback(self, call_id: str, queue_id: str) -> None:
        return None

    async def dial_callback(
        self, call_id: str, agent_id: str, destination: str, attempt: int
    ) -> None:
        raise AssertionError("no callbacks in this test")


async def run_node(prefix: str, name: str) -> dict[str, object]:
    client = Redis.from_url(REDIS_URL)
    store = RedisAcdStore(client, prefix=prefix)
    rng = random.Random(name)
    queue = QueueConfig(queue_id="q", retry=0.02, ring_timeout=2.0)
    agents = [
        AgentProfile(agent_id=f"a{n}", sip_user=str(1000 + n), skills={}) for n in range(AGENTS)
    ]
    engine = AcdEngine(
        [queue], agents, rng=random.Random(name), settings=EngineSettings(offer_lease=1.0)
    )
    phones = RacingPhones(client, prefix, rng)
    counted: list[str] = []  # offer failures counted against an agent (should be none)

    def publish(event: AcdEvent) -> None:
        if isinstance(event, AgentRejected | AgentNoAnswer):
            counted.append(event.agent_id)

    service = AcdService(engine, store, phones, publish, node_id=name)
    phones.service = service
    await service.start()
    for agent in agents:
        await service.login(agent.agent_id)
    await client.incr(f"{prefix}ready")
    if await client.blpop([f"{prefix}go"], timeout=30) is None:
        raise TimeoutError(f"node {name}: no start signal")
    for number in range(CALLS):
        await service.enqueue(f"c{number:02d}", "q")
        await asyncio.sleep(0.002)
    deadline = time.monotonic() + 30
    while engine.calls or phones.tasks:
        if time.monotonic() > deadline:
            raise TimeoutError(f"node {name}: calls left {sorted(engine.calls)}")
        await asyncio.sleep(0.005)
    await service.drain()
    await service.stop()
    await store.close()
    return {
        "bridged": phones.bridged,
        "most_calls_on_an_agent": phones.most_calls_on_an_agent,
        "most_agents_on_a_call": phones.most_agents_on_a_call,
        "claims_refused": service.claims_refused,
        "connects_refused": service.connects_refused,
        "failures_counted": len(counted),
    }


if __name__ == "__main__":
    result = asyncio.run(run_node(sys.argv[1], sys.argv[2]))
    sys.stdout.write(json.dumps(result) + "\n")
