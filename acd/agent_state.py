"""The agent state machine: every legal transition in one table.

Rules the table keeps:

- An agent gets a call only from ``available``; being offered one makes them ``reserved`` (a lease
  with an expiry: the engine arms a timer, so no agent stays reserved or ringing forever).
- An offer ends in exactly one way: answered (``on_call``), withdrawn or failed (back to
  ``available``), or paused/logged out by the agent or by auto-pause.
- A caller transferred to an available agent's phone (a blind transfer by REFER, which rings
  that phone directly) puts them ``on_call`` once they answer, with no offer before.
- A call of the agent's own, outside the queues (placed from their softphone, or another
  agent's internal call they answered), puts an available agent, or one in wrap-up (which it
  ends), ``on_call`` so that no queue call is offered meanwhile (``DIRECT_CALL``); it ends
  without wrap-up. Paused and logged-out agents are offered nothing and stay as they are.
- A call ends into ``wrap_up``, or straight to ``available`` / ``paused`` / ``logged_out`` when
  there is no wrap-up time. A pause or logout asked for during a call waits for its end; the
  engine then uses the ``HANG_UP_AND_*`` transitions.
- A restarted node puts its logged-out agents back as the shared store last saw them: logged in
  (``LOGIN``), paused with their reason, or in wrap-up until it ends (``RESTORE_*``). A call or
  offer is not restored: it was on the node that went away.
- Any pair not in the table is an error (:class:`IllegalTransitionError`), never a silent no-op.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType


class AgentState(enum.StrEnum):
    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    RESERVED = "reserved"  # an offer is pending: the softphone is being called
    RINGING = "ringing"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"


class AgentTrigger(enum.StrEnum):
    LOGIN = "login"
    LOGOUT = "logout"
    PAUSE = "pause"
    UNPAUSE = "unpause"
    RESERVE = "reserve"
    RING = "ring"
    ANSWER = "answer"
    WITHDRAW = "withdraw"  # the offer failed, expired or was cancelled
    TAKE_TRANSFER = "take_transfer"  # answered a caller transferred to their phone
    DIRECT_CALL = "direct_call"  # on a call of their own, outside the queues
    HANG_UP = "hang_up"
    HANG_UP_NO_WRAP_UP = "hang_up_no_wrap_up"
    HANG_UP_AND_PAUSE = "hang_up_and_pause"
    HANG_UP_AND_LOGOUT = "hang_up_and_logout"
    WRAP_UP_DONE = "wrap_up_done"
    RESTORE_PAUSED = "restore_paused"
    RESTORE_WRAP_UP = "restore_wrap_up"


_S = AgentState
_T = AgentTrigger

TRANSITIONS: Mapping[tuple[AgentState, AgentTrigger], AgentState] = MappingProxyType(
    {
        (_S.LOGGED_OUT, _T.LOGIN): _S.AVAILABLE,
        (_S.AVAILABLE, _T.LOGOUT): _S.LOGGED_OUT,
        (_S.AVAILABLE, _T.PAUSE): _S.PAUSED,
        (_S.AVAILABLE, _T.RESERVE): _S.RESERVED,
        (_S.AVAILABLE, _T.TAKE_TRANSFER): _S.ON_CALL,
        (_S.AVAILABLE, _T.DIRECT_CALL): _S.ON_CALL,
        (_S.RESERVED, _T.RING): _S.RINGING,
        (_S.RESERVED, _T.ANSWER): _S.ON_CALL,  # auto-answer softphones skip ringing
        (_S.RESERVED, _T.WITHDRAW): _S.AVAILABLE,
        (_S.RESERVED, _T.PAUSE): _S.PAUSED,
        (_S.RESERVED, _T.LOGOUT): _S.LOGGED_OUT,
        (_S.RINGING, _T.ANSWER): _S.ON_CALL,
        (_S.RINGING, _T.WITHDRAW): _S.AVAILABLE,
        (_S.RINGING, _T.PAUSE): _S.PAUSED,
        (_S.RINGING, _T.LOGOUT): _S.LOGGED_OUT,
        (_S.ON_CALL, _T.HANG_UP): _S.WRAP_UP,
        (_S.ON_CALL, _T.HANG_UP_NO_WRAP_UP): _S.AVAILABLE,
        (_S.ON_CALL, _T.HANG_UP_AND_PAUSE): _S.PAUSED,
        (_S.ON_CALL, _T.HANG_UP_AND_LOGOUT): _S.LOGGED_OUT,
        (_S.WRAP_UP, _T.WRAP_UP_DONE): _S.AVAILABLE,
        (_S.WRAP_UP, _T.PAUSE): _S.PAUSED,
        (_S.WRAP_UP, _T.LOGOUT): _S.LOGGED_OUT,
        (_S.WRAP_UP, _T.DIRECT_CALL): _S.ON_CALL,
        (_S.PAUSED, _T.PAUSE): _S.PAUSED,  # a new reason replaces the old one
        (_S.PAUSED, _T.UNPAUSE): _S.AVAILABLE,
        (_S.PAUSED, _T.LOGOUT): _S.LOGGED_OUT,
        (_S.LOGGED_OUT, _T.RESTORE_PAUSED): _S.PAUSED,
        (_S.LOGGED_OUT, _T.RESTORE_WRAP_UP): _S.WRAP_UP,
    }
)

# States in which the agent counts as staffing their queues (joinempty / leavewhenempty / EWT).
STAFFED_STATES = frozenset({_S.AVAILABLE, _S.RESERVED, _S.RINGING, _S.ON_CALL, _S.WRAP_UP})
OFFER_STATES = frozenset({_S.RESERVED, _S.RINGING})


class IllegalTransitionError(RuntimeError):
    """``trigger`` is not allowed in ``state`` for ``agent_id``; a local misuse of the engine."""

    def __init__(self, agent_id: str, state: AgentState, trigger: AgentTrigger) -> None:
        allowed = sorted(t.value for (s, t) in TRANSITIONS if s is state)
        super().__init__(
            f"agent {agent_id!r}: cannot {trigger.value} while {state.value} "
            f"(allowed: {', '.join(allowed) or 'nothing'})"
        )
        self.agent_id = agent_id
        self.state = state
        self.trigger = trigger


def next_state(agent_id: str, state: AgentState, trigger: AgentTrigger) -> AgentState:
    """The state ``trigger`` leads to from ``state``, or :class:`IllegalTransitionError`."""
    try:
        return TRANSITIONS[(state, trigger)]
    except KeyError:
        raise IllegalTransitionError(agent_id, state, trigger) from None
