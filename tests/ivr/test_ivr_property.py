"""Property: whatever a valid tree and whatever the caller does, the walk ends in a destination.

Trees are generated at random with forward-only routes for everything a silent caller can
trigger (so the validator accepts them) and arbitrary routes after valid answers (so loops through
menus and collections are exercised); callers press random keys, say random words with random
confidence, or stay silent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.ivr import IvrTree, parse_ivr_documents
from config.source import YamlDocument
from ivr.events import IvrExited
from ivr.walk import Walker

WORDS = ["sales", "support", "billing", "yes", "no", "english", "español", "agent", "help me"]
KEYS = "0123456789*#"
TERMINAL = ["queue", "transfer", "voicemail", "callback", "hangup"]
ASKING = ["menu", "language", "collect_digits", "collect_speech"]
INNER = [
    *ASKING,
    *ASKING,
    "play",
    "condition",
    "set_variable",
    "crm_lookup",
    "goto",
    "voicemail_then",
    "queue",
    "hangup",
]

CONDITIONS = st.sampled_from(
    [
        {"time": {"days": "mon-fri", "from": "09:00", "to": "17:00"}},
        {"time": {"days": ["sat", "sun"], "from": "22:00", "to": "06:00"}},
        {"holiday": "h"},
        {"variable": "department", "equals": "sales"},
        {"crm": "tier", "present": True},
        {"caller_id": "^\\+1"},
        {"not": {"variable": "x", "one_of": ["1", "2"]}},
        {"any": [{"crm": "tier", "equals": "vip"}, {"variable": "language", "equals": "es"}]},
    ]
)


@st.composite
def trees(draw: st.DrawFn) -> IvrTree:
    count = draw(st.integers(min_value=2, max_value=9))
    ids = [f"n{i}" for i in range(count)]
    nodes: dict[str, dict[str, Any]] = {}
    for index, node_id in enumerate(ids):
        later = ids[index + 1 :]
        kind = draw(st.sampled_from(INNER if later else TERMINAL))

        nodes[node_id] = _node(draw, kind, index, later, ids)
    reachable = _reachable(nodes, ids[0])
    document = {
        "holidays": {"h": ["12-25", "2026-11-26"]},
        "trees": {
            "t": {
                "start": ids[0],
                "languages": ["en", "es"],
                "timezone": "Europe/Paris",
                "nodes": {k: v for k, v in nodes.items() if k in reachable},
            }
        },
    }
    parsed = parse_ivr_documents(
        [YamlDocument(path=Path("generated.yaml"), tree=document)],
        queues=frozenset({"q1", "q2"}),
        skills=frozenset({"s1"}),
        prompts_dir=Path("prompts"),
    )
    return parsed["t"]


def _node(
    draw: st.DrawFn, kind: str, index: int, later: list[str], ids: list[str]
) -> dict[str, Any]:
    def forward() -> str:
        return draw(st.sampled_from(later))

    def anywhere() -> str:
        return draw(st.sampled_from(ids))

    retries: dict[str, Any] = {
        "max_failures": draw(st.integers(1, 3)),
        "max_timeouts": draw(st.integers(1, 3)),
    }
    if draw(st.booleans()):
        retries["exit_prompt"] = "Goodbye from here."
    prompt = f"Prompt {index}."
    if kind == "play":
        return {
            "type": "play",
            "prompt": prompt,
            "barge_in": draw(st.booleans()),
            "next": forward(),
        }
    if kind == "menu":
        keys = draw(
            st.lists(
                st.sampled_from(["1", "2", "3", "12", "*", "#"]),
                min_size=1,
                max_size=4,
                unique=True,
            )
        )
        choices: list[dict[str, Any]] = []
        for key in keys:
            choice: dict[str, Any] = {"dtmf": key}
            if draw(st.booleans()):
                choice["phrases"] = [f"{WORDS[len(choices) % len(WORDS)]}"]
            action = draw(st.sampled_from([None, None, "repeat", "back", "top"]))
            if action:
                choice["action"] = action
            else:
                choice["next"] = anywhere()
            if draw(st.booleans()):
                choice["set"] = {"department": "sales"}
            choices.append(choice)
        node = {
            "type": "menu",
            "greet_long": prompt,
            "choices": choices,
            "on_failure": forward(),
            **retries,
        }
        if draw(st.booleans()):
            node["on_timeout"] = forward()
        return node
    if kind == "language":
        return {
            "type": "language",
            "prompt": {"en": prompt, "es": "Opción."},
            "choices": [
                {"dtmf": "1", "phrases": ["english"], "language": "en"},
                {"dtmf": "2", "phrases": ["español"], "language": "es"},
            ],
            "next": forward(),
            **retries,
        }
    if kind == "collect_digits":
        shortest = draw(st.integers(1, 3))
        node = {
            "type": "collect_digits",
            "prompt": prompt,
            "variable": "entry",
            "min_length": shortest,
            "max_length": draw(st.integers(shortest, 5)),
            "terminator": draw(st.sampled_from(["#", "*", None])),
            "next": anywhere(),
            "on_failure": forward(),
            **retries,
        }
        if draw(st.booleans()):
            node["pattern"] = "^[0-5]*$"
        if draw(st.booleans()):
            node["confirm"] = {"prompt": "You typed {entry}."}
        return node
    if kind == "collect_speech":
        node = {
            "type": "collect_speech",
            "prompt": prompt,
            "variable": "said",
            "phrases": draw(st.lists(st.sampled_from(WORDS), max_size=3, unique=True)),
            "next": anywhere(),
            "on_failure": forward(),
            **retries,
        }
        if draw(st.booleans()):
            node["dtmf"] = {"max_length": 3}
        return node
    if kind == "condition":
        branches = [
            {"when": draw(CONDITIONS), "next": forward()} for _ in range(draw(st.integers(1, 2)))
        ]
        return {"type": "condition", "branches": branches, "otherwise": forward()}
    if kind == "set_variable":
        return {
            "type": "set_variable",
            "set": {"x": "{caller_id}", "priority": 3},
            "next": forward(),
        }
    if kind == "crm_lookup":
        node = {"type": "crm_lookup", "fields": ["tier"], "next": forward()}
        if draw(st.booleans()):
            node["on_not_found"] = forward()
        return node
    if kind == "goto":
        return {"type": "goto", "next": forward()}
    if kind == "voicemail_then":
        return {"type": "voicemail", "prompt": prompt, "next": forward()}
    if kind == "queue":
        return {
            "type": "queue",
            "queue": draw(st.sampled_from(["q1", "q2"])),
            "priority": "{priority}",
            "skills": ["s1"],
        }
    if kind == "transfer":
        return {"type": "transfer", "kind": "extension", "target": "2001"}
    if kind == "voicemail":
        return {"type": "voicemail"}
    if kind == "callback":
        return {
            "type": "callback",
            "queue": "q1",
            "prompt": prompt,
            "priority": "{priority}",
            "skills": {"s1": "{level}"},
        }
    return {"type": "hangup", "prompt": prompt}


def _reachable(nodes: dict[str, dict[str, Any]], start: str) -> set[str]:
    seen = {start}
    pending = [start]
    while pending:
        node = nodes[pending.pop()]
        targets = [
            node.get(k) for k in ("next", "on_failure", "on_timeout", "otherwise", "on_not_found")
        ]
        targets += [c.get("next") for c in node.get("choices", [])]
        targets += [b["next"] for b in node.get("branches", [])]
        for target in targets:
            if isinstance(target, str) and target not in seen:
                seen.add(target)
                pending.append(target)
    return seen


ANSWERS = st.one_of(
    st.text(alphabet=KEYS, min_size=1, max_size=6),
    st.sampled_from(WORDS),
    st.builds(lambda w, c: f"{w}@{c:.2f}", st.sampled_from(WORDS), st.floats(0, 1)),
    st.just(""),
    st.just("?"),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tree=trees(),
    answers=st.lists(ANSWERS, max_size=12),
    crm=st.none() | st.just({"tier": "vip"}),
    hour=st.integers(0, 23),
)
def test_every_walk_ends_in_a_destination(
    tree: IvrTree, answers: list[str], crm: dict[str, str] | None, hour: int
) -> None:
    walker = Walker(tree, started_at=datetime(2026, 11, 26, hour, 0, tzinfo=UTC), crm_record=crm)
    walker.start()
    walker.answer_all(answers)
    walker.finish_silently(limit=500)
    assert walker.finished
    exits = [o for o in walker.outputs if isinstance(o, IvrExited)]
    assert len(exits) == 1
    assert exits[0] is walker.outputs[-1]
    assert exits[0].destination in {"queue", "transfer", "voicemail", "callback", "hangup"}
    assert walker.session.destination == (exits[0].destination, exits[0].target)
