"""ACD routing decision latency and throughput at contact-center scale.

10,000 agents, 200 queues, 50 skills, 1,000 callers waiting. Two decisions are timed:

- ``agent_free``: an agent ends a call and the engine picks their next caller among the queues they
  serve (what happens all day long when callers wait);
- ``call_arrival``: a caller arrives and the engine picks a free agent by the queue's strategy
  (longest idle, round robin, fewest calls, least talk time, linear, random, skill-weighted);
  timed first with most of the 10,000 agents free (the worst case for strategies that rank every
  eligible agent), then in the steady state with 1,000 callers waiting.

Each timed call is one engine input with its whole output (events and actions). Run with
``python benchmarks/acd_routing.py [--decisions N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from acd.engine import AcdEngine

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
        )
        for n in range(AGENTS)
    ]
    engine = AcdEngine(queues, agents, rng=random.Random(seed))
    return engine, [q.queue_id for q in queues], rng


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report(name: str, samples_ns: list[int]) -> None:
    micros = [s / 1000 for s in samples_ns]
    total = sum(samples_ns) / 1e9
    print(
        f"{name:18s} n={len(micros):6d}  p50={percentile(micros, 0.50):8.1f} us  "
        f"p99={percentile(micros, 0.99):8.1f} us  max={max(micros):8.1f} us  "
        f"mean={statistics.fmean(micros):7.1f} us  throughput={len(micros) / total:9.0f}/s"
    )


def run(decisions: int, seed: int) -> None:
    engine, queue_ids, rng = build(seed)
    now = 0.0
    clock = time.perf_counter_ns

    # Phase 1: callers arrive while every agent is free.
    for agent_id in engine.agents:
        engine.agent_login(agent_id, now)
    arrival: list[int] = []
    by_strategy: dict[str, list[int]] = {}
    call_no = 0
    busy: list[str] = []
    while len(arrival) < decisions:
        now += 0.01
        call_no += 1
        call_id = f"c{call_no}"
        queue_id = rng.choice(queue_ids)
        t0 = clock()
        out = engine.enqueue(call_id, queue_id, now, priority=rng.randint(0, 3))
        elapsed = clock() - t0
        arrival.append(elapsed)
        strategy = engine.queues[queue_id].config.strategy.value
        by_strategy.setdefault(strategy, []).append(elapsed)
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

    agent_free: list[int] = []
    busy_arrival: list[int] = []
    while len(agent_free) < decisions:
        now += 0.01
        agent_id = on_call.pop(rng.randrange(len(on_call)))
        t0 = clock()
        engine.call_ended(agent_id, now)
        agent_free.append(clock() - t0)
        next_call = engine.agents[agent_id].call_id
        if next_call is not None:
            engine.offer_answered(next_call, agent_id, now)
            on_call.append(agent_id)
        # A new caller replaces the one served, so about 1,000 keep waiting.
        call_no += 1
        new_call = f"c{call_no}"
        t0 = clock()
        engine.enqueue(new_call, rng.choice(queue_ids), now, priority=rng.randint(0, 3))
        busy_arrival.append(clock() - t0)
        call = engine.calls.get(new_call)
        if call is not None and call.offers:
            taker = next(iter(call.offers))
            engine.offer_answered(new_call, taker, now)
            on_call.append(taker)

    print(f"machine: {platform.platform()}; CPU: {cpu_model()}; Python {platform.python_version()}")
    print(f"scale: {AGENTS} agents, {QUEUES} queues, {SKILLS} skills, ~{WAITING} callers waiting")
    print("call_arrival with thousands of agents free (each strategy reads every eligible one):")
    report("  all strategies", arrival)
    for strategy, samples in sorted(by_strategy.items()):
        report(f"  {strategy}", samples)
    print("steady state, ~1,000 callers waiting:")
    report("  call_arrival", busy_arrival)
    report("  agent_free", agent_free)


def main() -> None:
    here = Path(__file__).resolve().parent
    if sys.path and Path(sys.path[0] or ".").resolve() == here:
        # Run as a script: this directory would shadow the ``acd`` package with this file.
        del sys.path[0]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    run(args.decisions, args.seed)


if __name__ == "__main__":
    main()
