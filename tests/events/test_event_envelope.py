"""The external JSON envelope of published events."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

import pytest

from cxos.bus import EventBus, Published
from cxos.envelope import (
    EnvelopeError,
    event_data,
    format_time,
    published_data,
    published_time,
    to_envelope,
    to_json,
)
from tests.events.sample_events import AgentStateChanged, PauseReason, QueueJoined

EVENT_ID = uuid.UUID("0190e1c4-5a00-7abc-8def-0123456789ab")


@dataclass(frozen=True, slots=True, kw_only=True)
class NotJsonFriendly:
    TYPE: ClassVar[str] = "test.broken"
    VERSION: ClassVar[int] = 1
    call_id: str
    value: object


def published(event: object, seq: int = 42, time: float = 1_714_564_800.25) -> Published:
    return Published(seq=seq, time=time, id=EVENT_ID, event=event)  # type: ignore[arg-type]


def test_envelope_of_a_call_event() -> None:
    event = QueueJoined(call_id="c-123", queue_id="sales", priority=5, position=2)
    assert to_envelope(published(event), node="node-a") == {
        "id": "0190e1c4-5a00-7abc-8def-0123456789ab",
        "type": "queue.joined",
        "version": 1,
        "time": "2024-05-01T12:00:00.250Z",
        "node": "node-a",
        "seq": 42,
        "call_id": "c-123",
        "data": {"call_id": "c-123", "queue_id": "sales", "priority": 5, "position": 2},
    }


def test_envelope_of_an_event_about_no_call_converts_every_field_kind() -> None:
    event = AgentStateChanged(
        agent_id="a-7",
        state="paused",
        reason=PauseReason.LUNCH,
        skills=("french", "billing"),
        attributes=MappingProxyType({"team": "blue", "site": "Lyon"}),
        seconds_in_previous_state=61.5,
        softphone_registered=False,
    )
    envelope = to_envelope(published(event), node="node-a")
    assert envelope["type"] == "agent.state_changed"
    assert envelope["version"] == 2
    assert envelope["call_id"] is None
    assert envelope["data"] == {
        "agent_id": "a-7",
        "state": "paused",
        "reason": "lunch",
        "skills": ["french", "billing"],
        "attributes": {"site": "Lyon", "team": "blue"},
        "seconds_in_previous_state": 61.5,
        "softphone_registered": False,
    }


def test_json_is_compact_utf8_in_a_fixed_key_order() -> None:
    event = AgentStateChanged(
        agent_id="agent-é",
        state="available",
        attributes={"zone": "b", "area": "a"},
    )
    text = to_json(published(event, seq=7, time=1_714_564_800.0), node="n1")
    assert (
        text
        == (
            '{"id":"0190e1c4-5a00-7abc-8def-0123456789ab","type":"agent.state_changed",'
            '"version":2,"time":"2024-05-01T12:00:00.000Z","node":"n1","seq":7,"call_id":null,'
            '"data":{"agent_id":"agent-é","state":"available","reason":null,"skills":[],'
            '"attributes":{"area":"a","zone":"b"},"seconds_in_previous_state":0.0,'
            '"softphone_registered":true}}'
        ).encode()
    )
    assert list(json.loads(text)) == [
        "id", "type", "version", "time", "node", "seq", "call_id", "data",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("unix_seconds", "expected"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1_714_564_800.9999, "2024-05-01T12:00:00.999Z"),  # truncated, never rounded up
        (1_709_164_800.5, "2024-02-29T00:00:00.500Z"),
    ],
)
def test_time_is_rfc3339_utc_with_milliseconds(unix_seconds: float, expected: str) -> None:
    assert format_time(unix_seconds) == expected


def test_time_and_id_agree_on_the_millisecond_when_published_on_the_bus() -> None:
    bus = EventBus(clock=lambda: 1_714_564_800.1237)
    item = bus.publish(QueueJoined(call_id="c", queue_id="q", priority=0, position=1))
    envelope = to_envelope(item, node="n")
    assert envelope["time"] == "2024-05-01T12:00:00.123Z"
    assert uuid.UUID(str(envelope["id"])).int >> 80 == 1_714_564_800_123


def test_non_finite_numbers_are_refused_naming_the_field() -> None:
    event = AgentStateChanged(
        agent_id="a", state="available", seconds_in_previous_state=float("nan")
    )
    with pytest.raises(EnvelopeError) as excinfo:
        to_json(published(event), node="n")
    assert excinfo.value.field == "seconds_in_previous_state"
    assert excinfo.value.event_type == "agent.state_changed"


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (["a", "list"], "value"),
        ((1, {2}), "value[1]"),
        ({"k": object()}, "value.k"),
        ({1: "x"}, "value"),
    ],
)
def test_values_outside_the_convention_are_refused_naming_the_field(
    value: object, where: str
) -> None:
    with pytest.raises(EnvelopeError) as excinfo:
        to_envelope(published(NotJsonFriendly(call_id="c", value=value)), node="n")
    assert excinfo.value.field == where


def test_an_event_is_rendered_once_for_every_consumer() -> None:
    bus = EventBus(clock=lambda: 1_714_564_800.25)
    event = QueueJoined(call_id="c-123", queue_id="sales", priority=5, position=2)
    stored = bus.publish(event)
    # Storage, the supervisor's projection and each event stream ask for the same event.
    assert to_json(stored, "node-a") == to_json(stored, "node-a")
    assert to_envelope(stored, "node-a")["data"] is published_data(stored)
    assert published_data(stored) == event_data(event)
    assert published_time(stored) == "2024-05-01T12:00:00.250Z"
    # Another node's name is another rendering, not the first one's.
    assert json.loads(to_json(stored, "node-b"))["node"] == "node-b"
    assert json.loads(to_json(stored, "node-a"))["node"] == "node-a"
