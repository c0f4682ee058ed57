"""The skill index yields eligible agents longest idle first, reading only agents with the skill."""

from __future__ import annotations

from collections.abc import Mapping

from acd.index import SkillIndex
from acd.model import Requirement, SkillRequirement


def _req(*alternatives: tuple[tuple[str, int], ...]) -> Requirement:
    return Requirement(
        tuple(
            tuple(SkillRequirement(skill=s, min_proficiency=m) for s, m in alternative)
            for alternative in alternatives
        )
    )


class CountingSkills:
    def __init__(self, skills: dict[str, dict[str, int]]) -> None:
        self.skills = skills
        self.reads = 0

    def __call__(self, agent_id: str) -> Mapping[str, int]:
        self.reads += 1
        return self.skills[agent_id]


def test_candidates_come_longest_idle_first_across_levels_and_alternatives() -> None:
    skills = {
        "a": {"x": 2},
        "b": {"x": 5},
        "c": {"y": 3},
        "d": {"x": 4, "y": 1},
        "e": {"x": 1},
    }
    index = SkillIndex(skills.__getitem__)
    for seq, agent_id in enumerate(["d", "a", "e", "c", "b"]):
        index.add(agent_id, seq)
    assert list(index.candidates(_req((("x", 2),)))) == ["d", "a", "b"]
    assert list(index.candidates(_req((("x", 2),), (("y", 1),)))) == ["d", "a", "c", "b"]
    assert list(index.candidates(_req((("x", 4), ("y", 1))))) == ["d"]
    assert list(index.candidates(_req(()))) == ["d", "a", "e", "c", "b"]
    index.remove("a")
    index.add("a", 10)  # back after a call: now the most recently idle
    assert list(index.candidates(_req((("x", 2),)))) == ["d", "b", "a"]


def test_a_decision_reads_only_agents_with_the_rarest_required_skill() -> None:
    # 10,000 agents over 50 skills; only 20 have the rare skill.
    skills: dict[str, dict[str, int]] = {}
    for n in range(10_000):
        own = {f"s{n % 49}": 1 + n % 5, "common": 3}
        if n % 500 == 0:
            own["rare"] = 4
        skills[f"a{n}"] = own
    counting = CountingSkills(skills)
    index = SkillIndex(counting)
    for seq, agent_id in enumerate(skills):
        index.add(agent_id, seq)
    counting.reads = 0
    found = list(index.candidates(_req((("common", 1), ("rare", 3)))))
    assert len(found) == 20
    assert counting.reads <= 20
    counting.reads = 0
    first = next(index.candidates(_req((("common", 1), ("s7", 1)))))
    assert first == "a7" and counting.reads <= 1
