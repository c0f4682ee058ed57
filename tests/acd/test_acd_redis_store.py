"""What the Redis store adds to the contract: shared state outlives the process and the server."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from acd.redis_store import RedisAcdStore
from acd.store import AgentStatus, QueueEntry
from tests.acd.acd_redis import REDIS_URL, redis_store, unique_prefix


async def _fill(store: RedisAcdStore) -> None:
    assert await store.claim_agent("alice", "node-1/c1", lease_until=100.0, now=0.0)
    assert await store.connect_call("c0", "node-1/bob")
    await store.save_agent_status(
        AgentStatus(agent_id="alice", state="reserved", reason="offer", call_id="c1", since=1.5)
    )
    await store.add_counter("alice", "no_answer", 2)
    await store.put_entry(
        QueueEntry(
            call_id="c1",
            queue_id="sales",
            priority=3,
            rank=-3.0,
            arrival=12.25,
            attributes={"customer_id": "k9"},
        )
    )
    await store.put_entry(
        QueueEntry(
            call_id="c2",
            queue_id="sales",
            priority=0,
            rank=0.0,
            arrival=13.0,
            callback_destination="+15550100",
        )
    )
    await store.set_last_offered("sales", "bob")
    await store.remember_agent("k9", "bob")


async def _check(store: RedisAcdStore) -> None:
    claim = await store.claim_of("alice", now=50.0)
    assert claim is not None and (claim.call_id, claim.lease_until) == ("node-1/c1", 100.0)
    assert not await store.claim_agent("alice", "node-2/c7", lease_until=200.0, now=50.0)
    assert not await store.connect_call("c0", "node-2/carol")
    assert await store.agent_status("alice") == AgentStatus(
        agent_id="alice", state="reserved", reason="offer", call_id="c1", since=1.5
    )
    assert dict(await store.counters("alice")) == {"no_answer": 2.0}
    entries = await store.entries("sales")
    assert [(e.call_id, e.priority, e.arrival) for e in entries] == [
        ("c1", 3, 12.25),
        ("c2", 0, 13.0),
    ]
    assert dict(entries[0].attributes) == {"customer_id": "k9"}
    assert entries[1].callback_destination == "+15550100"
    assert await store.last_offered("sales") == "bob"
    assert await store.agent_for_customer("k9") == "bob"


async def test_a_restarted_node_finds_claims_connections_and_queues_as_they_were() -> None:
    prefix = unique_prefix()
    async with redis_store(prefix) as before:
        await _fill(before)
        await before.close()  # the node goes away
        restarted = RedisAcdStore(Redis.from_url(REDIS_URL), prefix=prefix)
        try:
            await _check(restarted)
        finally:
            await restarted.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server of our own, append-only file on, that a test may stop and start again."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is needed for the restart test"
        self.port = _free_port()
        self.command = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        self.command += ["--dir", str(directory), "--save", ""]
        self.command += ["--appendonly", "yes", "--appendfsync", "always"]
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        client = Redis(port=self.port)
        try:
            for _ in range(500):
                try:
                    if await client.ping():
                        return
                except Exception:  # connection refused, or still loading the append-only file
                    await asyncio.sleep(0.01)
            raise AssertionError("redis-server did not start")
        finally:
            await client.aclose()

    async def stop(self) -> None:
        """SIGTERM: redis-server finishes its append-only file and exits."""
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await asyncio.wait_for(self.process.wait(), timeout=10)
        self.process = None


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    yield server
    await server.stop()


async def test_state_survives_a_redis_server_restart(private_redis: PrivateRedis) -> None:
    await private_redis.start()
    store = RedisAcdStore(Redis(port=private_redis.port), prefix="cxos:acd:")
    await _fill(store)
    await store.close()
    await private_redis.stop()

    await private_redis.start()
    restarted = RedisAcdStore(Redis(port=private_redis.port), prefix="cxos:acd:")
    try:
        await _check(restarted)  # the claim scripts are loaded again on first use
    finally:
        await restarted.close()


async def test_a_claim_key_expires_in_redis_after_its_lease_and_grace() -> None:
    client = Redis.from_url(REDIS_URL)
    store = RedisAcdStore(client, prefix=unique_prefix(), claim_grace=30.0)
    try:
        await store.claim_agent("alice", "c1", lease_until=1010.0, now=1000.0)
        ttl_ms = await client.pttl(f"{store.prefix}claim:alice")
        assert 39_000 < ttl_ms <= 40_000
        await store.renew_claim("alice", "c1", lease_until=1100.0, now=1001.0)
        ttl_ms = await client.pttl(f"{store.prefix}claim:alice")
        assert 128_000 < ttl_ms <= 129_000
    finally:
        await store.delete_all()
        await store.close()


async def test_deleting_a_prefix_leaves_other_prefixes_alone() -> None:
    async with redis_store() as mine, redis_store() as theirs:
        await mine.put_entry(QueueEntry(call_id="c", queue_id="q", priority=0, rank=0, arrival=0))
        await theirs.put_entry(QueueEntry(call_id="d", queue_id="q", priority=0, rank=0, arrival=0))
        assert await mine.delete_all() == 1
        assert await mine.entries("q") == ()
        assert [e.call_id for e in await theirs.entries("q")] == ["d"]


async def test_times_must_be_finite() -> None:
    async with redis_store() as store:
        with pytest.raises(ValueError, match="finite"):
            await store.claim_agent("a", "c", lease_until=float("inf"), now=0.0)


async def test_writes_held_back_go_out_with_the_next_answer_or_a_flush() -> None:
    async with redis_store() as mine:
        theirs = RedisAcdStore(Redis.from_url(REDIS_URL), prefix=mine.prefix)
        try:
            status = AgentStatus(agent_id="alice", state="available", node="n1")
            await mine.save_agent_status(status)
            await mine.remember_agent("k1", "alice")
            assert await mine.agent_status("alice") == status  # its own reads see them at once
            await mine.save_agent_status(AgentStatus(agent_id="bob", state="paused", node="n1"))
            # Carried by the claim's round trip, in order, before the claim itself.
            assert await mine.claim_agent("bob", "n1/c1", lease_until=10.0, now=0.0)
            bob = await theirs.agent_status("bob")
            assert bob is not None and bob.state == "paused"
            await mine.put_entry(
                QueueEntry(call_id="c", queue_id="q", priority=0, rank=0, arrival=0)
            )
            await mine.flush()
            assert [e.call_id for e in await theirs.entries("q")] == ["c"]
            assert await theirs.agent_for_customer("k1") == "alice"
        finally:
            await theirs.close()


async def test_a_script_the_server_forgot_is_loaded_again() -> None:
    async with redis_store() as store:
        await store.save_agent_status(AgentStatus(agent_id="alice", state="available"))
        await store.client.script_flush()  # as after a Redis restart
        assert await store.claim_agent("alice", "n1/c1", lease_until=10.0, now=0.0)
        assert await store.agent_status("alice") is not None
        claim = await store.claim_of("alice", now=1.0)
        assert claim is not None and claim.call_id == "n1/c1"
