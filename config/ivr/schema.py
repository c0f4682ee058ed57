"""Building blocks of IVR trees shared by the node types: prompts, templates and conditions.

Values an admin writes are validated here once; the interpreter relies on them being well formed
(a regular expression compiles, a time zone exists, a template's braces balance).
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterator, Mapping
from datetime import time
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

__all__ = [
    "DTMF_KEYS",
    "LANGUAGE_CODE",
    "PLACEHOLDER",
    "WEEKDAYS",
    "Condition",
    "Dtmf",
    "Prompt",
    "PromptItem",
    "Regex",
    "StrMap",
    "Strict",
    "Template",
    "TimeWindow",
    "TimeZoneName",
    "VariableName",
    "placeholders",
    "scalar_text",
]


class Strict(BaseModel):
    """Unknown keys are refused so a misspelt option is reported, and models never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# Templates ------------------------------------------------------------------------------------

#: ``{name}`` in a template is replaced by the call variable ``name`` (``crm.tier`` for CRM data).
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\}")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*$")


def scalar_text(value: Any) -> Any:
    """YAML turns ``10`` into an int and ``yes`` into a bool; variables are always text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _check_template(value: str) -> str:
    rest = PLACEHOLDER.sub("", value)
    if "{" in rest or "}" in rest:
        raise ValueError(
            f"template {value!r}: braces must enclose a variable name, like {{caller_id}}"
        )
    return value


def placeholders(template: str) -> tuple[str, ...]:
    """Variable names a template refers to."""
    return tuple(PLACEHOLDER.findall(template))


def _check_variable(value: str) -> str:
    if not _VARIABLE.match(value):
        raise ValueError(
            f"{value!r} is not a variable name (letters, digits and '_', dotted parts allowed)"
        )
    return value


def _freeze(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


Template = Annotated[str, BeforeValidator(scalar_text), AfterValidator(_check_template)]
VariableName = Annotated[str, AfterValidator(_check_variable)]
StrMap = Annotated[Mapping[VariableName, Template], AfterValidator(_freeze)]


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


def _check_zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name such as 'Europe/Paris')"
        ) from None
    return value


Regex = Annotated[str, AfterValidator(_check_regex)]
TimeZoneName = Annotated[str, AfterValidator(_check_zone)]

#: RFC 4733 §3.2 events 0-11: the twelve keys of a telephone keypad.
DTMF_KEYS = frozenset("0123456789*#")


def _check_dtmf(value: str) -> str:
    if not value or any(key not in DTMF_KEYS for key in value):
        raise ValueError(f"{value!r} is not a key sequence (keys 0-9, * and #)")
    return value


Dtmf = Annotated[str, BeforeValidator(scalar_text), AfterValidator(_check_dtmf)]


# Prompts --------------------------------------------------------------------------------------

#: A language of prompts: an ISO 639 code with optional BCP 47 subtags (``en``, ``pt-BR``).
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


class PromptItem(Strict):
    """One thing the caller hears: a WAV file in the prompts folder, or text spoken by TTS."""

    text: Template | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> PromptItem:
        if (self.text is None) == (self.file is None):
            raise ValueError("a prompt is either 'file: name.wav' or 'text: ...'")
        if self.file is not None:
            parts = self.file.replace("\\", "/").split("/")
            if self.file.startswith("/") or ".." in parts or not self.file.strip():
                raise ValueError(
                    f"prompt file {self.file!r} must be a relative path inside the prompts folder"
                )
        return self


def _freeze_prompts(
    value: Mapping[str, tuple[PromptItem, ...]],
) -> Mapping[str, tuple[PromptItem, ...]]:
    return MappingProxyType(dict(value))


_ITEM_KEYS = frozenset({"text", "file"})


def _items(value: Any) -> Any:
    if isinstance(value, str):
        return [{"text": value}]
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [{"text": item} if isinstance(item, str) else item for item in value]
    return value


class Prompt(Strict):
    """What the caller hears at one step, in one language or in each of the tree's languages.

    Written as text (``"Welcome"``), an item (``{file: welcome.wav}``), a list of those, or a
    mapping of language code to any of these (``{en: "Welcome", es: "Bienvenido"}``).
    """

    items: tuple[PromptItem, ...] = ()
    by_language: Annotated[
        Mapping[str, tuple[PromptItem, ...]], AfterValidator(_freeze_prompts)
    ] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _normalize(cls, value: Any) -> Any:
        if isinstance(value, dict) and not (set(value) & _ITEM_KEYS) and value:
            return {"by_language": {str(k): _items(v) for k, v in value.items()}}
        return {"items": _items(value)}

    @model_validator(mode="after")
    def _not_empty(self) -> Prompt:
        if not self.items and not self.by_language:
            raise ValueError("a prompt needs at least one text or file")
        if any(not items for items in self.by_language.values()):
            raise ValueError("every language of a prompt needs at least one text or file")
        return self

    def for_language(self, language: str, default: str) -> tuple[PromptItem, ...]:
        """The items to play for a caller who chose ``language``: else those of ``default``,
        else those of the first language written."""
        if not self.by_language:
            return self.items
        return (
            self.by_language.get(language)
            or self.by_language.get(default)
            or next(iter(self.by_language.values()))
        )

    def all_items(self) -> Iterator[PromptItem]:
        yield from self.items
        for items in self.by_language.values():
            yield from items


# Conditions -----------------------------------------------------------------------------------

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _days(value: Any) -> Any:
    """``mon-fri``, ``[mon, wed-fri]`` or ``sat, sun`` → tuple of weekday numbers (Monday is 0)."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    if not isinstance(value, list):
        return value
    days: list[int] = []
    for part in value:
        if not isinstance(part, str):
            raise ValueError(f"{part!r} is not a day (use mon, tue, wed, thu, fri, sat, sun)")
        first, _, last = part.strip().lower().partition("-")
        for name in (first, last or first):
            if name not in WEEKDAYS:
                raise ValueError(f"{name!r} is not a day (use mon, tue, wed, thu, fri, sat, sun)")
        start, end = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
        span = range(start, end + 1) if start <= end else [*range(start, 7), *range(end + 1)]
        days.extend(day for day in span if day not in days)
    return tuple(sorted(days))


def _clock(value: Any) -> Any:
    if isinstance(value, int):
        raise ValueError('write the time of day in quotes, as "HH:MM"')
    if isinstance(value, str):
        if value == "24:00":
            return time.max
        found = _CLOCK.match(value)
        if not found:
            raise ValueError(f'{value!r} is not a time of day "HH:MM" (00:00 to 24:00)')
        return time(int(found.group(1)), int(found.group(2)))
    return value


Clock = Annotated[time, BeforeValidator(_clock)]


class TimeWindow(Strict):
    """Open on ``days`` from ``from`` until ``to`` in a time zone; ``to`` before ``from`` spans
    midnight (the part after midnight belongs to the listed day's night)."""

    days: Annotated[tuple[int, ...], BeforeValidator(_days)] = (0, 1, 2, 3, 4, 5, 6)
    start: Clock = Field(default=time(0, 0), alias="from")
    end: Clock = Field(default=time.max, alias="to")
    timezone: TimeZoneName | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> TimeWindow:
        if self.start == self.end:
            raise ValueError("'from' and 'to' are the same time: the window would be empty")
        if not self.days:
            raise ValueError("'days' lists no day")
        return self


_SUBJECTS = ("time", "holiday", "variable", "crm", "caller_id", "all", "any", "not")
_TESTS = ("equals", "one_of", "matches", "present")


class Condition(Strict):
    """A test on the call: exactly one subject, and for a value subject exactly one test.

    Subjects: ``time`` (a window of days and hours), ``holiday`` (a calendar name),
    ``variable`` / ``crm`` (a call variable / a field of the CRM record), ``caller_id`` (a
    regular expression the caller's number must match), and the combinations ``all``, ``any``
    and ``not``.
    """

    time: TimeWindow | None = None
    holiday: str | None = None
    variable: VariableName | None = None
    crm: VariableName | None = None
    caller_id: Regex | None = None
    """Regular expression the caller's number must match (``re.search``)."""
    all_: tuple[Condition, ...] | None = Field(default=None, alias="all")
    any_: tuple[Condition, ...] | None = Field(default=None, alias="any")
    not_: Condition | None = Field(default=None, alias="not")
    equals: Annotated[str, BeforeValidator(scalar_text)] | None = None
    one_of: tuple[Annotated[str, BeforeValidator(scalar_text)], ...] | None = None
    matches: Regex | None = None
    present: bool | None = None

    @model_validator(mode="after")
    def _shape(self) -> Condition:
        subjects = [name for name in _SUBJECTS if getattr(self, _field(name)) is not None]
        tests = [name for name in _TESTS if getattr(self, name) is not None]
        if len(subjects) != 1:
            raise ValueError(
                "a condition tests exactly one of: " + ", ".join(_SUBJECTS)
                if not subjects
                else "a condition tests one thing; combine "
                + " and ".join(subjects)
                + " with 'all' or 'any'"
            )
        (subject,) = subjects
        if subject in {"variable", "crm"}:
            if len(tests) != 1:
                raise ValueError(
                    f"'{subject}' needs exactly one of: equals, one_of, matches, present"
                )
        elif tests:
            raise ValueError(f"'{subject}' takes no {tests[0]!r} test")
        return self

    @property
    def subject(self) -> str:
        return next(name for name in _SUBJECTS if getattr(self, _field(name)) is not None)

    def walk(
        self, location: tuple[str | int, ...] = ()
    ) -> Iterator[tuple[tuple[str | int, ...], Condition]]:
        """This condition and every nested one, with their locations below ``location``."""
        yield location, self
        for name in ("all", "any"):
            nested: tuple[Condition, ...] | None = getattr(self, _field(name))
            for index, part in enumerate(nested or ()):
                yield from part.walk((*location, name, index))
        if self.not_ is not None:
            yield from self.not_.walk((*location, "not"))


def _field(name: str) -> str:
    return f"{name}_" if name in {"all", "any", "not"} else name
