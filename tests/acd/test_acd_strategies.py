"""Each routing strategy picks the agent an admin expects."""

from __future__ import annotations

from collections import Counter

from acd.model import Strategy
from tests.acd.acd_fixtures import Harness, agent, cancels, need, offered_agent, offers, queue


def _harness(strategy: Strategy, **options: object) -> Harness:
    h = Harness(
        [queue("q", need("s"), strategy=strategy, **options)],
        [agent("a", s=1), agent("b", s=3), agent("c", s=5), agent("d", s=5)],
    )
    for agent_id in ("a", "b", "c", "d"):
        h.login(agent_id)
        h.advance(1)
    return h


def test_longest_idle_takes_the_agent_available_longest() -> None:
    h = _harness(Strategy.LONGEST_IDLE)
    assert offered_agent(h.enqueue("c1", "q"), "c1") == "a"
    h.serve("c1", "a")
    # a is available again, but now the most recently idle.
    assert offered_agent(h.enqueue("c2", "q"), "c2") == "b"


def test_ring_all_rings_everyone_and_the_first_answer_wins() -> None:
    h = _harness(Strategy.RING_ALL)
    out = h.enqueue("c1", "q")
    assert sorted(a for _, a in offers(out)) == ["a", "b", "c", "d"]
    out = h.answer("c1", "c")
    assert sorted(cancels(out)) == [
        ("c1", "a", "answered_elsewhere"),
        ("c1", "b", "answered_elsewhere"),
        ("c1", "d", "answered_elsewhere"),
    ]
    assert [h.state(a) for a in "abcd"] == ["available", "available", "on_call", "available"]


def test_round_robin_remembers_where_it_stopped() -> None:
    h = _harness(Strategy.ROUND_ROBIN)
    served = []
    for n in range(5):
        call = f"c{n}"
        chosen = offered_agent(h.enqueue(call, "q"), call)
        served.append(chosen)
        h.serve(call, chosen, talk=1)
    assert served == ["a", "b", "c", "d", "a"]


def _serve_by(h: Harness, call: str, who: str, talk: float = 1.0) -> None:
    assert offered_agent(h.enqueue(call, "q", preferred_agent=who), call) == who
    h.serve(call, who, talk=talk)


def test_fewest_calls_prefers_the_agent_who_answered_least() -> None:
    h = _harness(Strategy.FEWEST_CALLS)
    for n, who in enumerate(["a", "a", "c", "d", "b", "b", "b"]):
        _serve_by(h, f"x{n}", who)
    # Calls answered: a 2, b 3, c 1, d 1. Ties go to the longest idle (c finished first).
    assert offered_agent(h.enqueue("y1", "q"), "y1") == "c"
    assert offered_agent(h.enqueue("y2", "q"), "y2") == "d"
    assert offered_agent(h.enqueue("y3", "q"), "y3") == "a"


def test_least_talk_time_prefers_the_agent_who_talked_least() -> None:
    h = _harness(Strategy.LEAST_TALK_TIME)
    talks = {"a": 300.0, "b": 20.0, "c": 100.0, "d": 50.0}
    for n, (who, talk) in enumerate(talks.items()):
        _serve_by(h, f"t{n}", who, talk)
    assert offered_agent(h.enqueue("y1", "q"), "y1") == "b"
    assert offered_agent(h.enqueue("y2", "q"), "y2") == "d"
    assert offered_agent(h.enqueue("y3", "q"), "y3") == "c"


def test_linear_always_starts_from_the_top_of_the_list() -> None:
    h = _harness(Strategy.LINEAR, linear_order=("c", "a"))
    assert offered_agent(h.enqueue("c1", "q"), "c1") == "c"
    assert offered_agent(h.enqueue("c2", "q"), "c2") == "a"
    # Unlisted agents follow in roster order.
    assert offered_agent(h.enqueue("c3", "q"), "c3") == "b"
    h.serve("c1", "c", talk=1)
    assert offered_agent(h.enqueue("c4", "q"), "c4") == "c"


def test_random_is_reproducible_from_the_seed_and_spreads_calls() -> None:
    def run(seed: int) -> list[str]:
        h = Harness(
            [queue("q", need("s"), strategy=Strategy.RANDOM)],
            [agent(f"a{i}", s=1) for i in range(4)],
            seed=seed,
        )
        h.login(*(f"a{i}" for i in range(4)))
        chosen = []
        for n in range(40):
            call = f"c{n}"
            who = offered_agent(h.enqueue(call, "q"), call)
            chosen.append(who)
            h.serve(call, who, talk=1)
        return chosen

    assert run(7) == run(7)
    assert run(7) != run(8)
    assert set(Counter(run(7))) == {"a0", "a1", "a2", "a3"}


def test_skill_weighted_takes_the_best_proficiency_then_longest_idle() -> None:
    h = _harness(Strategy.SKILL_WEIGHTED)
    # c and d both have proficiency 5; c has been idle longer.
    assert offered_agent(h.enqueue("c1", "q"), "c1") == "c"
    assert offered_agent(h.enqueue("c2", "q"), "c2") == "d"
    assert offered_agent(h.enqueue("c3", "q"), "c3") == "b"


def test_skill_weighted_sums_proficiency_over_several_skills() -> None:
    h = Harness(
        [queue("q", need("x"), need("y"), strategy=Strategy.SKILL_WEIGHTED)],
        [agent("a", x=5, y=1), agent("b", x=3, y=4), agent("c", x=2, y=2)],
    )
    h.login("a", "b", "c")
    assert offered_agent(h.enqueue("c1", "q"), "c1") == "b"  # 7 beats 6 and 4
    assert offered_agent(h.enqueue("c2", "q"), "c2") == "a"
