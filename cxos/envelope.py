"""The external form of a published event: a versioned JSON envelope.

``{"id", "type", "version", "time", "node", "seq", "call_id", "data"}`` in that order:

- ``id``: the UUIDv7 the bus gave the event (RFC 9562 §5.7), the same in every rendering, so a
  receiver can de-duplicate on it (it is also the webhook ``webhook-id``).
- ``type`` / ``version``: the event class's ``TYPE`` and ``VERSION``.
- ``time``: publication time, RFC 3339 §5.6 ``date-time`` in UTC with milliseconds and ``Z``.
- ``node`` / ``seq``: the publishing node and its per-node sequence number (resume point).
- ``call_id``: the event's ``call_id`` field, or null for events about no call.
- ``data``: the event's dataclass fields in declaration order; tuples become arrays, mappings
  become objects with sorted keys, enums become their values.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import math
import time
from collections.abc import Mapping
from typing import Any

from cxos.bus import DomainEvent, Published

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]

ENVELOPE_KEYS = ("id", "type", "version", "time", "node", "seq", "call_id", "data")


class EnvelopeError(ValueError):
    """An event cannot be rendered as JSON; names the event type and the field."""

    def __init__(self, event_type: str, field: str, reason: str) -> None:
        super().__init__(f"{event_type}: field {field!r}: {reason}")
        self.event_type = event_type
        self.field = field
        self.reason = reason


def format_time(unix_seconds: float) -> str:
    """RFC 3339 §5.6 UTC timestamp with milliseconds, e.g. ``2024-05-01T12:00:00.250Z``.

    Truncates to the millisecond so it agrees with the millisecond in the event's UUIDv7.
    """
    millis = math.floor(unix_seconds * 1000)
    seconds, milli = divmod(millis, 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{milli:03d}Z"


def to_envelope(published: Published, node: str) -> dict[str, JsonValue]:
    """The envelope of ``published`` as a JSON-ready dict (keys in envelope order).

    Its ``data`` is shared with every other rendering of the same event: treat it as read-only.
    """
    event = published.event
    return {
        "id": str(published.id),
        "type": event.TYPE,
        "version": event.VERSION,
        "time": published_time(published),
        "node": node,
        "seq": published.seq,
        "call_id": published.call_id,
        "data": published_data(published),
    }


def to_json(published: Published, node: str) -> bytes:
    """The envelope as compact UTF-8 JSON with a deterministic key order."""
    return to_json_text(published, node).encode()


def to_json_text(published: Published, node: str) -> str:
    """`to_json` as text: rendered once per event and node, whoever asks (storage, streams)."""
    rendering = published.rendering
    cached: tuple[str, str] | None = rendering.get("json")
    if cached is not None and cached[0] == node:
        return cached[1]
    text = _ENCODER.encode(to_envelope(published, node))
    rendering["json"] = (node, text)
    return text


def published_data(published: Published) -> dict[str, JsonValue]:
    """`event_data` of the published event, rendered once (read-only: it is shared)."""
    rendering = published.rendering
    data: dict[str, JsonValue] | None = rendering.get("data")
    if data is None:
        data = rendering["data"] = event_data(published.event)
    return data


def published_time(published: Published) -> str:
    """`format_time` of the publication time, formatted once."""
    rendering = published.rendering
    text: str | None = rendering.get("time")
    if text is None:
        text = rendering["time"] = format_time(published.time)
    return text


# Immutable once built; reusing it saves rebuilding an encoder for every event. No circular
# check: what it encodes is built afresh by `event_data` from frozen events, a tree.
_ENCODER = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, check_circular=False
)


def encode_json(envelope: Mapping[str, JsonValue]) -> bytes:
    """Compact JSON; NaN and infinities are refused (RFC 8259 §6 has no such numbers)."""
    return _ENCODER.encode(envelope).encode()


def event_data(event: DomainEvent) -> dict[str, JsonValue]:
    """The event's fields as JSON values, in declaration order."""
    data: dict[str, JsonValue] = {}
    for name in _field_names(type(event)):
        try:
            data[name] = _json_value(getattr(event, name))
        except _UnsupportedValueError as exc:
            raise EnvelopeError(event.TYPE, name + "".join(exc.path), exc.reason) from None
    return data


@functools.cache
def _field_names(kind: type) -> tuple[str, ...]:
    # An event class's fields never change: `dataclasses.fields` filters and copies them anew
    # at every call, once per event rendered.
    return tuple(field.name for field in dataclasses.fields(kind))


class _UnsupportedValueError(Exception):
    """Raised inside a field; collects the path on the way out so success pays nothing."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []


_SCALARS = (str, int, bool, type(None))


def _json_value(value: Any) -> JsonValue:
    kind = type(value)
    if kind in _SCALARS:
        return value  # type: ignore[no-any-return]
    if kind is float:
        if not math.isfinite(value):
            raise _UnsupportedValueError(f"{value} is not a JSON number")
        return value  # type: ignore[no-any-return]
    if isinstance(value, enum.Enum):
        return _json_value(value.value)
    if isinstance(value, tuple):
        items: list[JsonValue] = []
        for index, item in enumerate(value):
            try:
                items.append(_json_value(item))
            except _UnsupportedValueError as exc:
                exc.path.insert(0, f"[{index}]")
                raise
        return items
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise _UnsupportedValueError(f"mapping key {key!r} is not a string")
        result: dict[str, JsonValue] = {}
        for key in sorted(value):
            try:
                result[key] = _json_value(value[key])
            except _UnsupportedValueError as exc:
                exc.path.insert(0, f".{key}")
                raise
        return result
    # Subclasses of the plain types (enums were handled above) become the plain type.
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _json_value(float(value))
    raise _UnsupportedValueError(f"{kind.__name__} is not a JSON-friendly event field type")
