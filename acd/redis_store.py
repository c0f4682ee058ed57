"""The ACD store on Redis, shared by every node: claims, connections, agents' statuses and
callbacks' owners decided by Lua scripts.

Why Lua: a claim is "read the holder, compare its lease with ``now``, write the new holder", a
connection is "write unless another agent is written", an agent's status is "write unless its
version moved on" and adopting a lost node's callback is "write unless the entry changed". Done
as separate commands, two nodes can both read "free" and both write; a script runs atomically
on the Redis server (no other command runs in between), so exactly one of them wins whatever
the interleaving. Everything else is a
single command (``HINCRBYFLOAT``, ``HSET``...), atomic by itself.

Round trips: a write that answers nothing (an agent's status, a queue entry, a customer's last
agent) is held back and sent, in order, in the same pipeline as the next command that needs an
answer (a claim, a read), or by :meth:`RedisAcdStore.flush`, which the service calls at the end
of every input. A caller's arrival (entry, agent status, claim) is then one round trip, not three.

Keys, all under one prefix (``cxos:acd:`` by default; one prefix per deployment or per test)::

    {prefix}claim:{agent}     hash   call, until      the agent's offer/call lease
    {prefix}conn:{call}       string agent            who answered the call
    {prefix}status:{agent}    string JSON AgentStatus, with its version (compare-and-set)
    {prefix}counters:{agent}  hash   counter -> float
    {prefix}entries:{queue}   hash   call -> JSON QueueEntry
    {prefix}last_offered      hash   queue -> agent   round-robin memory
    {prefix}customers         hash   customer -> agent
    {prefix}nodes             hash   node -> lease    nodes alive (shared clock)

Leases are compared on the shared clock the callers pass in (``now``, ``lease_until``); Redis' own
clock only collects the garbage: a claim key also expires ``claim_grace`` seconds after its lease,
so a node that crashed leaves nothing behind for ever. Nothing lives only in the client, so a
restarted server process finds every claim, connection, status and waiting caller where it was.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from acd.store import AgentStatus, Claim, QueueEntry

logger = logging.getLogger(__name__)

DEFAULT_PREFIX: Final = "cxos:acd:"
_BATCH: Final = 500  # keys per MGET when many statuses are read at once (a restart)

# KEYS[1] claim key; ARGV: call, lease_until, now, key ttl (ms).
# Refused while another call holds a lease that has not run out at ``now``.
_CLAIM: Final = """
local held = redis.call('HMGET', KEYS[1], 'call', 'until')
if held[1] and held[1] ~= ARGV[1] and tonumber(held[2]) > tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], 'call', ARGV[1], 'until', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

# KEYS[1] claim key; ARGV: call, lease_until, now, key ttl (ms). Only the live holder extends.
_RENEW: Final = """
local held = redis.call('HMGET', KEYS[1], 'call', 'until')
if held[1] ~= ARGV[1] or tonumber(held[2]) <= tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], 'until', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

# KEYS[1] claim key; ARGV: call. Only the holder drops its claim.
_RELEASE: Final = """
if redis.call('HGET', KEYS[1], 'call') ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS[1] connection key; ARGV: agent, key ttl (ms). The first answer wins; the winner may repeat.
_CONNECT: Final = """
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if current == ARGV[1] then
  return 1
end
return 0
"""


# KEYS[1] status key; ARGV: expected version, the new JSON document (carrying the version
# after it). Written only over the expected version (0: no status stored); otherwise the stored
# document is returned unchanged, so a node never overwrites a change it has not seen.
_SET_STATUS: Final = """
local raw = redis.call('GET', KEYS[1])
local version = 0
if raw then
  version = tonumber(cjson.decode(raw)['version'] or 0)
end
if version ~= tonumber(ARGV[1]) then
  return {0, raw or ''}
end
redis.call('SET', KEYS[1], ARGV[2])
return {1, ''}
"""


# KEYS[1] entries hash; ARGV: call, the entry's JSON as read, the JSON to write. Written only if
# the entry is still exactly as read (the whole document compared: no re-encoding in Lua).
_SWAP_ENTRY: Final = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""

# KEYS[1] nodes hash; ARGV: node, its lease as read. Dropped only if the node did not renew it.
_FORGET_NODE: Final = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _status(agent_id: str, raw: Any) -> AgentStatus:
    document = json.loads(_text(raw))
    wrap_up_until = document.get("wrap_up_until")
    return AgentStatus(
        agent_id=agent_id,
        state=str(document["state"]),
        reason=str(document.get("reason", "")),
        call_id=document.get("call_id"),
        since=float(document.get("since", 0.0)),
        wrap_up_until=None if wrap_up_until is None else float(wrap_up_until),
        node=str(document.get("node", "")),
        version=int(document.get("version", 0)),
        commanded=bool(document.get("commanded", False)),
    )


def _status_document(status: AgentStatus) -> str:
    return json.dumps(
        {
            "state": status.state,
            "reason": status.reason,
            "call_id": status.call_id,
            "since": status.since,
            "wrap_up_until": status.wrap_up_until,
            "node": status.node,
            "version": status.version,
            "commanded": status.commanded,
        }
    )


def _entry_document(entry: QueueEntry) -> str:
    return json.dumps(
        {
            "priority": entry.priority,
            "rank": entry.rank,
            "arrival": entry.arrival,
            "attributes": dict(entry.attributes),
            "callback_destination": entry.callback_destination,
            "callback_attempts": entry.callback_attempts,
            "node": entry.node,
            "required_skills": dict(entry.required_skills),
        }
    )


def _entry(call_id: str, queue_id: str, raw: Any) -> QueueEntry:
    document = json.loads(_text(raw))
    return QueueEntry(
        call_id=call_id,
        queue_id=queue_id,
        priority=int(document["priority"]),
        rank=float(document["rank"]),
        arrival=float(document["arrival"]),
        attributes={str(k): str(v) for k, v in document["attributes"].items()},
        callback_destination=document.get("callback_destination"),
        callback_attempts=int(document.get("callback_attempts", 0)),
        node=str(document.get("node", "")),
        required_skills={str(k): int(v) for k, v in document.get("required_skills", {}).items()},
    )


def _number(value: float) -> str:
    # repr() round-trips a float exactly; Lua's tonumber reads it back as the same double.
    if not math.isfinite(value):
        raise ValueError(f"store times must be finite seconds, got {value!r}")
    return repr(float(value))


class RedisAcdStore:
    """:class:`acd.store.AcdStore` on one Redis (redis.asyncio client, any decoding setting).

    ``claim_grace`` (seconds) keeps a claim key this long after its lease before Redis deletes it;
    ``connection_ttl`` bounds how long a connection record outlives a node that never finished
    its call.
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        claim_grace: float = 60.0,
        connection_ttl: float = 86_400.0,
    ) -> None:
        if not prefix:
            raise ValueError("the Redis key prefix must not be empty")
        if claim_grace <= 0 or connection_ttl <= 0:
            raise ValueError("claim_grace and connection_ttl must be > 0 seconds")
        self.client = client
        self.prefix = prefix
        self._claim_grace = claim_grace
        self._connection_ms = str(math.ceil(connection_ttl * 1000))
        self._claim = client.register_script(_CLAIM)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._connect = client.register_script(_CONNECT)
        self._set_status = client.register_script(_SET_STATUS)
        self._swap_entry = client.register_script(_SWAP_ENTRY)
        self._forget_node = client.register_script(_FORGET_NODE)
        # Writes whose answer nobody waits for (statuses, queue entries, memories), sent with
        # the next command that needs an answer or by flush(): one round trip, not one each.
        self._pending: list[tuple[str, ...]] = []

    @classmethod
    def from_url(cls, url: str, *, prefix: str = DEFAULT_PREFIX) -> RedisAcdStore:
        """A store on a new client for ``redis://host:port/db`` (closed by :meth:`close`).

        A command that finds its pooled connection closed (Redis restarted, a failover) is sent
        again on a new connection, twice at most, instead of failing the call that issued it.
        Only connection errors are retried: after a timeout the command may have run.
        """
        retry = Retry(
            ExponentialBackoff(cap=0.5, base=0.05), 2, supported_errors=(RedisConnectionError,)
        )
        return cls(Redis.from_url(url, retry=retry), prefix=prefix)

    async def close(self) -> None:
        """Send the writes held back, then close the client."""
        try:
            await self.flush()
        finally:
            await self.client.aclose()

    async def delete_all(self) -> int:
        """Delete every key under this store's prefix (tests, decommissioning); returns how many."""
        await self.flush()
        deleted = 0
        batch: list[Any] = []
        async for key in self.client.scan_iter(match=self._escaped_prefix() + "*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                deleted += await self.client.delete(*batch)
                batch.clear()
        if batch:
            deleted += await self.client.delete(*batch)
        return deleted

    async def flush(self) -> None:
        """Send the writes held back, in order, in one round trip."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        async with self.client.pipeline(transaction=False) as pipe:
            for command in pending:
                pipe.execute_command(*command)
            await pipe.execute()

    async def _script(self, script: AsyncScript, keys: list[str], args: list[str]) -> Any:
        """Run ``script``, with the writes held back before it in the same round trip.

        EVALSHA by the script's digest: a pipeline of redis-py ``Script`` objects would first
        ask the server whether they are loaded, a round trip of its own every time. A server
        that lost its scripts (restarted) answers NOSCRIPT, and the script is run again through
        redis-py, which loads it.
        """
        if not self._pending:
            return await script(keys=keys, args=args)
        pending, self._pending = self._pending, []
        async with self.client.pipeline(transaction=False) as pipe:
            for command in pending:
                pipe.execute_command(*command)
            pipe.evalsha(script.sha, len(keys), *keys, *args)
            results = await pipe.execute(raise_on_error=False)
        for result in results[:-1]:
            if isinstance(result, Exception):
                raise result
        answer = results[-1]
        if isinstance(answer, NoScriptError):
            return await script(keys=keys, args=args)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def _escaped_prefix(self) -> str:
        # SCAN MATCH is a glob: characters special to it in the prefix must be taken literally.
        return "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix)

    def _key(self, kind: str, name: str = "") -> str:
        return f"{self.prefix}{kind}:{name}" if name else f"{self.prefix}{kind}"

    def _claim_ttl_ms(self, lease_until: float, now: float) -> str:
        return str(max(1, math.ceil((lease_until - now + self._claim_grace) * 1000)))

    # Claims --------------------------------------------------------------------------------

    async def claim_agent(
        self, agent_id: str, call_id: str, lease_until: float, now: float
    ) -> bool:
        won = await self._script(
            self._claim,
            [self._key("claim", agent_id)],
            [
                call_id,
                _number(lease_until),
                _number(now),
                self._claim_ttl_ms(lease_until, now),
            ],
        )
        return bool(int(won))

    async def renew_claim(
        self, agent_id: str, call_id: str, lease_until: float, now: float
    ) -> bool:
        renewed = await self._script(
            self._renew,
            [self._key("claim", agent_id)],
            [
                call_id,
                _number(lease_until),
                _number(now),
                self._claim_ttl_ms(lease_until, now),
            ],
        )
        return bool(int(renewed))

    async def release_agent(self, agent_id: str, call_id: str) -> bool:
        released = await self._script(self._release, [self._key("claim", agent_id)], [call_id])
        return bool(int(released))

    async def claim_of(self, agent_id: str, now: float) -> Claim | None:
        await self.flush()
        call, until = await self.client.hmget(self._key("claim", agent_id), ["call", "until"])
        if call is None or until is None:
            return None
        lease_until = float(_text(until))
        if lease_until <= now:
            return None
        return Claim(agent_id=agent_id, call_id=_text(call), lease_until=lease_until)

    async def connect_call(self, call_id: str, agent_id: str) -> bool:
        won = await self._script(
            self._connect, [self._key("conn", call_id)], [agent_id, self._connection_ms]
        )
        return bool(int(won))

    async def connected_agent(self, call_id: str) -> str | None:
        await self.flush()
        agent = await self.client.get(self._key("conn", call_id))
        return None if agent is None else _text(agent)

    async def finish_call(self, call_id: str) -> None:
        self._pending.append(("DEL", self._key("conn", call_id)))

    # Agents --------------------------------------------------------------------------------

    async def save_agent_status(self, status: AgentStatus) -> None:
        self._pending.append(
            ("SET", self._key("status", status.agent_id), _status_document(status))
        )

    async def compare_and_set_agent_status(
        self, status: AgentStatus, expected_version: int
    ) -> tuple[bool, AgentStatus | None]:
        saved = dataclasses.replace(status, version=expected_version + 1)
        written, raw = await self._script(
            self._set_status,
            [self._key("status", status.agent_id)],
            [str(expected_version), _status_document(saved)],
        )
        if int(written):
            return True, saved
        return False, _status(status.agent_id, raw) if _text(raw) else None

    async def agent_status(self, agent_id: str) -> AgentStatus | None:
        await self.flush()
        raw = await self.client.get(self._key("status", agent_id))
        return None if raw is None else _status(agent_id, raw)

    async def agent_statuses(self, agent_ids: Iterable[str]) -> Mapping[str, AgentStatus]:
        await self.flush()
        found: dict[str, AgentStatus] = {}
        wanted = list(agent_ids)
        for start in range(0, len(wanted), _BATCH):
            batch = wanted[start : start + _BATCH]
            values = await self.client.mget([self._key("status", a) for a in batch])
            for agent_id, raw in zip(batch, values, strict=True):
                if raw is not None:
                    found[agent_id] = _status(agent_id, raw)
        return found

    async def add_counter(self, agent_id: str, counter: str, amount: float) -> float:
        await self.flush()
        value = await self.client.hincrbyfloat(self._key("counters", agent_id), counter, amount)
        return float(value)

    async def reset_counter(self, agent_id: str, counter: str) -> None:
        self._pending.append(("HDEL", self._key("counters", agent_id), counter))

    async def counters(self, agent_id: str) -> Mapping[str, float]:
        await self.flush()
        raw = await self.client.hgetall(self._key("counters", agent_id))
        return {_text(k): float(_text(v)) for k, v in raw.items()}

    # Queues --------------------------------------------------------------------------------

    async def put_entry(self, entry: QueueEntry) -> None:
        self._pending.append(
            ("HSET", self._key("entries", entry.queue_id), entry.call_id, _entry_document(entry))
        )

    async def remove_entry(self, queue_id: str, call_id: str) -> bool:
        await self.flush()
        return bool(await self.client.hdel(self._key("entries", queue_id), call_id))

    async def entries(self, queue_id: str) -> tuple[QueueEntry, ...]:
        await self.flush()
        raw = await self.client.hgetall(self._key("entries", queue_id))
        found = [_entry(_text(call), queue_id, encoded) for call, encoded in raw.items()]
        return tuple(sorted(found, key=QueueEntry.order_key))

    async def adopt_entry(
        self, queue_id: str, call_id: str, from_node: str, to_node: str
    ) -> QueueEntry | None:
        await self.flush()
        key = self._key("entries", queue_id)
        raw = await self.client.hget(key, call_id)
        if raw is None:
            return None
        entry = _entry(call_id, queue_id, raw)
        if entry.node != from_node:
            return None
        adopted = dataclasses.replace(entry, node=to_node)
        swapped = await self._script(
            self._swap_entry, [key], [call_id, _text(raw), _entry_document(adopted)]
        )
        return adopted if int(swapped) else None

    async def mark_node_alive(self, node_id: str, lease_until: float) -> None:
        self._pending.append(("HSET", self._key("nodes"), node_id, _number(lease_until)))

    async def node_leases(self) -> Mapping[str, float]:
        await self.flush()
        raw = await self.client.hgetall(self._key("nodes"))
        return {_text(node): float(_text(until)) for node, until in raw.items()}

    async def forget_node(self, node_id: str, lease_until: float) -> None:
        await self._script(self._forget_node, [self._key("nodes")], [node_id, _number(lease_until)])

    async def set_last_offered(self, queue_id: str, agent_id: str) -> None:
        await self.flush()
        await self.client.hset(self._key("last_offered"), queue_id, agent_id)

    async def last_offered(self, queue_id: str) -> str | None:
        await self.flush()
        agent = await self.client.hget(self._key("last_offered"), queue_id)
        return None if agent is None else _text(agent)

    async def remember_agent(self, customer: str, agent_id: str) -> None:
        self._pending.append(("HSET", self._key("customers"), customer, agent_id))

    async def agent_for_customer(self, customer: str) -> str | None:
        await self.flush()
        agent = await self.client.hget(self._key("customers"), customer)
        return None if agent is None else _text(agent)
