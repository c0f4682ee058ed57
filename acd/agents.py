"""An agent's live state inside the engine: state, current call, counters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from acd.agent_state import AgentState
from acd.model import AgentProfile
from acd.waiting import WaitClass


@dataclass(slots=True, eq=False)
class AgentRuntime:
    profile: AgentProfile
    roster_rank: int  # position in the configured roster: the default fixed order
    state: AgentState = AgentState.LOGGED_OUT
    since: float = 0.0
    reason: str = ""
    call_id: str | None = None  # offered or connected call
    queue_id: str | None = None
    answered_at: float | None = None
    wrap_up_until: float | None = None
    pending_pause: str | None = None  # asked for during a call: applied when it ends
    pending_logout: bool = False
    # Another node holds a claim on the agent until then (this engine's clock): available here,
    # but out of the routing indexes so that no decision picks them only to be refused.
    held_until: float | None = None
    # A caller being transferred to their phone rings it (held until the ring ends, see
    # ``AcdEngine.transfer_ringing``): the call, so that only its outcome releases them.
    transfer_call: str | None = None
    # A call of their own that started while paused or logged out: they go on it, instead of
    # taking queue calls, as soon as they are logged in and unpaused.
    own_call: str | None = None
    failures: int = 0  # consecutive failed offers that count toward auto-pause
    idle_seq: int = 0  # when they last became available, in the engine's sequence
    calls_answered: int = 0
    talk_time: float = 0.0
    classes: tuple[WaitClass, ...] | None = None  # wait classes this agent qualifies for
    # Classes of callers' own skills they qualify for, as of the router's ``generation``.
    own_classes: tuple[WaitClass, ...] = ()
    own_generation: int = -1

    @property
    def agent_id(self) -> str:
        return self.profile.agent_id

    @property
    def free(self) -> bool:
        """Available and not held by another node: a call may be offered to them."""
        return self.state is AgentState.AVAILABLE and self.held_until is None

    @property
    def skills(self) -> Mapping[str, int]:
        return self.profile.skills
