"""The ACD store on Redis, shared by every node: claims and connections decided by Lua scripts.

Why Lua: a claim is "read the holder, compare its lease with ``now``, write the new holder" and a
connection is "write unless another agent is written". Done as separate commands, two nodes can
both read "free" and both write; a script runs atomically on the Redis server (no other command
runs in between), so exactly one of them wins whatever the interleaving. Everything else is a
single command (``HINCRBYFLOAT``, ``HSET``...), atomic by itself.

Keys, all under one prefix (``cxos:acd:`` by default; one prefix per deployment or per test)::

    {prefix}claim:{agent}     hash   call, until      the agent's offer/call lease
    {prefix}conn:{call}       string agent            who answered the call
    {prefix}status:{agent}    string JSON AgentStatus
    {prefix}counters:{agent}  hash   counter -> float
    {prefix}entries:{queue}   hash   call -> JSON QueueEntry
    {prefix}last_offered      hash   queue -> agent   round-robin memory
    {prefix}customers         hash   customer -> agent

Leases are compared on the shared clock the callers pass in (``now``, ``lease_until``); Redis' own
clock only collects the garbage: a claim key also expires ``claim_grace`` seconds after its lease,
so a node that crashed leaves nothing behind for ever. Nothing lives only in the client, so a
restarted server process finds every claim, connection, status and waiting caller where it was.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import Any, Final

from redis.asyncio import Redis

from acd.store import AgentStatus, Claim, QueueEntry

logger = logging.getLogger(__name__)

DEFAULT_PREFIX: Final = "cxos:acd:"

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


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


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

    @classmethod
    def from_url(cls, url: str, *, prefix: str = DEFAULT_PREFIX) -> RedisAcdStore:
        """A store on a new client for ``redis://host:port/db`` (closed by :meth:`close`)."""
        return cls(Redis.from_url(url), prefix=prefix)

    async def close(self) -> None:
        await self.client.aclose()

    async def delete_all(self) -> int:
        """Delete every key under this store's prefix (tests, decommissioning); returns how many."""
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
        won = await self._claim(
            keys=[self._key("claim", agent_id)],
            args=[
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
        renewed = await self._renew(
            keys=[self._key("claim", agent_id)],
            args=[
                call_id,
                _number(lease_until),
                _number(now),
                self._claim_ttl_ms(lease_until, now),
            ],
        )
        return bool(int(renewed))

    async def release_agent(self, agent_id: str, call_id: str) -> bool:
        released = await self._release(keys=[self._key("claim", agent_id)], args=[call_id])
        return bool(int(released))

    async def claim_of(self, agent_id: str, now: float) -> Claim | None:
        call, until = await self.client.hmget(self._key("claim", agent_id), ["call", "until"])
        if call is None or until is None:
            return None
        lease_until = float(_text(until))
        if lease_until <= now:
            return None
        return Claim(agent_id=agent_id, call_id=_text(call), lease_until=lease_until)

    async def connect_call(self, call_id: str, agent_id: str) -> bool:
        won = await self._connect(
            keys=[self._key("conn", call_id)], args=[agent_id, self._connection_ms]
        )
        return bool(int(won))

    async def connected_agent(self, call_id: str) -> str | None:
        agent = await self.client.get(self._key("conn", call_id))
        return None if agent is None else _text(agent)

    async def finish_call(self, call_id: str) -> None:
        await self.client.delete(self._key("conn", call_id))

    # Agents --------------------------------------------------------------------------------

    async def save_agent_status(self, status: AgentStatus) -> None:
        document = {
            "state": status.state,
            "reason": status.reason,
            "call_id": status.call_id,
            "since": status.since,
        }
        await self.client.set(self._key("status", status.agent_id), json.dumps(document))

    async def agent_status(self, agent_id: str) -> AgentStatus | None:
        raw = await self.client.get(self._key("status", agent_id))
        if raw is None:
            return None
        document = json.loads(_text(raw))
        return AgentStatus(
            agent_id=agent_id,
            state=str(document["state"]),
            reason=str(document.get("reason", "")),
            call_id=document.get("call_id"),
            since=float(document.get("since", 0.0)),
        )

    async def add_counter(self, agent_id: str, counter: str, amount: float) -> float:
        value = await self.client.hincrbyfloat(self._key("counters", agent_id), counter, amount)
        return float(value)

    async def reset_counter(self, agent_id: str, counter: str) -> None:
        await self.client.hdel(self._key("counters", agent_id), counter)

    async def counters(self, agent_id: str) -> Mapping[str, float]:
        raw = await self.client.hgetall(self._key("counters", agent_id))
        return {_text(k): float(_text(v)) for k, v in raw.items()}

    # Queues --------------------------------------------------------------------------------

    async def put_entry(self, entry: QueueEntry) -> None:
        document = {
            "priority": entry.priority,
            "rank": entry.rank,
            "arrival": entry.arrival,
            "attributes": dict(entry.attributes),
            "callback_destination": entry.callback_destination,
        }
        await self.client.hset(
            self._key("entries", entry.queue_id), entry.call_id, json.dumps(document)
        )

    async def remove_entry(self, queue_id: str, call_id: str) -> bool:
        return bool(await self.client.hdel(self._key("entries", queue_id), call_id))

    async def entries(self, queue_id: str) -> tuple[QueueEntry, ...]:
        raw = await self.client.hgetall(self._key("entries", queue_id))
        found = []
        for call, encoded in raw.items():
            document = json.loads(_text(encoded))
            found.append(
                QueueEntry(
                    call_id=_text(call),
                    queue_id=queue_id,
                    priority=int(document["priority"]),
                    rank=float(document["rank"]),
                    arrival=float(document["arrival"]),
                    attributes={str(k): str(v) for k, v in document["attributes"].items()},
                    callback_destination=document.get("callback_destination"),
                )
            )
        return tuple(sorted(found, key=QueueEntry.order_key))

    async def set_last_offered(self, queue_id: str, agent_id: str) -> None:
        await self.client.hset(self._key("last_offered"), queue_id, agent_id)

    async def last_offered(self, queue_id: str) -> str | None:
        agent = await self.client.hget(self._key("last_offered"), queue_id)
        return None if agent is None else _text(agent)

    async def remember_agent(self, customer: str, agent_id: str) -> None:
        await self.client.hset(self._key("customers"), customer, agent_id)

    async def agent_for_customer(self, customer: str) -> str | None:
        agent = await self.client.hget(self._key("customers"), customer)
        return None if agent is None else _text(agent)
