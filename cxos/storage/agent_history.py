"""Agent state history across a restart: states a killed node left open are closed.

The history of an agent is its ``agent.state_changed`` events (the ``agent_state_history``
view). A node that is killed publishes nothing more, so its agents' last rows say ``available``
or ``on_call`` for ever after, and every KPI computed from the history (occupancy, time
available, logged-in hours) would count a dead server's agents as working. At start-up, before
the ACD runs, the node publishes for each agent whose latest state change it published itself
and which is not ``logged_out`` an ``agent.state_changed`` to ``logged_out`` with reason
``server restart``, dated like the calls it closes (see ``cxos.storage.cdr``): the agent's time
in that state runs until the node was last known alive. An agent whose latest change came from
another node belongs to that node and is left alone. If the ACD restores agents from a shared
store (Redis), it then logs them back in, from ``logged_out``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from acd.events import AgentStateChanged, AgentStateName
from cxos.storage.cdr import SERVER_RESTART
from cxos.storage.database import Connection

#: Every agent id with a state change in the log, as the table ``agents (agent_id)`` of a query
#: that starts with it (a loose index scan of ``events_agent_state``: one probe per agent, however
#: long the history; a last row's ``agent_id`` is NULL).
AGENTS_WITH_STATES = """
WITH RECURSIVE agents (agent_id) AS (
    SELECT min(envelope #>> '{data,agent_id}')
    FROM events
    WHERE type = 'agent.state_changed'
    UNION ALL
    SELECT (SELECT min(e.envelope #>> '{data,agent_id}')
            FROM events AS e
            WHERE e.type = 'agent.state_changed'
              AND e.envelope #>> '{data,agent_id}' > a.agent_id)
    FROM agents AS a
    WHERE a.agent_id IS NOT NULL
)
"""

# Each agent's latest state change, kept when this node published it and it is not a logout.
_OPEN_STATES = (
    AGENTS_WITH_STATES
    + """
SELECT a.agent_id, latest.state, latest.time
FROM agents AS a
CROSS JOIN LATERAL (
    SELECT e.node, e.time, e.envelope #>> '{data,state}' AS state
    FROM events AS e
    WHERE e.type = 'agent.state_changed' AND e.envelope #>> '{data,agent_id}' = a.agent_id
    ORDER BY e.time DESC, e.seq DESC
    LIMIT 1
) AS latest
WHERE a.agent_id IS NOT NULL AND latest.node = $1 AND latest.state <> 'logged_out'
ORDER BY a.agent_id
"""
)

_STATES: frozenset[str] = frozenset(
    ("available", "reserved", "ringing", "on_call", "wrap_up", "paused")
)


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenAgentState:
    """An agent's last recorded state, still open: nobody recorded its end."""

    agent_id: str
    state: AgentStateName
    since: datetime


async def open_agent_states(connection: Connection, node: str) -> list[OpenAgentState]:
    """Agents that ``node`` last saw in a state other than ``logged_out``."""
    rows = await connection.fetch(_OPEN_STATES, node)
    found: list[OpenAgentState] = []
    for row in rows:
        state = str(row["state"])
        if state not in _STATES:
            continue  # a history written by another version: nothing this node can close
        found.append(
            OpenAgentState(
                agent_id=str(row["agent_id"]),
                state=state,  # type: ignore[arg-type]  # checked against _STATES just above
                since=row["time"],
            )
        )
    return found


def restart_logout(open_state: OpenAgentState, last_alive: datetime) -> AgentStateChanged:
    """The state change that closes ``open_state``: the agent was logged out when the node was
    last known alive."""
    seconds = max(0.0, (last_alive - open_state.since).total_seconds())
    return AgentStateChanged(
        agent_id=open_state.agent_id,
        state="logged_out",
        previous_state=open_state.state,
        reason=SERVER_RESTART,
        seconds_in_previous=seconds,
        call_id=None,
    )
