"""JSON Schema generated from event dataclasses, and validation of envelopes against it."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cxos.bus import EventBus, Published
from cxos.envelope import to_envelope, to_json
from cxos.eventschema import (
    DIALECT,
    EnvelopeValidationError,
    EventCatalog,
    EventSchemaError,
    data_schema,
    event_classes_in,
    event_schema,
    reference_markdown,
    validate,
    validate_envelope,
)
from tests.events import sample_events
from tests.events.sample_events import (
    EVENT_CLASSES,
    AgentStateChanged,
    IvrInput,
    PauseReason,
    QueueJoined,
)


def envelope_of(event: object, seq: int = 9) -> dict[str, Any]:
    event_id = uuid.UUID(int=(7 << 76) | (2 << 62))
    published = Published(seq=seq, time=1_714_564_800.5, id=event_id, event=event)  # type: ignore[arg-type]
    return json.loads(to_json(published, node="node-a"))  # type: ignore[no-any-return]


def sample_agent_event() -> AgentStateChanged:
    return AgentStateChanged(
        agent_id="a-7",
        state="paused",
        reason=PauseReason.TRAINING,
        skills=("french",),
        attributes={"team": "blue"},
        seconds_in_previous_state=12.5,
    )


def test_data_schema_follows_the_type_hints() -> None:
    assert data_schema(AgentStateChanged) == {
        "type": "object",
        "properties": {
            "agent_id": {"type": "string"},
            "state": {"type": "string", "enum": ["available", "paused"]},
            "reason": {"anyOf": [{"type": "string", "enum": ["lunch", "training"]},
                                 {"type": "null"}], "default": None},
            "skills": {"type": "array", "items": {"type": "string"}},
            "attributes": {"type": "object", "additionalProperties": {"type": "string"}},
            "seconds_in_previous_state": {"type": "number", "default": 0.0},
            "softphone_registered": {"type": "boolean", "default": True},
        },
        "required": [
            "agent_id", "state", "reason", "skills", "attributes",
            "seconds_in_previous_state", "softphone_registered",
        ],
        "additionalProperties": False,
    }  # fmt: skip


def test_fixed_tuples_and_optionals() -> None:
    properties = data_schema(IvrInput)["properties"]
    assert properties["digits"] == {"type": ["string", "null"]}
    assert properties["confidence"] == {"type": ["number", "null"]}
    assert properties["n_best"] == {
        "type": "array",
        "items": {
            "type": "array",
            "prefixItems": [{"type": "string"}, {"type": "number"}],
            "items": False,
            "minItems": 2,
        },
    }


def test_event_schema_fixes_type_version_and_call_id() -> None:
    schema = event_schema(QueueJoined)
    assert schema["$schema"] == DIALECT
    assert schema["description"] == "A caller entered a queue."
    assert schema["properties"]["type"] == {"const": "queue.joined"}
    assert schema["properties"]["version"] == {"const": 1}
    assert schema["properties"]["call_id"] == {"type": "string"}
    assert event_schema(AgentStateChanged)["properties"]["call_id"] == {"type": "null"}
    assert schema["required"] == [
        "id", "type", "version", "time", "node", "seq", "call_id", "data",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "event",
    [
        QueueJoined(call_id="c-1", queue_id="sales", priority=3, position=1),
        sample_agent_event(),
        AgentStateChanged(agent_id="a-1", state="available"),
        IvrInput(
            call_id="c-1", node_id="menu", digits=None, n_best=(("sales", 0.9),), confidence=0.9
        ),
    ],
    ids=lambda e: type(e).TYPE,
)
def test_emitted_envelopes_validate(event: object) -> None:
    envelope = envelope_of(event)
    validate_envelope(envelope, type(event))  # type: ignore[arg-type]
    EventCatalog(EVENT_CLASSES).validate(envelope)


def _set(path: tuple[str | int, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(envelope: dict[str, Any]) -> None:
        target: Any = envelope
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete(*path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(envelope: dict[str, Any]) -> None:
        target: Any = envelope
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


@pytest.mark.parametrize(
    ("mutate", "path", "message"),
    [
        (_set(("data", "agent_id"), 7), "data.agent_id", "expected string, got integer"),
        (
            _set(("data", "seconds_in_previous_state"), "1"),
            "data.seconds_in_previous_state",
            "expected number",
        ),
        (
            _set(("data", "softphone_registered"), 1),
            "data.softphone_registered",
            "expected boolean",
        ),
        (_set(("data", "state"), "lunch"), "data.state", "must be one of"),
        (_set(("data", "reason"), "holiday"), "data.reason", "matches no allowed form"),
        (_set(("data", "skills", 0), 3), "data.skills[0]", "expected string"),
        (_set(("data", "skills"), "french"), "data.skills", "expected array"),
        (_set(("data", "attributes", "team"), 1), "data.attributes.team", "expected string"),
        (_set(("data", "surprise"), True), "data.surprise", "unexpected field"),
        (_delete("data", "agent_id"), "data.agent_id", "required field missing"),
        (_set(("data", "agent_id"), None), "data.agent_id", "expected string, got null"),
        (_set(("type",), "agent.other"), "type", "must be"),
        (_set(("version",), 1), "version", "must be"),
        (_set(("version",), True), "version", "must be"),
        (_set(("time",), "2024-05-01 12:00:00"), "time", "RFC 3339"),
        (_set(("time",), "2024-13-01T12:00:00.000Z"), "time", "RFC 3339"),
        (_set(("id",), "not-a-uuid"), "id", "not a UUID"),
        (_set(("seq",), 0), "seq", ">= 1"),
        (_set(("seq",), 1.5), "seq", "expected integer"),
        (_set(("node",), ""), "node", "at least 1"),
        (_set(("call_id",), "c-1"), "call_id", "expected null"),
        (_delete("data"), "data", "required field missing"),
        (_set(("extra",), 1), "extra", "unexpected field"),
    ],
)
def test_each_kind_of_wrong_field_fails_naming_the_field(
    mutate: Callable[[dict[str, Any]], None], path: str, message: str
) -> None:
    envelope = envelope_of(sample_agent_event())
    mutate(envelope)
    with pytest.raises(EnvelopeValidationError) as excinfo:
        validate_envelope(envelope, AgentStateChanged)
    assert excinfo.value.paths == [path]
    assert message in str(excinfo.value)


@pytest.mark.parametrize(
    ("mutate", "path", "message"),
    [
        (_set(("data", "n_best", 0, 1), "high"), "data.n_best[0][1]", "expected number"),
        (_set(("data", "n_best", 0), ["sales"]), "data.n_best[0]", "at least 2 items"),
        (_set(("data", "n_best", 0), ["sales", 0.5, 1]), "data.n_best[0][2]", "unexpected"),
        (_set(("call_id",), None), "call_id", "expected string"),
    ],
)
def test_fixed_tuples_and_call_ids_are_checked(
    mutate: Callable[[dict[str, Any]], None], path: str, message: str
) -> None:
    event = IvrInput(call_id="c", node_id="m", digits="12", n_best=(("a", 0.5),), confidence=None)
    envelope = envelope_of(event)
    validate_envelope(envelope, IvrInput)
    mutate(envelope)
    violations = validate(envelope, event_schema(IvrInput))
    assert [v.path for v in violations] == [path]
    assert message in violations[0].message


def test_json_integers_may_be_written_with_a_zero_fraction() -> None:
    envelope = envelope_of(QueueJoined(call_id="c", queue_id="q", priority=1, position=2))
    envelope["data"]["priority"] = 1.0
    validate_envelope(envelope, QueueJoined)


def test_catalog_rejects_unknown_types_and_duplicate_declarations() -> None:
    catalog = EventCatalog(EVENT_CLASSES)
    envelope = envelope_of(QueueJoined(call_id="c", queue_id="q", priority=1, position=2))
    envelope["version"] = 9
    with pytest.raises(EnvelopeValidationError, match=r"unknown event type queue\.joined v9"):
        catalog.validate(envelope)

    @dataclass(frozen=True, slots=True, kw_only=True)
    class AnotherQueueJoined:
        TYPE: ClassVar[str] = "queue.joined"
        VERSION: ClassVar[int] = 1
        call_id: str

    with pytest.raises(EventSchemaError, match=r"both declare queue\.joined v1"):
        EventCatalog([QueueJoined, AnotherQueueJoined])


def _event_class(annotation: Any, **overrides: Any) -> type:
    namespace: dict[str, Any] = {
        "__annotations__": {"TYPE": ClassVar[str], "VERSION": ClassVar[int], "value": annotation},
        "TYPE": "test.sample",
        "VERSION": 1,
    }
    namespace.update(overrides)
    return dataclass(frozen=True, slots=True, kw_only=True)(type("Sample", (), namespace))


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        (list[str], "list[str] is not a JSON-friendly"),
        (dict[str, str], "dict[str, str] is not a JSON-friendly"),
        (Mapping[int, str], "mapping keys must be str"),
        (object, "is not a JSON-friendly"),
        (tuple, "is not a JSON-friendly"),
    ],
)
def test_unsupported_field_types_are_refused_naming_the_field(
    annotation: Any, message: str
) -> None:
    with pytest.raises(EventSchemaError, match=r"Sample\.value") as excinfo:
        data_schema(_event_class(annotation))
    assert message in str(excinfo.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"TYPE": "Queue Joined"}, "TYPE must be a dotted lower-case name"),
        ({"TYPE": "queue"}, "TYPE must be a dotted lower-case name"),
        ({"VERSION": 0}, "VERSION must be an integer >= 1"),
    ],
)
def test_classes_breaking_the_convention_are_refused(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(EventSchemaError, match=message):
        event_schema(_event_class(str, **overrides))


def test_mutable_dataclasses_are_refused() -> None:
    @dataclass(kw_only=True)
    class Mutable:
        TYPE: ClassVar[str] = "test.mutable"
        VERSION: ClassVar[int] = 1
        call_id: str

    with pytest.raises(EventSchemaError, match="frozen"):
        event_schema(Mutable)


def test_call_id_must_be_a_string() -> None:
    @dataclass(frozen=True, slots=True, kw_only=True)
    class NumberedCall:
        TYPE: ClassVar[str] = "test.numbered"
        VERSION: ClassVar[int] = 1
        call_id: int

    with pytest.raises(EventSchemaError, match="call_id must be str"):
        event_schema(NumberedCall)


def test_the_validator_refuses_keywords_it_does_not_implement() -> None:
    with pytest.raises(ValueError, match="'oneOf'"):
        validate(1, {"oneOf": [{"type": "integer"}]})


def test_event_classes_are_found_in_their_modules() -> None:
    found = event_classes_in(sample_events)
    assert sorted(c.TYPE for c in found) == ["agent.state_changed", "ivr.input", "queue.joined"]


def test_reference_markdown_lists_every_type_and_field() -> None:
    text = reference_markdown(EventCatalog(EVENT_CLASSES))
    assert text.index("### `agent.state_changed` (version 2)") < text.index(
        "### `queue.joined` (version 1)"
    )
    assert "| `skills` | array of string |" in text
    assert "| `reason` | one of `lunch`, `training` or null |" in text
    assert "| `digits` | string or null |" in text
    assert "| `n_best` | array of array [string, number] |" in text
    assert "An agent moved to another state." in text


texts = st.text(max_size=12)
finite = st.floats(allow_nan=False, allow_infinity=False)
agent_events = st.builds(
    AgentStateChanged,
    agent_id=texts,
    state=st.sampled_from(["available", "paused"]),
    reason=st.none() | st.sampled_from(PauseReason),
    skills=st.lists(texts, max_size=4).map(tuple),
    attributes=st.dictionaries(texts, texts, max_size=4),
    seconds_in_previous_state=finite,
    softphone_registered=st.booleans(),
)
ivr_events = st.builds(
    IvrInput,
    call_id=texts,
    node_id=texts,
    digits=st.none() | st.text(alphabet="0123456789*#", max_size=8),
    n_best=st.lists(st.tuples(texts, finite), max_size=3).map(tuple),
    confidence=st.none() | finite,
)


@given(events=st.lists(agent_events | ivr_events, min_size=1, max_size=5))
def test_every_published_event_round_trips_through_json_and_validates(
    events: list[Any],
) -> None:
    bus = EventBus(clock=lambda: 1_714_564_800.0)
    catalog = EventCatalog(EVENT_CLASSES)
    for event in events:
        envelope = to_envelope(bus.publish(event), node="node-a")
        decoded = json.loads(to_json(bus.replay_from(bus.next_seq - 1)[0], node="node-a"))
        assert decoded == envelope
        catalog.validate(copy.deepcopy(decoded))
