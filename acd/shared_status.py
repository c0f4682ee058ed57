"""The agents' statuses in the shared store, changed atomically by every node.

Several nodes may change one agent at once: one pauses them (an API call, a feature code) while
another ends their call or wrap-up. A plain write would let the later one win and lose the
other's change (the pause forgotten, the agent offered calls again). So a node writes an agent's
status only over the version it last saw (:meth:`acd.store.AcdStore.compare_and_set_agent_status`,
a Lua script on Redis); when another node changed the agent meanwhile, this node takes in that
change before its own:

- A command given on another node (log in or out, pause, unpause: the status says
  ``commanded``) is applied by this node's engine too: a pending offer is withdrawn; during a
  call a pause or logout waits for the call's end, and the stored status keeps showing the
  command meanwhile. The outcome is then saved over it.
- A command given here is newer than anything this node has not seen: saved over it.
- Another node's call state (reserved, ringing, on a call, wrap-up) stands against an agent who
  is merely available here: that node holds the agent's claim. A call state of this node's own
  needs the claim, so it is newer than another node's.
- A status this node's previous run saved (a restart) is overwritten.

A node learns of another's change when it next writes the agent's status (at the latest when it
offers them a call), and, for the agents it has paused or logged out (which it does not write),
at its next heartbeat (:meth:`SharedStatuses._catch_up`): an unpause or login given on another
node reaches it within a heartbeat. Nothing is pushed.
Only the agent's state as of the end of an input is written: the states an input passed
through (available for an instant before the next offer) are not worth a round trip each.
"""

from __future__ import annotations

import logging

from acd.agent_state import AgentState, IllegalTransitionError
from acd.core import Output
from acd.service_base import ServiceParts
from acd.store import AgentStatus

logger = logging.getLogger(__name__)

_S = AgentState
COMMAND_STATES = frozenset({_S.PAUSED.value, _S.LOGGED_OUT.value})
CALL_STATES = frozenset({_S.RESERVED.value, _S.RINGING.value, _S.ON_CALL.value, _S.WRAP_UP.value})
_IDLE = frozenset({_S.PAUSED, _S.LOGGED_OUT})
MAX_ATTEMPTS = 8  # each attempt lost to another node takes in its change first


def is_command(state: str, previous_state: str) -> bool:
    """Whether entering ``state`` from ``previous_state`` carries out an agent command."""
    return state in COMMAND_STATES or (
        state == _S.AVAILABLE.value and previous_state in COMMAND_STATES
    )


class SharedStatuses(ServiceParts):
    _status_versions: dict[str, int]  # agent -> the version of their status this node last saw

    async def _share_status(self, status: AgentStatus) -> None:
        """Save ``status``, this node's view of the agent, over the version last seen here."""
        store, agent_id = self.store, status.agent_id
        for _ in range(MAX_ATTEMPTS):
            expected = self._status_versions.get(agent_id, 0)
            saved, current = await store.compare_and_set_agent_status(status, expected)
            self._status_versions[agent_id] = current.version if current is not None else 0
            if saved:
                return
            if current is None:
                continue  # deleted meanwhile: written afresh
            outputs = self._take_in(status, current)
            if outputs is None:
                return  # the other node's status stands
            if outputs:
                # The engine applied the other node's command: its state changes are saved as
                # they are carried out, over the version just seen.
                await self._perform(outputs)
                return
        logger.warning("agent %s: status not saved, changed elsewhere meanwhile", agent_id)

    async def _catch_up(self) -> None:
        """Take in the commands other nodes gave to the agents paused or logged out here."""
        engine, node = self.engine, self._claims.node_id
        idle = [a for a, agent in engine.agents.items() if agent.state in _IDLE]
        if not idle:
            return
        for agent_id, theirs in (await self.store.agent_statuses(idle)).items():
            if theirs.version <= self._status_versions.get(agent_id, 0):
                continue
            self._status_versions[agent_id] = theirs.version
            if theirs.node != node and theirs.commanded and agent_id not in engine.retiring_agents:
                outputs = self._apply_command(theirs)
                if outputs:
                    await self._perform(outputs)

    def _take_in(self, ours: AgentStatus, theirs: AgentStatus) -> list[Output] | None:
        """What to do about ``theirs``, saved by another writer since this node last looked:
        the outputs of applying it here, [] to save ``ours`` over it, None to leave it."""
        if theirs.node == self._claims.node_id:
            return []  # this node's previous run
        if theirs.commanded and not ours.commanded:
            return self._apply_command(theirs)
        merely_available = not ours.commanded and ours.state == _S.AVAILABLE.value
        if merely_available and (theirs.state in CALL_STATES or theirs.state == ours.state):
            return None
        return []

    def _apply_command(self, theirs: AgentStatus) -> list[Output] | None:
        """Apply the command ``theirs`` shows to this node's engine: its outputs; None while it
        waits for the agent's call to end (the stored status keeps showing it); [] when there
        is nothing to apply here (this node's status is then saved over it)."""
        engine, agent_id, now = self.engine, theirs.agent_id, self._clock()
        local = engine.agent_state(agent_id)
        try:
            if theirs.state == _S.PAUSED.value:
                outputs = engine.agent_pause(agent_id, theirs.reason or "paused", now)
                return outputs or None
            if theirs.state == _S.LOGGED_OUT.value:
                if local is _S.LOGGED_OUT:
                    return []
                return engine.agent_logout(agent_id, now, theirs.reason or "logout") or None
            # Logged in or unpaused there.
            if local is _S.PAUSED or (local is _S.ON_CALL and engine.pending_pause(agent_id)):
                return engine.agent_unpause(agent_id, now)
            if local is _S.LOGGED_OUT:
                return engine.agent_login(agent_id, now, theirs.reason or "login")
            return []  # working here already
        except (IllegalTransitionError, KeyError) as exc:
            logger.info("agent %s: command of node %s not applied: %s", agent_id, theirs.node, exc)
            return []
