"""ACD routing decision latency and throughput at contact-center scale.

10,000 agents, 200 queues, 50 skills, 1,000 callers waiting. Two decisions are timed:

- ``agent_free``: an agent ends a call and the engine picks their next caller among the queues they
  serve (what happens all day long when callers wait);
- ``call_arrival``: a caller arrives and the engine picks a free agent by the queue's strategy
  (longest idle, round robin, fewest calls, least talk time, linear, random, skill-weighted);
  timed first with most of the 10,000 agents free (each wait class then ranks thousands of
  agents), then in the steady state with 1,000 callers waiting.

``--store none`` (the default) times the engine alone: one engine input with its whole output
(events and actions). ``--store memory`` and ``--store redis`` time the ACD service around it,
as the server runs it: the input goes through the service's worker and every output is carried
out against the store (the claim of the offered agent, the agent's shared status, the queue
entry) before the decision counts as done; telephony is a port that does nothing. The Redis
store works under a key prefix of its own (``--redis-url``, database 15 by default) and deletes
every key under it at the end. Run with
``python benchmarks/acd_routing.py [--decisions N] [--seed S] [--store none|memory|redis]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import random
import statistics
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from acd.engine import AcdEngine
    from acd.service import AcdService
    from acd.store import AcdStore

AGENTS = 10_000
QUEUES = 200
SKILLS = 50
WAITING = 1_000


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def build(seed: int) -> tuple[AcdEngine, list[str], random.Random]:
    from acd.engine import AcdEngine
    from acd.model import AgentProfile, EscalationStep, QueueConfig, SkillRequirement, Strategy

    # Ring-all with hundreds of free agents would ring them all: not a routing decision to time.
    strategies = [s for s in Strategy if s is not Strategy.RING_ALL]
    rng = random.Random(seed)
    skills = [f"skill{n:02d}" for n in range(SKILLS)]
    queues = []
    for n in range(QUEUES):
        required = rng.sample(skills, rng.choice((1, 1, 2)))
        queues.append(
            QueueConfig(
                queue_id=f"q{n:03d}",
                required_skills=tuple(
                    SkillRequirement(skill=s, min_proficiency=rng.randint(1, 3)) for s in required
                ),
                strategy=strategies[n % len(strategies)],
                weight=rng.randint(0, 3),
                priority_aging=30.0 if n % 2 else None,
                escalation=(EscalationStep(after=60, relax_proficiency=1),) if n % 3 == 0 else (),
            )
        )
    agents = [
        AgentProfile(
            agent_id=f"a{n:05d}",
            skills={s: rng.randint(1, 5) for s in rng.sample(skills, rng.randint(3, 8))},
            sip_user=f"u{n:05d}",
        )
        for n in range(AGENTS)
    ]
    engine = AcdEngine(queues, agents, rng=random.Random(seed))
    return engine, [q.queue_id for q in queues], rng


def freeze_heap() -> None:
    """As the server does once started (``cxos.app``): what exists now (the roster, the queues,
    the indexes) moves to the permanent generation, which no garbage collection walks again."""
    gc.collect()
    gc.freeze()


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Samples:
    """Wall-clock and CPU time of each timed call, in nanoseconds.

    On a loaded machine the wall clock also counts the time the process waited for a core; the
    thread's CPU time does not (nor, with a store, the time spent waiting for Redis).
    """

    __slots__ = ("cpu", "wall")

    def __init__(self) -> None:
        self.wall: list[int] = []
        self.cpu: list[int] = []

    def __len__(self) -> int:
        return len(self.wall)

    def add(self, wall_ns: int, cpu_ns: int) -> None:
        self.wall.append(wall_ns)
        self.cpu.append(cpu_ns)


def report(name: str, samples: Samples) -> None:
    wall = [s / 1000 for s in samples.wall]
    cpu = [s / 1000 for s in samples.cpu]
    total = sum(samples.wall) / 1e9
    print(
        f"{name:22s} n={len(wall):6d}  p50={percentile(wall, 0.50):8.1f} us  "
        f"p99={percentile(wall, 0.99):8.1f} us  max={max(wall):8.1f} us  "
        f"mean={statistics.fmean(wall):7.1f} us  throughput={len(wall) / total:9.0f}/s  "
        f"cpu p50={percentile(cpu, 0.50):7.1f} us  cpu p99={percentile(cpu, 0.99):8.1f} us"
    )


def run(decisions: int, seed: int) -> None:
    engine, queue_ids, rng = build(seed)
    now = 0.0
    clock, cpu = time.perf_counter_ns, time.thread_time_ns

    # Phase 1: callers arrive while every agent is free.
    for agent_id in engine.agents:
        engine.agent_login(agent_id, now)
    freeze_heap()
    arrival = Samples()
    by_strategy: dict[str, Samples] = {}
    call_no = 0
    busy: list[str] = []
    while len(arrival) < decisions:
        now += 0.01
        call_no += 1
        call_id = f"c{call_no}"
        queue_id = rng.choice(queue_ids)
        priority = rng.randint(0, 3)
        t0, c0 = clock(), cpu()
        out = engine.enqueue(call_id, queue_id, now, priority=priority)
        wall, used = clock() - t0, cpu() - c0
        arrival.add(wall, used)
        strategy = engine.queues[queue_id].config.strategy.value
        by_strategy.setdefault(strategy, Samples()).add(wall, used)
        offered = engine.calls.get(call_id)
        if offered is None or not offered.offers:
            engine.caller_abandoned(call_id, now)
            continue
        agent_id = next(iter(offered.offers))
        engine.offer_answered(call_id, agent_id, now)
        busy.append(agent_id)
        if len(busy) > 2_000:  # keep most agents free in this phase
            done = busy.pop(rng.randrange(len(busy)))
            engine.call_ended(done, now)
        del out

    # Phase 2: everybody who can be busy is busy, and 1,000 callers wait.
    while True:
        now += 0.01
        call_no += 1
        call_id = f"c{call_no}"
        engine.enqueue(call_id, rng.choice(queue_ids), now, priority=rng.randint(0, 3))
        call = engine.calls.get(call_id)
        if call is not None and call.offers:
            engine.offer_answered(call_id, next(iter(call.offers)), now)
        elif sum(len(q.entries) for q in engine.queues.values()) >= WAITING:
            break
    on_call = [a for a, r in engine.agents.items() if r.state.value == "on_call"]
    waiting = sum(len(q.entries) for q in engine.queues.values())
    free = sum(1 for r in engine.agents.values() if r.state.value == "available")
    print(f"steady state: {len(on_call)} agents on call, {free} free, {waiting} callers waiting")

    agent_free = Samples()
    busy_arrival = Samples()
    while len(agent_free) < decisions:
        now += 0.01
        agent_id = on_call.pop(rng.randrange(len(on_call)))
        t0, c0 = clock(), cpu()
        engine.call_ended(agent_id, now)
        agent_free.add(clock() - t0, cpu() - c0)
        next_call = engine.agents[agent_id].call_id
        if next_call is not None:
            engine.offer_answered(next_call, agent_id, now)
            on_call.append(agent_id)
        # A new caller replaces the one served, so about 1,000 keep waiting.
        call_no += 1
        new_call = f"c{call_no}"
        queue_id, priority = rng.choice(queue_ids), rng.randint(0, 3)
        t0, c0 = clock(), cpu()
        engine.enqueue(new_call, queue_id, now, priority=priority)
        busy_arrival.add(clock() - t0, cpu() - c0)
        call = engine.calls.get(new_call)
        if call is not None and call.offers:
            taker = next(iter(call.offers))
            engine.offer_answered(new_call, taker, now)
            on_call.append(taker)

    print(f"machine: {platform.platform()}; CPU: {cpu_model()}; Python {platform.python_version()}")
    print(f"scale: {AGENTS} agents, {QUEUES} queues, {SKILLS} skills, ~{WAITING} callers waiting")
    print("call_arrival with thousands of agents free:")
    report("  all strategies", arrival)
    for strategy, samples in sorted(by_strategy.items()):
        report(f"  {strategy}", samples)
    print("steady state, ~1,000 callers waiting:")
    report("  call_arrival", busy_arrival)
    report("  agent_free", agent_free)


class SilentPhones:
    """A telephony port that accepts every request and reports nothing: the benchmark reports
    ringing, answers and hang-ups itself, at the moments it chooses."""

    async def ring_agent(
        self,
        call_id: str,
        agent_id: str,
        sip_user: str,
        ring_timeout: float,
        attributes: Mapping[str, str],
    ) -> None:
        return None

    async def cancel_ring(self, call_id: str, agent_id: str, reason: str) -> None:
        return None

    async def bridge(self, call_id: str, agent_id: str) -> None:
        return None

    async def announce(
        self, call_id: str, queue_id: str, position: int | None, ewt_seconds: float | None
    ) -> None:
        return None

    async def route_call(
        self, call_id: str, queue_id: str, destination: str | None, reason: str
    ) -> None:
        return None

    async def offer_callback(self, call_id: str, queue_id: str) -> None:
        return None

    async def dial_callback(
        self, call_id: str, agent_id: str, destination: str, attempt: int
    ) -> None:
        return None


async def _answer(service: AcdService, call_id: str) -> str | None:
    """Answer ``call_id``'s offer (ringing, then 200 OK) if it got one; the agent, or None."""
    call = service.engine.calls.get(call_id)
    if call is None or not call.offers:
        return None
    agent_id = next(iter(call.offers))
    service.ringing(call_id, agent_id)
    service.answered(call_id, agent_id)
    await service.drain()
    return agent_id


async def run_service(decisions: int, seed: int, store_kind: str, redis_url: str) -> None:
    from acd.service import AcdService
    from acd.store import InProcessAcdStore

    engine, queue_ids, rng = build(seed)
    store: AcdStore
    cleanup = None
    if store_kind == "redis":
        from acd.redis_store import RedisAcdStore

        redis_store = RedisAcdStore.from_url(redis_url, prefix=f"cxos-bench:{uuid.uuid4().hex}:")
        store = redis_store

        async def cleanup() -> None:
            await redis_store.delete_all()
            await redis_store.close()
    else:
        store = InProcessAcdStore()
    service = AcdService(engine, store, SilentPhones(), lambda event: None, node_id="bench")
    await service.start()
    clock, cpu = time.perf_counter_ns, time.thread_time_ns
    try:
        started = time.perf_counter()
        for agent_id in engine.agents:
            await service.login(agent_id)
        freeze_heap()
        arrival = Samples()
        call_no = 0
        busy: list[str] = []
        while len(arrival) < decisions:
            call_no += 1
            call_id = f"c{call_no}"
            queue_id, priority = rng.choice(queue_ids), rng.randint(0, 3)
            t0, c0 = clock(), cpu()
            await service.enqueue(call_id, queue_id, priority=priority)
            arrival.add(clock() - t0, cpu() - c0)
            taker = await _answer(service, call_id)
            if taker is None:
                service.caller_hung_up(call_id)
                continue
            busy.append(taker)
            if len(busy) > 2_000:
                service.agent_hung_up(busy.pop(rng.randrange(len(busy))))
        await service.drain()
        while True:
            call_no += 1
            call_id = f"c{call_no}"
            await service.enqueue(call_id, rng.choice(queue_ids), priority=rng.randint(0, 3))
            if await _answer(service, call_id) is None and (
                sum(len(q.entries) for q in engine.queues.values()) >= WAITING
            ):
                break
        setup = time.perf_counter() - started
        on_call = [a for a, r in engine.agents.items() if r.state.value == "on_call"]
        agent_free = Samples()
        busy_arrival = Samples()
        while len(agent_free) < decisions:
            agent_id = on_call.pop(rng.randrange(len(on_call)))
            t0, c0 = clock(), cpu()
            service.agent_hung_up(agent_id)
            await service.drain()
            agent_free.add(clock() - t0, cpu() - c0)
            next_call = engine.agents[agent_id].call_id
            if next_call is not None and await _answer(service, next_call) is not None:
                on_call.append(agent_id)
            call_no += 1
            new_call = f"c{call_no}"
            queue_id, priority = rng.choice(queue_ids), rng.randint(0, 3)
            t0, c0 = clock(), cpu()
            await service.enqueue(new_call, queue_id, priority=priority)
            busy_arrival.add(clock() - t0, cpu() - c0)
            taker = await _answer(service, new_call)
            if taker is not None:
                on_call.append(taker)
        waiting = sum(len(q.entries) for q in engine.queues.values())
    finally:
        await service.stop()
        if cleanup is not None:
            await cleanup()
    loop = type(asyncio.get_running_loop()).__module__
    print(f"machine: {platform.platform()}; CPU: {cpu_model()}; Python {platform.python_version()}")
    print(
        f"store: {store_kind}; event loop: {loop}; scale: {AGENTS} agents, {QUEUES} queues, "
        f"{SKILLS} skills, {waiting} callers waiting; set-up {setup:.1f} s"
    )
    print("each decision through the ACD service, with its store operations:")
    report("  arrival, agents free", arrival)
    report("  arrival, steady", busy_arrival)
    report("  agent_free, steady", agent_free)


def main() -> None:
    here = Path(__file__).resolve().parent
    if sys.path and Path(sys.path[0] or ".").resolve() == here:
        # Run as a script: this directory would shadow the ``acd`` package with this file.
        del sys.path[0]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--store", choices=("none", "memory", "redis"), default="none")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()
    if args.store == "none":
        run(args.decisions, args.seed)
        return
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a Linux/macOS dependency
        asyncio.run(run_service(args.decisions, args.seed, args.store, args.redis_url))
    else:
        uvloop.run(run_service(args.decisions, args.seed, args.store, args.redis_url))


if __name__ == "__main__":
    main()
