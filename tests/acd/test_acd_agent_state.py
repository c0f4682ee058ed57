"""The agent state machine table."""

from __future__ import annotations

import pytest

from acd.agent_state import (
    TRANSITIONS,
    AgentState,
    AgentTrigger,
    IllegalTransitionError,
    next_state,
)


def test_every_state_is_reachable_from_logged_out_and_can_log_out_again() -> None:
    reachable = {AgentState.LOGGED_OUT}
    frontier = [AgentState.LOGGED_OUT]
    while frontier:
        state = frontier.pop()
        for (source, _), target in TRANSITIONS.items():
            if source is state and target not in reachable:
                reachable.add(target)
                frontier.append(target)
    assert reachable == set(AgentState)
    for state in AgentState:
        if state is AgentState.LOGGED_OUT:
            continue
        targets = {t for (s, _), t in TRANSITIONS.items() if s is state}
        assert targets, f"{state} is a dead end"


def test_a_call_only_reaches_an_available_agent() -> None:
    reserve_sources = {s for (s, t) in TRANSITIONS if t is AgentTrigger.RESERVE}
    assert reserve_sources == {AgentState.AVAILABLE}


def test_an_offer_always_has_a_way_out_without_an_answer() -> None:
    for state in (AgentState.RESERVED, AgentState.RINGING):
        assert next_state("a", state, AgentTrigger.WITHDRAW) is AgentState.AVAILABLE


@pytest.mark.parametrize(
    ("state", "trigger"),
    [
        (AgentState.LOGGED_OUT, AgentTrigger.RESERVE),
        (AgentState.ON_CALL, AgentTrigger.RESERVE),
        (AgentState.ON_CALL, AgentTrigger.PAUSE),
        (AgentState.PAUSED, AgentTrigger.RESERVE),
        (AgentState.AVAILABLE, AgentTrigger.ANSWER),
        (AgentState.LOGGED_OUT, AgentTrigger.LOGOUT),
        (AgentState.WRAP_UP, AgentTrigger.RESERVE),
    ],
)
def test_transitions_outside_the_table_raise_naming_agent_and_state(
    state: AgentState, trigger: AgentTrigger
) -> None:
    with pytest.raises(IllegalTransitionError) as info:
        next_state("alice", state, trigger)
    assert "alice" in str(info.value)
    assert state.value in str(info.value)
    assert info.value.trigger is trigger


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        TRANSITIONS[(AgentState.ON_CALL, AgentTrigger.RESERVE)] = AgentState.RESERVED  # type: ignore[index]
