"""JSON Schema (draft 2020-12) for event envelopes, generated from the event dataclasses.

The schema of an event type is derived from its fields' type hints, so it cannot drift from the
code that emits it. Supported hints are the JSON-friendly ones of the event convention: ``str``,
``int``, ``float``, ``bool``, ``None``, ``X | None`` / ``Optional[X]`` and other unions,
``tuple[X, ...]`` and fixed ``tuple[X, Y]``, ``Mapping[str, X]``, ``Literal[...]`` and enums.
Anything else is refused when the schema is generated, naming the field.

A small validator covers exactly the keywords generated here (an unknown keyword is an error,
never silently accepted). ``format`` (``uuid``, ``date-time``) is asserted, not just annotated.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import enum
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cxos.bus import DomainEvent
from cxos.envelope import ENVELOPE_KEYS

DIALECT = "https://json-schema.org/draft/2020-12/schema"

# Dotted lower-case names such as "queue.joined" or "agent.no_answer".
TYPE_NAME_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"

Schema = dict[str, Any]


class EventSchemaError(TypeError):
    """An event class does not follow the event convention; names the class and field."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Violation:
    """One way an instance breaks a schema. ``path`` is dotted: ``data.skills[2]``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '(envelope)'}: {self.message}"


class EnvelopeValidationError(ValueError):
    """An envelope does not match its schema; ``violations`` names every bad field."""

    def __init__(self, violations: list[Violation]) -> None:
        super().__init__("; ".join(str(v) for v in violations))
        self.violations = violations

    @property
    def paths(self) -> list[str]:
        return [v.path for v in self.violations]


# Generation ----------------------------------------------------------------------------------


def data_schema(event_class: type[DomainEvent]) -> Schema:
    """Schema of the envelope's ``data`` object for ``event_class``."""
    _check_class(event_class)
    try:
        hints = typing.get_type_hints(event_class)
    except NameError as exc:
        raise EventSchemaError(
            f"{event_class.__name__}: cannot resolve a type hint: {exc}"
        ) from None
    properties: Schema = {}
    for field in dataclasses.fields(event_class):
        where = f"{event_class.__name__}.{field.name}"
        schema = type_schema(hints[field.name], where)
        if field.default is not dataclasses.MISSING and _is_json_scalar(field.default):
            schema = {**schema, "default": _plain(field.default)}
        properties[field.name] = schema
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def event_schema(event_class: type[DomainEvent]) -> Schema:
    """Schema of a whole envelope carrying ``event_class`` (its TYPE and VERSION fixed)."""
    data = data_schema(event_class)
    call_id = data["properties"].get("call_id")
    if call_id is None:
        call_id_schema: Schema = {"type": "null"}
    elif _without_annotations(call_id) in ({"type": "string"}, {"type": ["string", "null"]}):
        call_id_schema = _without_annotations(call_id)
    else:
        raise EventSchemaError(f"{event_class.__name__}.call_id must be str or str | None")
    schema: Schema = {
        "$schema": DIALECT,
        "title": f"{event_class.TYPE} v{event_class.VERSION}",
    }
    description = _description(event_class)
    if description:
        schema["description"] = description
    properties = _envelope_properties()
    properties["type"] = {"const": event_class.TYPE}
    properties["version"] = {"const": event_class.VERSION}
    properties["call_id"] = call_id_schema
    properties["data"] = data
    schema.update(
        type="object",
        properties=properties,
        required=list(ENVELOPE_KEYS),
        additionalProperties=False,
    )
    return schema


def envelope_schema() -> Schema:
    """Schema every envelope matches, whatever its type."""
    return {
        "$schema": DIALECT,
        "title": "CXOS event envelope",
        "type": "object",
        "properties": _envelope_properties(),
        "required": list(ENVELOPE_KEYS),
        "additionalProperties": False,
    }


def _envelope_properties() -> Schema:
    return {
        "id": {"type": "string", "format": "uuid"},
        "type": {"type": "string", "pattern": TYPE_NAME_PATTERN},
        "version": {"type": "integer", "minimum": 1},
        "time": {"type": "string", "format": "date-time"},
        "node": {"type": "string", "minLength": 1},
        "seq": {"type": "integer", "minimum": 1},
        "call_id": {"type": ["string", "null"]},
        "data": {"type": "object"},
    }


def type_schema(hint: Any, where: str) -> Schema:
    """Schema for one type hint; ``where`` names the field in errors."""
    if hint is str:
        return {"type": "string"}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    if hint is float:
        return {"type": "number"}
    if hint is None or hint is types.NoneType:
        return {"type": "null"}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum_schema([member.value for member in hint], where)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return _union_schema(args, where)
    if origin is typing.Literal:
        return _enum_schema(list(args), where)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": type_schema(args[0], f"{where}[]")}
        if args == ():
            return {"type": "array", "items": False}
        return {
            "type": "array",
            "prefixItems": [type_schema(arg, f"{where}[{i}]") for i, arg in enumerate(args)],
            "items": False,
            "minItems": len(args),
        }
    if origin is collections.abc.Mapping:
        key, value = args
        if key is not str:
            raise EventSchemaError(f"{where}: mapping keys must be str, not {key!r}")
        return {"type": "object", "additionalProperties": type_schema(value, f"{where}{{}}")}
    raise EventSchemaError(
        f"{where}: {hint!r} is not a JSON-friendly event field type "
        "(use str, int, float, bool, None, tuple[...], Mapping[str, ...], Literal or an Enum)"
    )


def _union_schema(args: tuple[Any, ...], where: str) -> Schema:
    members = [type_schema(arg, where) for arg in args]
    plain_types = [m["type"] for m in members if set(m) == {"type"} and isinstance(m["type"], str)]
    if len(plain_types) == len(members):
        return {"type": plain_types}
    return {"anyOf": members}


def _enum_schema(values: list[Any], where: str) -> Schema:
    for value in values:
        if not _is_json_scalar(value):
            raise EventSchemaError(f"{where}: choice {value!r} is not a JSON scalar")
    schema: Schema = {"enum": values}
    kinds = {_json_type(value) for value in values}
    if len(kinds) == 1:
        schema = {"type": kinds.pop(), **schema}
    return schema


def _check_class(event_class: type[DomainEvent]) -> None:
    name = getattr(event_class, "__name__", repr(event_class))
    if not dataclasses.is_dataclass(event_class):
        raise EventSchemaError(f"{name} is not a dataclass")
    if not event_class.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise EventSchemaError(f"{name} must be a frozen dataclass")
    event_type = getattr(event_class, "TYPE", None)
    if not isinstance(event_type, str) or not re.match(TYPE_NAME_PATTERN, event_type):
        raise EventSchemaError(f"{name}.TYPE must be a dotted lower-case name, not {event_type!r}")
    version = getattr(event_class, "VERSION", None)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise EventSchemaError(f"{name}.VERSION must be an integer >= 1, not {version!r}")


def _description(event_class: type[DomainEvent]) -> str:
    doc = event_class.__doc__ or ""
    # dataclass() invents a docstring from the signature when there is none.
    if doc.startswith(f"{event_class.__name__}("):
        return ""
    return " ".join(doc.split())


def _without_annotations(schema: Schema) -> Schema:
    return {k: v for k, v in schema.items() if k not in _ANNOTATIONS}


def _is_json_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool | enum.Enum)


def _plain(value: object) -> object:
    return value.value if isinstance(value, enum.Enum) else value


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


# Validation ----------------------------------------------------------------------------------

_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "title", "description", "default"})

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# RFC 3339 §5.6 date-time; "T" and "Z" may be lower case (§5.6 NOTE).
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def validate(instance: Any, schema: Schema, path: str = "") -> list[Violation]:
    """Every violation of ``schema`` by ``instance`` (a parsed JSON value)."""
    violations: list[Violation] = []
    _validate(instance, schema, path, violations)
    return violations


def validate_envelope(envelope: Any, event_class: type[DomainEvent]) -> None:
    """Raise ``EnvelopeValidationError`` unless ``envelope`` matches ``event_class``'s schema."""
    violations = validate(envelope, event_schema(event_class))
    if violations:
        raise EnvelopeValidationError(violations)


def _validate(value: Any, schema: Schema | bool, path: str, out: list[Violation]) -> None:
    if schema is True:
        return
    if schema is False:
        _add(out, path, "unexpected value (nothing is allowed here)")
        return
    for keyword in schema:
        if keyword not in _KEYWORDS and keyword not in _ANNOTATIONS:
            raise ValueError(f"schema keyword {keyword!r} at {path or '(root)'} is not supported")
    if "type" in schema:
        allowed = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_has_type(value, kind) for kind in allowed):
            expected = " or ".join(allowed)
            _add(out, path, f"expected {expected}, got {_json_type(value)}")
            return
    if "const" in schema and not _json_equal(value, schema["const"]):
        _add(out, path, f"must be {schema['const']!r}, got {value!r}")
    if "enum" in schema and not any(_json_equal(value, c) for c in schema["enum"]):
        _add(out, path, f"must be one of {schema['enum']!r}, got {value!r}")
    if "anyOf" in schema:
        branches = [validate(value, branch, path) for branch in schema["anyOf"]]
        if all(branches):
            reasons = "; ".join(v.message for branch in branches for v in branch)
            _add(out, path, f"matches no allowed form ({reasons})")
    if isinstance(value, str):
        _validate_string(value, schema, path, out)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            _add(out, path, f"must be >= {schema['minimum']}, got {value}")
    elif isinstance(value, list):
        _validate_array(value, schema, path, out)
    elif isinstance(value, Mapping):
        _validate_object(value, schema, path, out)


def _validate_string(value: str, schema: Schema, path: str, out: list[Violation]) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        _add(out, path, f"must have at least {schema['minLength']} characters")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        _add(out, path, f"{value!r} does not match {schema['pattern']}")
    kind = schema.get("format")
    if kind == "uuid" and not _UUID.match(value):
        _add(out, path, f"{value!r} is not a UUID")
    elif kind == "date-time" and not _is_date_time(value):
        _add(out, path, f"{value!r} is not an RFC 3339 date-time")


def _validate_array(value: list[Any], schema: Schema, path: str, out: list[Violation]) -> None:
    if "minItems" in schema and len(value) < schema["minItems"]:
        _add(out, path, f"must have at least {schema['minItems']} items")
    prefix = schema.get("prefixItems", [])
    for i, item in enumerate(value):
        item_schema = prefix[i] if i < len(prefix) else schema.get("items", True)
        _validate(item, item_schema, f"{path}[{i}]", out)


def _validate_object(
    value: Mapping[Any, Any], schema: Schema, path: str, out: list[Violation]
) -> None:
    properties = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            _add(out, _join(path, name), "required field missing")
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            _validate(item, properties[name], _join(path, name), out)
        elif extra is False:
            _add(out, _join(path, str(name)), "unexpected field")
        else:
            _validate(item, extra, _join(path, str(name)), out)


_KEYWORDS = frozenset(
    {
        "type", "const", "enum", "anyOf", "minimum", "minLength", "pattern", "format",
        "items", "prefixItems", "minItems",
        "properties", "required", "additionalProperties",
    }
)  # fmt: skip


def _add(out: list[Violation], path: str, message: str) -> None:
    out.append(Violation(path=path, message=message))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _has_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        # JSON Schema §6.1.1: an integer is any number with a zero fractional part.
        if isinstance(value, float):
            return math.isfinite(value) and value.is_integer()
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return _json_type(value) == kind


def _json_equal(a: Any, b: Any) -> bool:
    # Python says True == 1; JSON says a boolean is never a number.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    return bool(a == b)


def _is_date_time(value: str) -> bool:
    if not _DATE_TIME.match(value):
        return False
    try:
        datetime.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return False  # e.g. month 13 or minute 61
    return True


# Catalog -------------------------------------------------------------------------------------


class EventCatalog:
    """Every known event class by (type, version), with its schema, for validating envelopes."""

    def __init__(self, event_classes: Iterable[type[DomainEvent]]) -> None:
        self._classes: dict[tuple[str, int], type[DomainEvent]] = {}
        self._schemas: dict[tuple[str, int], Schema] = {}
        for event_class in event_classes:
            key = (event_class.TYPE, event_class.VERSION)
            if key in self._classes and self._classes[key] is not event_class:
                raise EventSchemaError(
                    f"{event_class.__name__} and {self._classes[key].__name__} "
                    f"both declare {key[0]} v{key[1]}"
                )
            self._schemas[key] = event_schema(event_class)
            self._classes[key] = event_class
        self._envelope = envelope_schema()

    def __len__(self) -> int:
        return len(self._classes)

    def classes(self) -> list[type[DomainEvent]]:
        """The event classes, ordered by type then version."""
        return [self._classes[key] for key in sorted(self._classes)]

    def schema(self, event_type: str, version: int) -> Schema:
        try:
            return self._schemas[(event_type, version)]
        except KeyError:
            raise LookupError(f"unknown event type {event_type} v{version}") from None

    def validate(self, envelope: Any) -> None:
        """Raise ``EnvelopeValidationError`` unless ``envelope`` is a known, valid event."""
        violations = validate(envelope, self._envelope)
        if not violations:
            key = (envelope["type"], envelope["version"])
            if key not in self._schemas:
                violations = [
                    Violation(path="type", message=f"unknown event type {key[0]} v{key[1]}")
                ]
            else:
                violations = validate(envelope, self._schemas[key])
        if violations:
            raise EnvelopeValidationError(violations)


def event_classes_in(*modules: types.ModuleType) -> list[type[DomainEvent]]:
    """The event classes (dataclasses declaring TYPE and VERSION) defined in ``modules``."""
    found: list[type[DomainEvent]] = []
    for module in modules:
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and value.__module__ == module.__name__
                and dataclasses.is_dataclass(value)
                and hasattr(value, "TYPE")
                and hasattr(value, "VERSION")
            ):
                found.append(typing.cast(type[DomainEvent], value))
    return found


def reference_markdown(catalog: EventCatalog, heading_level: int = 3) -> str:
    """A Markdown reference of every event type: description and a table of ``data`` fields."""
    hashes = "#" * heading_level
    sections: list[str] = []
    for event_class in catalog.classes():
        schema = catalog.schema(event_class.TYPE, event_class.VERSION)
        lines = [f"{hashes} `{event_class.TYPE}` (version {event_class.VERSION})", ""]
        if "description" in schema:
            lines += [schema["description"], ""]
        lines += ["| field | JSON type |", "|---|---|"]
        for name, field_schema in schema["properties"]["data"]["properties"].items():
            lines.append(f"| `{name}` | {describe(field_schema)} |")
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"


def describe(schema: Schema | bool) -> str:
    """A short human description of a generated schema, e.g. ``array of string``."""
    if isinstance(schema, bool):
        return "anything" if schema else "nothing"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{_literal(v)}`" for v in schema["enum"])
    if "anyOf" in schema:
        return " or ".join(describe(branch) for branch in schema["anyOf"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "array":
        if "prefixItems" in schema:
            return "array [" + ", ".join(describe(s) for s in schema["prefixItems"]) + "]"
        return "array of " + describe(schema.get("items", True))
    if kind == "object" and "additionalProperties" in schema:
        return "object of " + describe(schema["additionalProperties"])
    return str(kind)


def _literal(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
