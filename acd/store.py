"""Shared ACD state behind one interface, so several server nodes can route the same agents.

The engine decides on its own view; the store is the arbiter between nodes. Before ringing an
agent, the service around the engine claims them with :meth:`AcdStore.claim_agent`; a claim that
fails (another node got there first) is reported back to the engine as a failed offer. Before
bridging an answer it calls :meth:`AcdStore.connect_call`, so a ring-all race or two nodes can never
connect one caller to two agents. An agent's shared status is changed by compare-and-set on its
version (:meth:`AcdStore.compare_and_set_agent_status`), so no node overwrites a change it has
not seen; a lost node's callbacks are adopted one by one (:meth:`AcdStore.adopt_entry`).

Every method is a coroutine: the in-process store answers at once, a Redis store makes each
method that answers something one round trip (the claim and connect checks as Lua scripts,
atomic on the server), carrying along the writes that answer nothing (see ``flush``). Time is
passed in (``now``, ``lease_until``: seconds on a clock all nodes share), never read here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """An agent reserved for a call until ``lease_until``."""

    agent_id: str
    call_id: str
    lease_until: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStatus:
    """An agent's state as other nodes see it."""

    agent_id: str
    state: str
    reason: str = ""
    call_id: str | None = None
    since: float = 0.0
    wrap_up_until: float | None = None  # in wrap-up: when it ends (shared clock)
    node: str = ""  # the node that saved it
    # Counts the saves of the agent's status (0: never saved): a node changes the agent only
    # over the version it last saw (``compare_and_set_agent_status``).
    version: int = 0
    # The state is the outcome of an agent command (log in or out, pause, unpause, auto-pause)
    # rather than of a call: other nodes apply it to the agent too (see acd.shared_status).
    commanded: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueEntry:
    """A waiting caller as stored: ordered by ``rank`` then ``arrival`` then ``call_id``."""

    call_id: str
    queue_id: str
    priority: int
    rank: float
    arrival: float
    attributes: Mapping[str, str] = field(default_factory=dict)
    callback_destination: str | None = None
    callback_attempts: int = 0
    node: str = ""  # the node the caller's call is on (a callback: the node that will dial)
    # The caller's own needs on top of the queue's skills: skill -> minimum proficiency.
    required_skills: Mapping[str, int] = field(default_factory=dict)

    def order_key(self) -> tuple[float, float, str]:
        return (self.rank, self.arrival, self.call_id)


class AcdStore(Protocol):
    """State shared by every node. Implementations must pass ``tests/acd/test_store_contract``."""

    # Claims: the primitives that keep one agent to one call and one call to one agent.

    async def claim_agent(
        self, agent_id: str, call_id: str, lease_until: float, now: float
    ) -> bool:
        """Reserve ``agent_id`` for ``call_id`` until ``lease_until``.

        Fails if another call holds an unexpired claim on the agent. Claiming again for the same
        call succeeds and moves the lease (so a retried request is harmless).
        """
        ...

    async def renew_claim(
        self, agent_id: str, call_id: str, lease_until: float, now: float
    ) -> bool:
        """Extend a live claim held by ``call_id`` (ringing started); False if it is not held."""
        ...

    async def release_agent(self, agent_id: str, call_id: str) -> bool:
        """Drop the claim if ``call_id`` holds it; False (and no change) otherwise."""
        ...

    async def claim_of(self, agent_id: str, now: float) -> Claim | None:
        """The live claim on ``agent_id``, if any."""
        ...

    async def connect_call(self, call_id: str, agent_id: str) -> bool:
        """Record that ``agent_id`` answered ``call_id``; False if another agent already did."""
        ...

    async def connected_agent(self, call_id: str) -> str | None: ...

    async def finish_call(self, call_id: str) -> None:
        """Forget the connection of a finished call (idempotent)."""
        ...

    # Agents.

    async def save_agent_status(self, status: AgentStatus) -> None:
        """Store ``status`` as it is, version included, over whatever is stored (seeding,
        tools). Nodes change agents with :meth:`compare_and_set_agent_status`."""
        ...

    async def compare_and_set_agent_status(
        self, status: AgentStatus, expected_version: int
    ) -> tuple[bool, AgentStatus | None]:
        """Store ``status`` as version ``expected_version + 1`` if the stored status is still
        at ``expected_version`` (0: none stored), atomically.

        Returns ``(True, saved)``, or ``(False, current)`` with the status another writer
        stored meanwhile (None if there is none), unchanged: two nodes changing one agent from
        the same version never both succeed, so neither overwrites a change it has not seen.
        """
        ...

    async def agent_status(self, agent_id: str) -> AgentStatus | None: ...

    async def agent_statuses(self, agent_ids: Iterable[str]) -> Mapping[str, AgentStatus]:
        """The saved status of each of ``agent_ids`` that has one (one round trip per batch)."""
        ...

    async def add_counter(self, agent_id: str, counter: str, amount: float) -> float:
        """Add ``amount`` to one of the agent's counters atomically; returns the new value."""
        ...

    async def reset_counter(self, agent_id: str, counter: str) -> None: ...

    async def counters(self, agent_id: str) -> Mapping[str, float]: ...

    # Queues.

    async def put_entry(self, entry: QueueEntry) -> None:
        """Add or replace a waiting caller (a priority change replaces the entry)."""
        ...

    async def remove_entry(self, queue_id: str, call_id: str) -> bool: ...

    async def entries(self, queue_id: str) -> tuple[QueueEntry, ...]:
        """The queue's callers in serving order."""
        ...

    async def set_last_offered(self, queue_id: str, agent_id: str) -> None:
        """Round-robin memory, shared so every node continues the same rotation."""
        ...

    async def last_offered(self, queue_id: str) -> str | None: ...

    async def remember_agent(self, customer: str, agent_id: str) -> None:
        """The agent who last served ``customer`` (for sticky routing)."""
        ...

    async def agent_for_customer(self, customer: str) -> str | None: ...

    # Nodes: who is alive, so that the survivors take over a lost node's callbacks.

    async def mark_node_alive(self, node_id: str, lease_until: float) -> None:
        """``node_id`` is running until at least ``lease_until`` (renewed every heartbeat)."""
        ...

    async def node_leases(self) -> Mapping[str, float]:
        """Every node that marked itself alive, with its lease (lapsed ones included)."""
        ...

    async def forget_node(self, node_id: str, lease_until: float) -> None:
        """Drop ``node_id``'s lease if it is still ``lease_until`` (it did not come back)."""
        ...

    async def adopt_entry(
        self, queue_id: str, call_id: str, from_node: str, to_node: str
    ) -> QueueEntry | None:
        """Make ``to_node`` the owner of a waiting entry ``from_node`` owns, atomically: of
        two nodes adopting one entry, one gets it (returned), the other None."""
        ...

    async def flush(self) -> None:
        """Send the writes the store held back (statuses, queue entries, memories: the methods
        that answer nothing). A store may hold them back to send them with its next round trip;
        its own reads always see them, other nodes once flushed. The service flushes at the end
        of every input."""
        ...


class InProcessAcdStore:
    """The single-node store: dictionaries in this process; each method is atomic by itself."""

    def __init__(self) -> None:
        self._claims: dict[str, Claim] = {}
        self._connections: dict[str, str] = {}
        self._statuses: dict[str, AgentStatus] = {}
        self._counters: dict[str, dict[str, float]] = {}
        self._entries: dict[str, dict[str, QueueEntry]] = {}
        self._last_offered: dict[str, str] = {}
        self._customers: dict[str, str] = {}
        self._nodes: dict[str, float] = {}

    async def claim_agent(
        self, agent_id: str, call_id: str, lease_until: float, now: float
    ) -> bool:
        held = self._claims.get(agent_id)
        if held is not None and held.lease_until > now and held.call_id != call_id:
            return False
        self._claims[agent_id] = Claim(agent_id=agent_id, call_id=call_id, lease_until=lease_until)
        return True

    async def renew_claim(
        self, agent_id: str, call_id: str, lease_until: float, now: float
    ) -> bool:
        held = self._claims.get(agent_id)
        if held is None or held.call_id != call_id or held.lease_until <= now:
            return False
        self._claims[agent_id] = Claim(agent_id=agent_id, call_id=call_id, lease_until=lease_until)
        return True

    async def release_agent(self, agent_id: str, call_id: str) -> bool:
        held = self._claims.get(agent_id)
        if held is None or held.call_id != call_id:
            return False
        del self._claims[agent_id]
        return True

    async def claim_of(self, agent_id: str, now: float) -> Claim | None:
        held = self._claims.get(agent_id)
        return held if held is not None and held.lease_until > now else None

    async def connect_call(self, call_id: str, agent_id: str) -> bool:
        current = self._connections.setdefault(call_id, agent_id)
        return current == agent_id

    async def connected_agent(self, call_id: str) -> str | None:
        return self._connections.get(call_id)

    async def finish_call(self, call_id: str) -> None:
        self._connections.pop(call_id, None)

    async def save_agent_status(self, status: AgentStatus) -> None:
        self._statuses[status.agent_id] = status

    async def compare_and_set_agent_status(
        self, status: AgentStatus, expected_version: int
    ) -> tuple[bool, AgentStatus | None]:
        current = self._statuses.get(status.agent_id)
        if (current.version if current is not None else 0) != expected_version:
            return False, current
        saved = dataclasses.replace(status, version=expected_version + 1)
        self._statuses[status.agent_id] = saved
        return True, saved

    async def agent_status(self, agent_id: str) -> AgentStatus | None:
        return self._statuses.get(agent_id)

    async def agent_statuses(self, agent_ids: Iterable[str]) -> Mapping[str, AgentStatus]:
        statuses = self._statuses
        return {a: statuses[a] for a in agent_ids if a in statuses}

    async def add_counter(self, agent_id: str, counter: str, amount: float) -> float:
        values = self._counters.setdefault(agent_id, {})
        values[counter] = values.get(counter, 0.0) + amount
        return values[counter]

    async def reset_counter(self, agent_id: str, counter: str) -> None:
        self._counters.get(agent_id, {}).pop(counter, None)

    async def counters(self, agent_id: str) -> Mapping[str, float]:
        return dict(self._counters.get(agent_id, {}))

    async def put_entry(self, entry: QueueEntry) -> None:
        self._entries.setdefault(entry.queue_id, {})[entry.call_id] = entry

    async def remove_entry(self, queue_id: str, call_id: str) -> bool:
        return self._entries.get(queue_id, {}).pop(call_id, None) is not None

    async def entries(self, queue_id: str) -> tuple[QueueEntry, ...]:
        stored = self._entries.get(queue_id, {}).values()
        return tuple(sorted(stored, key=QueueEntry.order_key))

    async def set_last_offered(self, queue_id: str, agent_id: str) -> None:
        self._last_offered[queue_id] = agent_id

    async def last_offered(self, queue_id: str) -> str | None:
        return self._last_offered.get(queue_id)

    async def remember_agent(self, customer: str, agent_id: str) -> None:
        self._customers[customer] = agent_id

    async def agent_for_customer(self, customer: str) -> str | None:
        return self._customers.get(customer)

    async def mark_node_alive(self, node_id: str, lease_until: float) -> None:
        self._nodes[node_id] = lease_until

    async def node_leases(self) -> Mapping[str, float]:
        return dict(self._nodes)

    async def forget_node(self, node_id: str, lease_until: float) -> None:
        if self._nodes.get(node_id) == lease_until:
            del self._nodes[node_id]

    async def adopt_entry(
        self, queue_id: str, call_id: str, from_node: str, to_node: str
    ) -> QueueEntry | None:
        entries = self._entries.get(queue_id, {})
        entry = entries.get(call_id)
        if entry is None or entry.node != from_node:
            return None
        adopted = dataclasses.replace(entry, node=to_node)
        entries[call_id] = adopted
        return adopted

    async def flush(self) -> None:
        return None  # every write is done at once
