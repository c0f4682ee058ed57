"""Two server processes route one stream of calls over one Redis: never a double offer or answer.

Both processes get the same callers (as when two nodes see one shared queue) and the same four
agents, and start at the same instant; every agent and call they touch is watched in Redis by the
nodes themselves (see tests/acd/acd_race_node.py).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from redis.asyncio import Redis

from tests.acd.acd_race_node import CALLS
from tests.acd.acd_redis import REDIS_URL, redis_store, unique_prefix

ROOT = Path(__file__).resolve().parents[2]
# ``python -m tests.acd.acd_race_node``, except that this repository's ``tests`` directory is
# bound first: a dependency that installs a top-level ``tests`` package (sippy does) would
# otherwise win over it, a regular package taking precedence over a namespace one.
_RUN_NODE = (
    "import runpy, sys, types; tests = types.ModuleType('tests'); tests.__path__ = ['tests']; "
    "sys.modules['tests'] = tests; sys.argv[0] = 'acd_race_node'; "
    "runpy.run_module('tests.acd.acd_race_node', run_name='__main__', alter_sys=True)"
)


async def _wait_ready(client: Redis, prefix: str, nodes: list[asyncio.subprocess.Process]) -> None:
    while int(await client.get(f"{prefix}ready") or 0) < len(nodes):
        assert all(n.returncode is None for n in nodes), "a node exited before starting"
        await asyncio.sleep(0.01)


async def test_two_processes_never_offer_an_agent_twice_nor_connect_a_call_twice() -> None:
    prefix = unique_prefix()
    async with redis_store(prefix):
        nodes = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _RUN_NODE,
                prefix,
                name,
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for name in ("node-a", "node-b")
        ]
        client = Redis.from_url(REDIS_URL)
        try:
            await asyncio.wait_for(_wait_ready(client, prefix, nodes), timeout=30)
            await client.rpush(f"{prefix}go", *(["go"] * len(nodes)))  # one start signal each
            outputs = await asyncio.wait_for(
                asyncio.gather(*(n.communicate() for n in nodes)), timeout=60
            )
        finally:
            for n in nodes:
                if n.returncode is None:
                    n.kill()
                    await n.wait()
            await client.aclose()
    for n, (_out, err) in zip(nodes, outputs, strict=True):
        assert n.returncode == 0, err.decode()[-3000:]
    results = [json.loads(out) for out, _ in outputs]

    assert max(r["most_calls_on_an_agent"] for r in results) == 1
    assert max(r["most_agents_on_a_call"] for r in results) == 1
    bridged = sorted(call for r in results for call, _agent in r["bridged"])
    assert bridged == [f"c{n:02d}" for n in range(CALLS)]  # every caller served exactly once
    # Each caller was queued on both nodes: one copy was connected, the other answered too late
    # and dropped by the store's connect check. The agents were contended for as well.
    assert sum(r["connects_refused"] for r in results) == CALLS
    assert sum(r["claims_refused"] for r in results) > 0
    # A claim refused because the other node holds the agent is not the agent's failure.
    assert sum(r["failures_counted"] for r in results) == 0
