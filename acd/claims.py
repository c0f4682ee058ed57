"""This node's claims on agents in the shared store, kept in step with the agents' states.

A claim's holder is ``<node>/<call>``, not the call alone: the store lets a holder claim again
(a retried request is harmless), and two nodes that both see one caller must still not both get
the agent. For the same reason a connection is recorded as ``<node>/<agent>``: the agent who
answered, and the node that bridged them.

The lease follows the agent: the engine's offer lease while reserved, the ring timeout
(plus a margin) while ringing, and ``3 × heartbeat`` while on a call or in wrap-up, renewed every
heartbeat; the claim is released as soon as the agent is free here. A node that dies therefore
blocks its agents for at most a few heartbeats.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from acd.store import AcdStore

logger = logging.getLogger(__name__)

FREE_STATES = frozenset({"available", "paused", "logged_out"})
BUSY_STATES = frozenset({"on_call", "wrap_up"})


class NodeClaims:
    __slots__ = ("_heartbeat", "_held", "_now", "_ring_margin", "node_id", "store")

    def __init__(
        self,
        store: AcdStore,
        node_id: str,
        shared_clock: Callable[[], float],
        *,
        heartbeat: float,
        ring_margin: float,
    ) -> None:
        if not node_id or "/" in node_id:
            raise ValueError(f"node id {node_id!r} must be non-empty and contain no '/'")
        self.store = store
        self.node_id = node_id
        self._now = shared_clock
        self._heartbeat = heartbeat
        self._ring_margin = ring_margin
        self._held: dict[str, str] = {}  # agent -> holder this node claimed them with

    def __bool__(self) -> bool:
        return bool(self._held)

    def holder(self, name: str) -> str:
        """``name`` (a call or an agent id) qualified by this node."""
        return f"{self.node_id}/{name}"

    async def claim(self, agent_id: str, call_id: str, lease_seconds: float) -> bool:
        """Claim ``agent_id`` for ``call_id`` for ``lease_seconds``; False if another holds them."""
        now = self._now()
        holder = self.holder(call_id)
        if not await self.store.claim_agent(agent_id, holder, now + lease_seconds, now):
            return False
        self._held[agent_id] = holder
        return True

    async def release(self, agent_id: str) -> None:
        holder = self._held.pop(agent_id, None)
        if holder is not None:
            await self.store.release_agent(agent_id, holder)

    async def ringing(self, agent_id: str, ring_timeout: float) -> None:
        holder = self._held.get(agent_id)
        if holder is None:
            return
        now = self._now()
        lease = now + ring_timeout + self._ring_margin
        if not await self.store.renew_claim(agent_id, holder, lease, now):
            logger.warning("agent %s: claim %s lapsed before ringing", agent_id, holder)

    async def busy(self, agent_id: str, call_id: str | None = None) -> None:
        """The agent is on a call or in wrap-up: hold them for a few heartbeats. An agent this
        node holds no claim on (one who went on a call of their own as they were unpaused) is
        claimed for ``call_id``."""
        holder = self._held.get(agent_id)
        if holder is None:
            if call_id is None:
                return
            holder = self.holder(call_id)
        now = self._now()
        # claim_agent, not renew_claim: a lease that lapsed while nobody else took the agent
        # (a long stall of this node) is taken back rather than lost.
        if not await self.store.claim_agent(agent_id, holder, now + 3 * self._heartbeat, now):
            logger.error(
                "agent %s: claim %s taken by another holder after it lapsed", agent_id, holder
            )
            return
        self._held[agent_id] = holder

    async def follow(self, agent_id: str, state: str, call_id: str | None = None) -> None:
        """The agent entered ``state`` (on ``call_id``) here: release or extend the claim."""
        if state in FREE_STATES:
            await self.release(agent_id)
        elif state in BUSY_STATES:
            await self.busy(agent_id, call_id)

    async def renew_busy(self, is_busy: Callable[[str], bool]) -> None:
        """The heartbeat: extend the claims of every agent ``is_busy`` says is on a call."""
        for agent_id in list(self._held):
            if is_busy(agent_id):
                await self.busy(agent_id)
