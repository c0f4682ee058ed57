"""The ACD service's reports of calls that are not queue offers: callers transferred straight
to an agent's phone, and the agents' own calls (placed from their softphone, or an internal
call they answered).

A transfer target's phone rings outside the ACD's offers; the agent is reserved for it from the
first ring (:meth:`OwnCallReports.transfer_ringing`: held out of routing here, claimed in the
store for the ring time so other nodes offer them nothing either) until the transfer is
answered or fails. An agent on a call of their own is claimed as for a queue call; one who
placed it while paused or logged out goes on it when unpaused or logged in (see
:meth:`acd.engine.AcdEngine.direct_call_started`).
"""

from __future__ import annotations

import logging

from acd.agent_state import AgentState
from acd.service_base import ServiceParts

logger = logging.getLogger(__name__)


class OwnCallReports(ServiceParts):
    def transfer_ringing(self, call_id: str, agent_id: str, ring_seconds: float) -> None:
        """The caller of ``call_id`` is being transferred to ``agent_id``'s phone, which rings
        for at most ``ring_seconds``: no queue call is offered to them meanwhile."""
        self._report(lambda: self._transfer_ringing(call_id, agent_id, ring_seconds))

    def transfer_failed(self, call_id: str, agent_id: str) -> None:
        """The transfer to ``agent_id``'s phone was not answered: they are free again."""
        self._report(lambda: self._transfer_failed(call_id, agent_id))

    def transfer_answered(
        self, call_id: str, agent_id: str, queue_id: str, ring_seconds: float
    ) -> None:
        """``agent_id`` answered the caller of ``call_id`` (from ``queue_id``) transferred to
        their phone by another agent; they are on the call if they were available here."""
        self._report(lambda: self._transfer_answered(call_id, agent_id, queue_id, ring_seconds))

    def transfer_ended(self, call_id: str, agent_id: str) -> None:
        """The leg of an agent who took ``call_id`` by a transfer ended: wrap-up, as for
        ``agent_hung_up``, if the ACD had put them on that call."""
        self._report(lambda: self._transfer_ended(call_id, agent_id))

    def direct_call_started(self, agent_id: str, call_id: str) -> None:
        """``agent_id`` is on ``call_id``, a call of their own outside the queues (placed from
        their softphone, or an internal call they answered): no queue call is offered to them
        until :meth:`direct_call_ended`, here or on another node (they are claimed)."""
        self._report(lambda: self._direct_call_started(agent_id, call_id))

    def direct_call_ended(self, agent_id: str, call_id: str) -> None:
        self._report(lambda: self._direct_call_ended(agent_id, call_id))

    # The jobs --------------------------------------------------------------------------------

    async def _transfer_ringing(self, call_id: str, agent_id: str, ring_seconds: float) -> None:
        engine = self.engine
        if agent_id not in engine.agents or engine.agent_state(agent_id) is not (
            AgentState.AVAILABLE
        ):
            return
        lease = ring_seconds + self.settings.ring_margin
        if not await self._claims.claim(agent_id, call_id, lease):
            logger.info("call %s: transfer rings %s, who is held elsewhere", call_id, agent_id)
            return
        outputs = engine.transfer_ringing(call_id, agent_id, ring_seconds, self._clock())
        if engine.agents[agent_id].transfer_call != call_id:
            await self._claims.release(agent_id)  # not free here after all
        await self._perform(outputs)

    async def _transfer_failed(self, call_id: str, agent_id: str) -> None:
        engine = self.engine
        if agent_id not in engine.agents or engine.agents[agent_id].transfer_call != call_id:
            return
        await self._claims.release(agent_id)
        await self._perform(engine.transfer_failed(call_id, agent_id, self._clock()))

    async def _transfer_answered(
        self, call_id: str, agent_id: str, queue_id: str, ring_seconds: float
    ) -> None:
        engine = self.engine
        state = engine.agent_state(agent_id)
        reserved = engine.agents[agent_id].transfer_call == call_id
        # The phone rang whatever the ACD thought of the agent: only an available agent is put
        # on the call (a paused or logged-out one who answers anyway stays as they are). The
        # claim of a reserved agent is this call's already: claiming again moves its lease.
        if state is not AgentState.AVAILABLE or not await self._claims.claim(
            agent_id, call_id, self.settings.heartbeat
        ):
            logger.info(
                "call %s: transferred to %s, who is %s here or held elsewhere: not counted as "
                "their call",
                call_id,
                agent_id,
                state.value,
            )
            if reserved:
                await self._perform(engine.transfer_failed(call_id, agent_id, self._clock()))
            return
        await self._perform(
            engine.transfer_answered(call_id, agent_id, queue_id, ring_seconds, self._clock())
        )

    async def _transfer_ended(self, call_id: str, agent_id: str) -> None:
        engine = self.engine
        if engine.agent_call(agent_id) == call_id and engine.agent_state(agent_id) is (
            AgentState.ON_CALL
        ):
            await self._perform(engine.call_ended(agent_id, self._clock()))

    async def _direct_call_started(self, agent_id: str, call_id: str) -> None:
        engine = self.engine
        if agent_id not in engine.agents:
            return
        state = engine.agent_state(agent_id)
        if state in (AgentState.PAUSED, AgentState.LOGGED_OUT):
            # Offered nothing now; the engine puts them on this call if they come back to
            # work before it ends (they are claimed then, as they go on_call).
            await self._perform(engine.direct_call_started(agent_id, call_id, self._clock()))
            return
        # One offered or on a queue call is busy already.
        if state not in (AgentState.AVAILABLE, AgentState.WRAP_UP):
            return
        if not await self._claims.claim(agent_id, call_id, self.settings.heartbeat):
            logger.info("agent %s: on a call of their own but held elsewhere", agent_id)
            return
        await self._perform(engine.direct_call_started(agent_id, call_id, self._clock()))

    async def _direct_call_ended(self, agent_id: str, call_id: str) -> None:
        engine = self.engine
        if agent_id not in engine.agents:
            return
        agent = engine.agents[agent_id]
        if agent.own_call == call_id or (
            agent.call_id == call_id and agent.state is AgentState.ON_CALL
        ):
            await self._perform(engine.direct_call_ended(agent_id, call_id, self._clock()))
