"""The skill index yields eligible agents longest idle first, reading only agents with the skill;
a wait class's ranked agents give a strategy's choice without ranking anyone at decision time."""

from __future__ import annotations

import random
from collections.abc import Mapping

from hypothesis import given
from hypothesis import strategies as st

from acd.index import RankedAgents, SkillIndex
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


def _ranked(keys: dict[str, float]) -> tuple[RankedAgents, list[str]]:
    """Agents entered in dict order (so that order is also their idle order)."""
    reads: list[str] = []

    def key(agent_id: str) -> float:
        reads.append(agent_id)
        return keys[agent_id]

    ranked = RankedAgents(key)
    for seq, agent_id in enumerate(keys):
        ranked.add(agent_id, seq)
    return ranked, reads


def test_ranked_agents_come_by_key_then_longest_idle() -> None:
    ranked, _ = _ranked({"a": 2, "b": 1, "c": 2, "d": 0, "e": 1})
    assert ranked.ordered() == ["d", "b", "e", "a", "c"]
    assert ranked.first() == "d"
    assert ranked.first(skip={"d", "b"}) == "e"
    ranked.remove("b")
    ranked.add("b", 10)  # back after a call with the same key: behind e now
    assert ranked.ordered() == ["d", "e", "b", "a", "c"]
    assert ranked.ordered(skip={"a"}) == ["d", "e", "b", "c"]


def test_first_after_continues_past_a_key_and_wraps_around() -> None:
    ranked, _ = _ranked({"a": 0, "b": 1, "c": 2, "d": 3})
    assert ranked.first_after(1) == "c"
    assert ranked.first_after(1, skip={"c"}) == "d"
    assert ranked.first_after(3) == "a"
    assert ranked.first_after(3, skip={"a", "b"}) == "c"
    assert ranked.first_after(0, skip={"a", "b", "c", "d"}) is None


@given(
    st.lists(st.integers(0, 3), min_size=0, max_size=30),
    st.sets(st.integers(0, 40)),
    st.integers(0, 2**32),
)
def test_choice_draws_as_rng_choice_over_the_agents_not_skipped(
    keys: list[int], skipped: set[int], seed: int
) -> None:
    ranked, _ = _ranked({f"a{n}": float(k) for n, k in enumerate(keys)})
    skip = {f"a{n}" for n in skipped}
    remaining = ranked.ordered(skip)
    drawn = ranked.choice(random.Random(seed), skip)
    if not remaining:
        assert drawn is None
    else:
        assert drawn == random.Random(seed).choice(remaining)


def test_a_decision_reads_no_agent_figures() -> None:
    # 10,000 free agents ranked by a counter: the key is read once per agent entering the set,
    # never again by a decision.
    ranked, reads = _ranked({f"a{n}": float(n % 97) for n in range(10_000)})
    reads.clear()
    assert ranked.first() == "a0"
    assert ranked.first_after(50.0) == "a51"
    assert ranked.choice(random.Random(1), skip={"a0"}) is not None
    assert reads == []
