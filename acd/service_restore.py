"""Restarting a node: the engine put back as the shared store last saw this node's agents and
callbacks (see :mod:`acd.service`, "Restart"); and a node that is gone for good: its callbacks
taken over by the nodes still running.

Every node marks itself alive in the store at start and every heartbeat, for
``NODE_LEASE_HEARTBEATS`` heartbeats. A node whose lease lapsed is gone (or stalled as long):
at its next heartbeat each surviving node adopts the lost node's callbacks, each one atomically
(:meth:`acd.store.AcdStore.adopt_entry`: of two survivors one gets it), and puts them in its
engine keeping their place, as a restart does: they are routed, and dialled, there. The lost
node's waiting callers are gone with their calls; their entries are removed. A node that comes
back under the same id finds its callbacks with their new owner, and restores none of them.
"""

from __future__ import annotations

import logging

from acd.agent_state import OFFER_STATES, AgentState
from acd.core import Output
from acd.service_base import ServiceParts
from acd.store import QueueEntry

logger = logging.getLogger(__name__)

NODE_LEASE_HEARTBEATS = 3  # a node missing this many heartbeats is taken for gone


class StoreRestore(ServiceParts):
    async def _keep_alive(self) -> None:
        """Renew this node's lease; adopt the callbacks of nodes whose lease lapsed."""
        store, node = self.store, self._claims.node_id
        now = self._shared_clock()
        await store.mark_node_alive(node, now + NODE_LEASE_HEARTBEATS * self.settings.heartbeat)
        for lost, lease_until in (await store.node_leases()).items():
            if lost != node and lease_until <= now:
                await self._adopt_callbacks(lost)
                await store.forget_node(lost, lease_until)

    async def _adopt_callbacks(self, lost: str) -> None:
        engine, store, node = self.engine, self.store, self._claims.node_id
        adopted = dropped = 0
        for queue_id in list(engine.queues):
            for entry in await store.entries(queue_id):
                if entry.node != lost or entry.call_id in engine.calls:
                    continue
                if entry.callback_destination is None:
                    await store.remove_entry(queue_id, entry.call_id)  # died with its node
                    dropped += 1
                    continue
                mine = await store.adopt_entry(queue_id, entry.call_id, lost, node)
                if mine is not None:
                    await self._perform(self._restore_entry(mine))
                    adopted += 1
        logger.warning(
            "node %s is gone: %d of its callback(s) taken over here, %d waiting caller(s) lost",
            lost,
            adopted,
            dropped,
        )

    def _restore_entry(self, entry: QueueEntry) -> list[Output]:
        """A callback from the store, back in its queue keeping its place."""
        return self.engine.restore_callback(
            entry.call_id,
            entry.queue_id,
            entry.callback_destination or "",
            self._clock(),
            waited=max(0.0, self._shared_clock() - entry.arrival),
            priority=entry.priority,
            attributes=entry.attributes,
            attempts=entry.callback_attempts,
            required_skills=entry.required_skills,
        )

    async def _restore(self) -> None:
        engine, store = self.engine, self.store
        node = self._claims.node_id
        await self._keep_alive()
        restored = callbacks = dropped = 0
        statuses = await store.agent_statuses(list(engine.agents))
        for agent_id, status in statuses.items():
            if status.node != node or engine.agent_state(agent_id) is not AgentState.LOGGED_OUT:
                continue  # another node's agent (each node routes the agents logged in there)
            try:
                state = AgentState(status.state)
            except ValueError:
                logger.warning("agent %s: unknown saved state %r", agent_id, status.state)
                continue
            if state is AgentState.LOGGED_OUT:
                continue
            if state in OFFER_STATES or state is AgentState.ON_CALL:
                await self._release_stale_claim(agent_id)
            shared_now = self._shared_clock()
            wrap_up_left = 0.0
            if state is AgentState.WRAP_UP and status.wrap_up_until is not None:
                wrap_up_left = status.wrap_up_until - shared_now
            reason = status.reason if state is AgentState.PAUSED else "restored"
            await self._perform(
                engine.restore_agent(
                    agent_id, state, self._clock(), reason=reason, wrap_up_left=wrap_up_left
                )
            )
            restored += 1
        for queue_id in list(engine.queues):
            for entry in await store.entries(queue_id):
                if entry.node != node or entry.call_id in engine.calls:
                    continue  # another node's caller (or one just adopted from a lost node)
                if entry.callback_destination is None:
                    await store.remove_entry(queue_id, entry.call_id)  # the call died with us
                    dropped += 1
                    continue
                await self._perform(self._restore_entry(entry))
                callbacks += 1
        if restored or callbacks or dropped:
            logger.info(
                "restored %d agent(s) and %d callback(s) from the store; %d caller(s) of the "
                "previous run are gone",
                restored,
                callbacks,
                dropped,
            )

    async def _release_stale_claim(self, agent_id: str) -> None:
        """Drop a claim this node's previous run held on ``agent_id``: its call is gone."""
        claim = await self.store.claim_of(agent_id, self._shared_clock())
        if claim is not None and claim.call_id.startswith(self._claims.holder("")):
            await self.store.release_agent(agent_id, claim.call_id)
