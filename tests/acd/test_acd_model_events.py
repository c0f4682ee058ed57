"""Configuration validation and the event convention."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from acd.engine import AcdEngine
from acd.events import ALL_EVENTS, AgentStateChanged, QueueJoined, QueueLeft
from acd.model import (
    AgentProfile,
    ConfigError,
    EscalationStep,
    QueueConfig,
    Requirement,
    SkillRequirement,
)
from cxos.eventschema import data_schema


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SkillRequirement(skill="s", min_proficiency=6), "outside 1..5"),
        (lambda: AgentProfile(agent_id="a", skills={"s": 0}), "proficiency 0"),
        (lambda: AgentProfile(agent_id="a", max_calls=2), "max_calls=2"),
        (lambda: QueueConfig(queue_id="q", ring_timeout=0), "ring_timeout"),
        (lambda: QueueConfig(queue_id="q", max_length=0), "max_length"),
        (lambda: QueueConfig(queue_id="q", service_level_percent=120), "service_level_percent"),
        (
            lambda: QueueConfig(
                queue_id="q",
                escalation=(EscalationStep(after=60), EscalationStep(after=30)),
            ),
            "increasing",
        ),
        (
            lambda: QueueConfig(
                queue_id="q", escalation=(EscalationStep(after=5, overflow_queues=("q",)),)
            ),
            "itself",
        ),
        (lambda: EscalationStep(after=0), "after=0"),
    ],
)
def test_invalid_configuration_is_refused_with_the_reason(build: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()  # type: ignore[operator]


def test_engine_refuses_duplicates_and_unknown_overflow_queues() -> None:
    import random

    with pytest.raises(ConfigError, match="defined twice"):
        AcdEngine([QueueConfig(queue_id="q")] * 2, [], rng=random.Random(0))
    overflow = QueueConfig(
        queue_id="q", escalation=(EscalationStep(after=5, overflow_queues=("x",)),)
    )
    with pytest.raises(ValueError, match="unknown queue 'x'"):
        AcdEngine([overflow], [], rng=random.Random(0))


def test_agent_skills_cannot_be_changed_behind_the_engine() -> None:
    skills = {"s": 3}
    profile = AgentProfile(agent_id="a", skills=skills)
    skills["s"] = 5
    assert profile.skills["s"] == 3
    with pytest.raises(TypeError):
        profile.skills["s"] = 1  # type: ignore[index]


def test_relaxing_never_goes_below_one_and_alternatives_do_not_repeat() -> None:
    req = Requirement(((SkillRequirement(skill="a", min_proficiency=3),),))
    relaxed = req.relaxed(5)
    assert relaxed.alternatives[0][0].min_proficiency == 1
    wider = req.with_alternatives(req.alternatives)
    assert wider == req
    assert wider.satisfied_by({"a": 3}) and not wider.satisfied_by({"a": 2})


@pytest.mark.parametrize("event_class", ALL_EVENTS, ids=lambda c: c.TYPE)
def test_events_follow_the_convention(event_class: Any) -> None:
    assert event_class.__dataclass_params__.frozen
    fields = dataclasses.fields(event_class)
    assert all(f.kw_only for f in fields)
    assert hasattr(event_class, "__slots__")
    assert event_class.TYPE.count(".") == 1 and event_class.TYPE.islower()
    schema = data_schema(event_class)  # refuses fields that are not JSON-friendly
    # Every event about a caller names the call (agent state changes may have none).
    if event_class is not AgentStateChanged:
        assert schema["properties"]["call_id"]["type"] == "string"


def test_event_types_are_unique() -> None:
    types = [c.TYPE for c in ALL_EVENTS]
    assert len(types) == len(set(types))


def test_events_validate_their_invariants() -> None:
    with pytest.raises(ValueError, match="position"):
        QueueJoined(call_id="c", queue_id="q", priority=0, position=0)
    with pytest.raises(ValueError, match="agent_id"):
        QueueLeft(call_id="c", queue_id="q", reason="answered", wait_seconds=1.0)
    with pytest.raises(ValueError, match="reason"):
        AgentStateChanged(
            agent_id="a",
            state="available",
            previous_state="paused",
            reason="",
            seconds_in_previous=1.0,
        )
