"""Routing strategies: which of the eligible available agents gets the caller.

Every strategy reads the candidates in longest-idle order (that is how the index yields them), so
"longest idle" is also every strategy's tie-break: a later candidate wins only when strictly better.
Longest-idle takes the first candidate and reads no further.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

from acd.model import Requirement, Strategy


class AgentFigures(Protocol):
    """What strategies read about an agent."""

    @property
    def calls_answered(self) -> int: ...

    @property
    def talk_time(self) -> float: ...

    @property
    def skills(self) -> Mapping[str, int]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategyContext:
    """Per-decision inputs besides the candidates."""

    figures: Callable[[str], AgentFigures]
    order: Callable[[str], int]  # fixed order for linear and round-robin (queue list, roster)
    last_offered: int | None  # round-robin memory: order of the agent offered last time
    requirement: Requirement  # the queue's own skills, scored by skill-weighted
    rng: random.Random


Scan = list[tuple[int, str]]  # (idle sequence number, agent id), in no particular order


def select(
    strategy: Strategy, ordered: Iterator[str], scan: Callable[[], Scan], ctx: StrategyContext
) -> list[str]:
    """The agents to offer the call to: one, or every candidate for ring-all, or none.

    ``ordered`` yields the candidates longest idle first (read lazily); ``scan`` lists them all
    with their idle sequence number, for strategies that rank by another key.
    """
    if strategy is Strategy.RING_ALL:
        return list(ordered)
    if strategy is Strategy.LONGEST_IDLE:
        first = next(ordered, None)
        return [] if first is None else [first]
    pairs = scan()
    if not pairs:
        return []
    return [_CHOOSERS[strategy](pairs, ctx)]


def _min_by(pairs: Scan, key: Callable[[str], float]) -> str:
    # The lowest key wins; the lower sequence number (idle longer) breaks ties.
    return min(pairs, key=lambda p: (key(p[1]), p[0]))[1]


def _fewest_calls(pairs: Scan, ctx: StrategyContext) -> str:
    figures = ctx.figures
    return _min_by(pairs, lambda a: figures(a).calls_answered)


def _least_talk_time(pairs: Scan, ctx: StrategyContext) -> str:
    figures = ctx.figures
    return _min_by(pairs, lambda a: figures(a).talk_time)


def _linear(pairs: Scan, ctx: StrategyContext) -> str:
    return _min_by(pairs, ctx.order)


def _round_robin(pairs: Scan, ctx: StrategyContext) -> str:
    # The next agent after the one offered last time, wrapping around to the start of the order.
    last = ctx.last_offered
    if last is None:
        return _linear(pairs, ctx)
    order = ctx.order
    wrap = 1 << 62  # agents at or before the last one come after everyone behind it
    return _min_by(pairs, lambda a: (k := order(a)) + (wrap if k <= last else 0))


def _random(pairs: Scan, ctx: StrategyContext) -> str:
    pairs.sort()  # the scan order depends on the index layout; the seeded choice must not
    return ctx.rng.choice(pairs)[1]


def _skill_weighted(pairs: Scan, ctx: StrategyContext) -> str:
    # Score: the agent's proficiency summed over the queue's own skills, best first; skills the
    # agent lacks (they qualified through an escalation alternative) score zero.
    wanted = tuple(r.skill for r in ctx.requirement.alternatives[0])
    figures = ctx.figures

    def score(agent_id: str) -> float:
        skills = figures(agent_id).skills
        if not wanted:
            return -float(sum(skills.values()))
        return -float(sum(skills.get(s, 0) for s in wanted))

    return _min_by(pairs, score)


_CHOOSERS: Mapping[Strategy, Callable[[Scan, StrategyContext], str]] = MappingProxyType(
    {
        Strategy.FEWEST_CALLS: _fewest_calls,
        Strategy.LEAST_TALK_TIME: _least_talk_time,
        Strategy.LINEAR: _linear,
        Strategy.ROUND_ROBIN: _round_robin,
        Strategy.RANDOM: _random,
        Strategy.SKILL_WEIGHTED: _skill_weighted,
    }
)
