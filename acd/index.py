"""Agents indexed by skill and proficiency, so a routing decision never scans the whole roster.

Each skill keeps one dict per proficiency level, mapping agent id to the sequence number the agent
got when entering the set. Agents only ever enter at the end (sequence numbers grow), so a dict's
insertion order is also its longest-idle order, and merging the levels by sequence number yields
eligible agents longest-idle first without sorting. Longest-idle routing therefore stops at the
first match; strategies that rank by something else read only the eligible agents.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Mapping

from acd.model import MAX_PROFICIENCY, Requirement, SkillRequirement

SkillsOf = Callable[[str], Mapping[str, int]]


class SkillIndex:
    """A set of agents (e.g. the available ones) indexed by skill and level, in entry order."""

    __slots__ = ("_by_skill", "_everyone", "_skills_of")

    def __init__(self, skills_of: SkillsOf) -> None:
        self._skills_of = skills_of
        self._by_skill: dict[str, list[dict[str, int]]] = {}
        self._everyone: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._everyone)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._everyone

    def add(self, agent_id: str, seq: int) -> None:
        """Enter ``agent_id`` with ``seq`` greater than every sequence number given before."""
        if agent_id in self._everyone:
            raise ValueError(f"agent {agent_id!r} is already in the index")
        self._everyone[agent_id] = seq
        for skill, level in self._skills_of(agent_id).items():
            levels = self._by_skill.get(skill)
            if levels is None:
                levels = self._by_skill[skill] = [{} for _ in range(MAX_PROFICIENCY)]
            levels[level - 1][agent_id] = seq

    def remove(self, agent_id: str) -> None:
        del self._everyone[agent_id]
        for skill, level in self._skills_of(agent_id).items():
            del self._by_skill[skill][level - 1][agent_id]

    def seq(self, agent_id: str) -> int:
        return self._everyone[agent_id]

    def count(self, requirement: SkillRequirement) -> int:
        """How many agents have the skill at the minimum level or better (an upper bound)."""
        levels = self._by_skill.get(requirement.skill)
        if levels is None:
            return 0
        return sum(len(d) for d in levels[requirement.min_proficiency - 1 :])

    def candidates(self, requirement: Requirement) -> Iterator[str]:
        """Agents satisfying ``requirement``, in entry order (longest idle first), each once.

        The caller must finish with the iterator before changing the index.
        """
        alternatives = requirement.alternatives
        if len(alternatives) == 1:
            yield from self._alternative(alternatives[0])
            return
        seen: set[str] = set()
        merged = heapq.merge(*(self._alternative_seq(a) for a in alternatives))
        for _seq, agent_id in merged:
            if agent_id not in seen:
                seen.add(agent_id)
                yield agent_id

    def scan(self, requirement: Requirement) -> list[tuple[int, str]]:
        """Every agent satisfying ``requirement`` as (sequence number, agent id), in no order.

        For strategies that rank by their own key and break ties by sequence number: a plain
        pass over the dicts, cheaper than the merged longest-idle walk.
        """
        found: list[tuple[int, str]] = []
        for alternative in requirement.alternatives:
            found += self._alternative_scan(alternative)
        if len(requirement.alternatives) > 1:
            found = list(dict.fromkeys(found))
        return found

    def _alternative_scan(self, alternative: tuple[SkillRequirement, ...]) -> list[tuple[int, str]]:
        if not alternative:
            return [(seq, agent_id) for agent_id, seq in self._everyone.items()]
        driver = min(alternative, key=self.count)
        levels = self._by_skill.get(driver.skill)
        if levels is None:
            return []
        rest = tuple((r.skill, r.min_proficiency) for r in alternative if r is not driver)
        skills_of = self._skills_of
        found: list[tuple[int, str]] = []
        for d in levels[driver.min_proficiency - 1 :]:
            if not rest:
                found += [(seq, agent_id) for agent_id, seq in d.items()]
                continue
            for agent_id, seq in d.items():
                skills = skills_of(agent_id)
                if all(skills.get(skill, 0) >= level for skill, level in rest):
                    found.append((seq, agent_id))
        return found

    def best_proficiency_first(self, requirement: SkillRequirement) -> Iterator[str]:
        """Agents with the skill, highest proficiency first, longest idle first within a level."""
        levels = self._by_skill.get(requirement.skill)
        if levels is None:
            return
        for d in reversed(levels[requirement.min_proficiency - 1 :]):
            yield from d

    def any_candidate(self, requirement: Requirement) -> bool:
        return next(self.candidates(requirement), None) is not None

    def _alternative(self, alternative: tuple[SkillRequirement, ...]) -> Iterator[str]:
        for _seq, agent_id in self._alternative_seq(alternative):
            yield agent_id

    def _alternative_seq(
        self, alternative: tuple[SkillRequirement, ...]
    ) -> Iterator[tuple[int, str]]:
        if not alternative:
            for agent_id, seq in self._everyone.items():
                yield seq, agent_id
            return
        # Drive the walk from the most selective requirement; check the others per agent.
        driver = min(alternative, key=self.count)
        levels = self._by_skill.get(driver.skill)
        if levels is None:
            return
        dicts = [d for d in levels[driver.min_proficiency - 1 :] if d]
        if not dicts:
            return
        rest = tuple(r for r in alternative if r is not driver)
        walk: Iterator[tuple[int, str]]
        if len(dicts) == 1:
            walk = ((seq, agent_id) for agent_id, seq in dicts[0].items())
        else:
            walk = heapq.merge(*(((s, a) for a, s in d.items()) for d in dicts))
        if not rest:
            yield from walk
            return
        skills_of = self._skills_of
        for seq, agent_id in walk:
            skills = skills_of(agent_id)
            if all(skills.get(r.skill, 0) >= r.min_proficiency for r in rest):
                yield seq, agent_id
