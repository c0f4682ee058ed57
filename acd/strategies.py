"""Routing strategies: which of the eligible available agents gets the caller.

Each wait class keeps its available agents sorted by its queue's strategy key
(:class:`acd.index.RankedAgents`), updated as agents enter and leave the available state, so a
decision reads the first entry instead of ranking every eligible agent. Ties in every key go to
the agent idle longest: a later candidate wins only when strictly better.

- longest idle, ring all, random: no key, the idle order alone; random draws a position in it;
- fewest calls, least talk time: the agent's counter;
- linear: the queue's fixed order (its ``linear_order``, then the roster order);
- round robin: the same order, starting after the agent offered last time and wrapping around;
- skill-weighted: the agent's proficiency summed over the queue's own skills, highest first.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Mapping
from typing import Protocol

from acd.index import RankedAgents, RankKey
from acd.model import Requirement, Strategy


class AgentFigures(Protocol):
    """What strategies read about an agent."""

    @property
    def calls_answered(self) -> int: ...

    @property
    def talk_time(self) -> float: ...

    @property
    def skills(self) -> Mapping[str, int]: ...


def _idle_only(agent_id: str) -> float:
    return 0.0


def rank_key(
    strategy: Strategy,
    figures: Callable[[str], AgentFigures],
    order: Callable[[str], int],
    requirement: Requirement,
) -> RankKey:
    """The key a queue with ``strategy`` ranks its available agents by (lowest first).

    ``order`` is the queue's fixed order (linear, round robin); ``requirement`` the queue's own
    skills, which skill-weighted scores.
    """
    if strategy is Strategy.FEWEST_CALLS:
        return lambda agent_id: figures(agent_id).calls_answered
    if strategy is Strategy.LEAST_TALK_TIME:
        return lambda agent_id: figures(agent_id).talk_time
    if strategy in (Strategy.LINEAR, Strategy.ROUND_ROBIN):
        return order
    if strategy is Strategy.SKILL_WEIGHTED:
        # Skills the agent lacks (they qualified through an escalation alternative) score zero.
        wanted = tuple(r.skill for r in requirement.alternatives[0])

        def score(agent_id: str) -> float:
            skills = figures(agent_id).skills
            if not wanted:
                return -float(sum(skills.values()))
            return -float(sum(skills.get(s, 0) for s in wanted))

        return score
    return _idle_only


def choose(
    strategy: Strategy,
    ranked: RankedAgents,
    *,
    skip: Collection[str],
    last_offered: int | None,
    rng: random.Random,
) -> list[str]:
    """The agents to offer the call to: one, or every candidate for ring-all, or none.

    ``skip`` holds agents who may not be offered this call now (they failed it moments ago);
    ``last_offered`` is round robin's memory, the order of the agent offered last time.
    """
    chosen: str | None
    if strategy is Strategy.RING_ALL:
        return ranked.ordered(skip)
    if strategy is Strategy.RANDOM:
        chosen = ranked.choice(rng, skip)
    elif strategy is Strategy.ROUND_ROBIN and last_offered is not None:
        chosen = ranked.first_after(last_offered, skip)
    else:
        chosen = ranked.first(skip)
    return [] if chosen is None else [chosen]
