"""The node types of an IVR tree, one pydantic model each, selected by the node's ``type``.

Each node lists what the load-time checks need: the nodes it leads to (and whether the caller
must have answered something first), its prompts, and the queues and skills it names. Timeouts are
in seconds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainValidator,
    TypeAdapter,
    model_validator,
)

from config.ivr.schema import (
    Condition,
    Dtmf,
    Prompt,
    Regex,
    Strict,
    StrMap,
    Template,
    VariableName,
    placeholders,
    scalar_text,
)
from config.source import Location

__all__ = [
    "NODE_TYPES",
    "Branch",
    "CallbackNode",
    "Choice",
    "CollectDigitsNode",
    "CollectSpeechNode",
    "ConditionNode",
    "Confirm",
    "CrmLookupNode",
    "DtmfFallback",
    "GotoNode",
    "HangupNode",
    "IvrNode",
    "LanguageChoice",
    "LanguageNode",
    "Link",
    "MenuNode",
    "PlayNode",
    "QueueNode",
    "SetVariableNode",
    "TransferNode",
    "VoicemailNode",
]

Seconds = Annotated[float, Field(gt=0, le=300)]
Attempts = Annotated[int, Field(ge=1, le=10)]
Threshold = Annotated[float, Field(ge=0, le=1)]
Phrase = Annotated[str, BeforeValidator(scalar_text), Field(min_length=1)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """An edge of the tree: from a node (at ``location`` below it) to ``target``.

    ``after_input`` is true when the edge is only taken once the caller has pressed or said
    something valid; a loop made only of other edges could spin forever with a silent caller.
    """

    location: Location
    target: str
    after_input: bool


class _Node(Strict):
    #: Whether the node waits for the caller (a menu, a collection); loops must pass one.
    WAITS_FOR_CALLER: ClassVar[bool] = False

    def links(self) -> Iterator[Link]:
        next_node = getattr(self, "next", None)
        if isinstance(next_node, str):
            yield Link(location=("next",), target=next_node, after_input=self.WAITS_FOR_CALLER)

    def prompts(self) -> Iterator[tuple[Location, Prompt]]:
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, Prompt):
                yield (name,), value

    def queue_refs(self) -> Iterator[tuple[Location, str]]:
        yield from ()

    def skill_refs(self) -> Iterator[tuple[Location, str]]:
        yield from ()

    def condition_refs(self) -> Iterator[tuple[Location, Condition]]:
        yield from ()

    def language_refs(self) -> Iterator[tuple[Location, str]]:
        yield from ()


class _Retries(_Node):
    """Retry policy of a node that asks the caller something (FreeSWITCH's max-failures /
    max-timeouts): after ``max_failures`` invalid answers go to ``on_failure``; after
    ``max_timeouts`` silences go to ``on_timeout`` (or ``on_failure`` when not given)."""

    WAITS_FOR_CALLER: ClassVar[bool] = True

    invalid_prompt: Prompt | None = None
    timeout_prompt: Prompt | None = None
    #: Played before leaving through ``on_failure`` / ``on_timeout``.
    exit_prompt: Prompt | None = None
    max_failures: Attempts = 3
    max_timeouts: Attempts = 3
    on_failure: str | None = None
    on_timeout: str | None = None

    def links(self) -> Iterator[Link]:
        yield from super().links()
        if self.on_failure is not None:
            yield Link(location=("on_failure",), target=self.on_failure, after_input=False)
        if self.on_timeout is not None:
            yield Link(location=("on_timeout",), target=self.on_timeout, after_input=False)


class PlayNode(_Node):
    """Play prompts, then continue."""

    type: Literal["play"]
    prompt: Prompt
    #: Whether a key press stops the prompt (the key is kept for the next node).
    barge_in: bool = False
    next: str


class Choice(Strict):
    """One option of a menu: a key sequence and/or spoken phrases leading to a node, or one of
    the navigation actions (``repeat`` this menu, ``back`` to the previous menu, ``top`` menu)."""

    dtmf: Dtmf | None = None
    phrases: tuple[Phrase, ...] = ()
    next: str | None = None
    action: Literal["repeat", "back", "top"] | None = None
    assign: StrMap = Field(default_factory=dict, alias="set")

    @model_validator(mode="after")
    def _shape(self) -> Choice:
        if self.dtmf is None and not self.phrases:
            raise ValueError("a choice needs 'dtmf' keys, 'phrases', or both")
        if (self.next is None) == (self.action is None):
            raise ValueError("a choice has exactly one of 'next' or 'action'")
        return self


def _unique_inputs(choices: tuple[Choice, ...] | tuple[LanguageChoice, ...]) -> None:
    # Checked once every choice is valid, so a broken choice is not also reported as missing.
    if not choices:
        raise ValueError("'choices' lists no choice")
    keys: set[str] = set()
    phrases: set[str] = set()
    for choice in choices:
        if choice.dtmf is not None:
            if choice.dtmf in keys:
                raise ValueError(f"key {choice.dtmf!r} is used by two choices")
            keys.add(choice.dtmf)
        for phrase in choice.phrases:
            spoken = " ".join(phrase.lower().split())
            if spoken in phrases:
                raise ValueError(f"phrase {phrase!r} is used by two choices")
            phrases.add(spoken)


class MenuNode(_Retries):
    """Offer choices by key and/or voice: ``greet_long`` the first time, ``greet_short`` when
    asking again after an invalid answer or a silence."""

    type: Literal["menu"]
    greet_long: Prompt
    greet_short: Prompt | None = None
    choices: tuple[Choice, ...]
    on_failure: str
    #: Seconds of silence after the greeting before it counts as a timeout.
    timeout: Seconds = 5.0
    inter_digit_timeout: Seconds = 2.0
    #: Speech results below this confidence count as invalid answers.
    confidence_threshold: Threshold = 0.5

    @model_validator(mode="after")
    def _distinct(self) -> MenuNode:
        _unique_inputs(self.choices)
        return self

    def links(self) -> Iterator[Link]:
        yield from super().links()
        for index, choice in enumerate(self.choices):
            if choice.next is not None:
                yield Link(
                    location=("choices", index, "next"), target=choice.next, after_input=True
                )


class LanguageChoice(Strict):
    dtmf: Dtmf | None = None
    phrases: tuple[Phrase, ...] = ()
    language: str

    @model_validator(mode="after")
    def _shape(self) -> LanguageChoice:
        if self.dtmf is None and not self.phrases:
            raise ValueError("a choice needs 'dtmf' keys, 'phrases', or both")
        return self


class LanguageNode(_Retries):
    """Let the caller pick the language of the prompts that follow; on failure the tree's first
    language is kept and the call continues to ``next`` unless ``on_failure`` says otherwise."""

    type: Literal["language"]
    prompt: Prompt
    choices: tuple[LanguageChoice, ...]
    next: str
    timeout: Seconds = 5.0
    confidence_threshold: Threshold = 0.5

    @model_validator(mode="after")
    def _distinct(self) -> LanguageNode:
        _unique_inputs(self.choices)
        return self

    def links(self) -> Iterator[Link]:
        # ``next`` is also where a caller who never chooses ends up (in the default language).
        yield Link(location=("next",), target=self.next, after_input=False)
        if self.on_failure is not None:
            yield Link(location=("on_failure",), target=self.on_failure, after_input=False)
        if self.on_timeout is not None:
            yield Link(location=("on_timeout",), target=self.on_timeout, after_input=False)

    def language_refs(self) -> Iterator[tuple[Location, str]]:
        for index, choice in enumerate(self.choices):
            yield ("choices", index, "language"), choice.language


class Confirm(Strict):
    """Read back what was entered and ask to confirm; the prompt may use ``{variable}``."""

    prompt: Prompt
    yes: Dtmf = "1"
    no: Dtmf = "2"

    @model_validator(mode="after")
    def _distinct(self) -> Confirm:
        if self.yes == self.no:
            raise ValueError("'yes' and 'no' must be different keys")
        return self


def _terminator(value: object) -> object:
    return None if value in ("", None) else scalar_text(value)


Terminator = Annotated[Literal["#", "*"] | None, BeforeValidator(_terminator)]


class CollectDigitsNode(_Retries):
    """Collect a number (account, PIN, ...) into ``variable``."""

    type: Literal["collect_digits"]
    prompt: Prompt
    variable: VariableName
    min_length: Annotated[int, Field(ge=1, le=64)] = 1
    max_length: Annotated[int, Field(ge=1, le=64)] = 20
    #: Key that ends the entry early (not stored); ``null`` for none.
    terminator: Terminator = "#"
    first_timeout: Seconds = 5.0
    inter_digit_timeout: Seconds = 3.0
    #: The whole entry must match this regular expression.
    pattern: Regex | None = None
    confirm: Confirm | None = None
    next: str
    on_failure: str

    @model_validator(mode="after")
    def _lengths(self) -> CollectDigitsNode:
        if self.min_length > self.max_length:
            raise ValueError("min_length must not be above max_length")
        return self

    def prompts(self) -> Iterator[tuple[Location, Prompt]]:
        yield from super().prompts()
        if self.confirm is not None:
            yield ("confirm", "prompt"), self.confirm.prompt


class DtmfFallback(Strict):
    """Keys the caller may type instead of speaking."""

    min_length: Annotated[int, Field(ge=1, le=64)] = 1
    max_length: Annotated[int, Field(ge=1, le=64)] = 20
    terminator: Terminator = "#"
    inter_digit_timeout: Seconds = 3.0
    pattern: Regex | None = None


class CollectSpeechNode(_Retries):
    """Collect a spoken answer into ``variable``: one of ``phrases`` (the grammar), or any
    utterance when no phrase is given; with ``dtmf`` the caller may type instead."""

    type: Literal["collect_speech"]
    prompt: Prompt
    variable: VariableName
    phrases: tuple[Phrase, ...] = ()
    confidence_threshold: Threshold = 0.5
    timeout: Seconds = 5.0
    #: Longest utterance in seconds.
    max_speech: Seconds = 15.0
    dtmf: DtmfFallback | None = None
    next: str
    on_failure: str


class Branch(Strict):
    when: Condition
    next: str


class ConditionNode(_Node):
    """Go to the first branch whose condition holds, else to ``otherwise``."""

    type: Literal["condition"]
    branches: tuple[Branch, ...]
    otherwise: str
    #: Time zone of ``time`` conditions without their own; the tree's by default.
    timezone: str | None = None

    @model_validator(mode="after")
    def _some_branch(self) -> ConditionNode:
        if not self.branches:
            raise ValueError("'branches' lists no branch")
        return self

    def links(self) -> Iterator[Link]:
        for index, branch in enumerate(self.branches):
            yield Link(location=("branches", index, "next"), target=branch.next, after_input=False)
        yield Link(location=("otherwise",), target=self.otherwise, after_input=False)

    def condition_refs(self) -> Iterator[tuple[Location, Condition]]:
        for index, branch in enumerate(self.branches):
            yield from branch.when.walk(("branches", index, "when"))


class SetVariableNode(_Node):
    """Set call variables (values may use ``{other_variable}``); they travel with the call."""

    type: Literal["set_variable"]
    assign: StrMap = Field(alias="set")
    next: str


class CrmLookupNode(_Node):
    """Look the caller up in the CRM; the record's fields become ``crm.<field>`` variables and
    ``crm.found`` is ``true`` or ``false``."""

    type: Literal["crm_lookup"]
    key: Template = "{caller_id}"
    fields: tuple[VariableName, ...] = ()
    timeout: Seconds = 3.0
    next: str
    #: Where to go when there is no record or no answer in time; ``next`` by default.
    on_not_found: str | None = None

    def links(self) -> Iterator[Link]:
        yield from super().links()
        if self.on_not_found is not None:
            yield Link(location=("on_not_found",), target=self.on_not_found, after_input=False)


def _skill_level(value: Any) -> Any:
    """A proficiency 1..5 (``2`` or ``"2"``), or a template such as ``"{level}"``."""
    if isinstance(value, bool):
        raise ValueError("a proficiency is a whole number 1..5, not true/false")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int):
        if not MIN_LEVEL <= value <= MAX_LEVEL:
            raise ValueError(f"proficiency {value} is outside {MIN_LEVEL}..{MAX_LEVEL}")
        return value
    if isinstance(value, str) and placeholders(value):
        return value
    raise ValueError(
        f"{value!r} is not a proficiency: a whole number {MIN_LEVEL}..{MAX_LEVEL} or a"
        " template such as '{level}'"
    )


def _freeze_levels(value: Mapping[str, int | str]) -> Mapping[str, int | str]:
    return MappingProxyType(dict(value))


MIN_LEVEL, MAX_LEVEL = 1, 5
#: A skill's minimum proficiency in a queue node: 1..5, or a template filled during the call.
SkillLevel = Annotated[int | str, BeforeValidator(_skill_level)]
_SKILL_LIST: TypeAdapter[tuple[str, ...]] = TypeAdapter(tuple[Template, ...])
_SKILL_LEVELS: TypeAdapter[Mapping[str, int | str]] = TypeAdapter(
    Annotated[Mapping[Template, SkillLevel], AfterValidator(_freeze_levels)]
)


def _caller_skills(value: Any) -> tuple[str, ...] | Mapping[str, int | str]:
    # Chosen by the form written, so that a mistake is reported for that form only, at the
    # line of the item or key at fault (a plain union would report both forms' complaints).
    if isinstance(value, list | tuple):
        return _SKILL_LIST.validate_python(value)
    return _SKILL_LEVELS.validate_python(value)


#: A caller's own skills: a list (each at proficiency 1 or better) or ``{skill: level}``.
CallerSkills = Annotated[
    tuple[str, ...] | Mapping[str, int | str],
    PlainValidator(_caller_skills, json_schema_input_type=list[str] | dict[str, int | str]),
]


def _priority(value: Any) -> Any:
    """A whole number (``5`` or ``"5"``), or a template such as ``"{priority}"``."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, str) and not placeholders(value):
        raise ValueError(
            f"{value!r} is not a priority: a whole number or a template such as '{{priority}}'"
        )
    return value


class _Routing(_Node):
    """What the ACD routes a call by, for the nodes that hand it to a queue (now, or as a
    callback). ``priority`` may be a template such as ``"{priority}"``.

    ``skills`` are the caller's own needs, required of the agent on top of the queue's skills:
    a list (``[sales, "{language}"]``: each at proficiency 1 or better) or a mapping of skill to
    minimum proficiency (``{french: 3, "{product}": "{level}"}``). Names and levels may be
    templates filled with the call's variables: a name that comes out empty is left out; a
    level that is not a whole number counts as 1, one outside 1..5 as the nearest of the two
    (both logged). Names written out must be skills some agent has. ``attributes`` are routing
    data (templates) that travel with the call to the agent.
    """

    queue: str
    priority: Annotated[int | Template, BeforeValidator(_priority)] = 0
    skills: CallerSkills = ()
    attributes: StrMap = Field(default_factory=dict)

    def queue_refs(self) -> Iterator[tuple[Location, str]]:
        yield ("queue",), self.queue

    def skill_refs(self) -> Iterator[tuple[Location, str]]:
        named: Iterator[tuple[str | int, str]] = (
            enumerate(self.skills)
            if isinstance(self.skills, tuple)
            else ((skill, skill) for skill in self.skills)
        )
        for where, skill in named:
            if "{" not in skill:  # a skill taken from a variable is only known during the call
                yield ("skills", where), skill

    def skill_levels(self) -> Iterator[tuple[str, int | str]]:
        """Each skill template with its level (1 for the list form)."""
        if isinstance(self.skills, tuple):
            for skill in self.skills:
                yield skill, MIN_LEVEL
        else:
            yield from self.skills.items()


class QueueNode(_Routing):
    """Hand the call to the ACD (see :class:`_Routing` for priority, skills and attributes)."""

    type: Literal["queue"]


class TransferNode(_Node):
    """Transfer to an agent, an internal extension, or an external number through a trunk."""

    type: Literal["transfer"]
    kind: Literal["agent", "extension", "external"]
    target: Template
    trunk: str | None = None

    @model_validator(mode="after")
    def _trunk(self) -> TransferNode:
        if self.trunk is not None and self.kind != "external":
            raise ValueError("'trunk' only applies to external transfers")
        return self


class VoicemailNode(_Node):
    """Record a message after a beep; without ``next`` the call ends after the recording."""

    type: Literal["voicemail"]
    prompt: Prompt | None = None
    mailbox: str = "general"
    beep: bool = True
    max_seconds: Annotated[int, Field(ge=1, le=600)] = 120
    next: str | None = None


class CallbackNode(_Routing):
    """Register a callback in a queue (keeping the caller's place) and end the call. The
    callback is routed like a queued call: by ``priority``, ``skills`` and ``attributes`` (see
    :class:`_Routing`)."""

    type: Literal["callback"]
    number: Template = "{caller_id}"
    prompt: Prompt | None = None


class GotoNode(_Node):
    type: Literal["goto"]
    next: str


class HangupNode(_Node):
    type: Literal["hangup"]
    prompt: Prompt | None = None
    reason: str = "normal"


IvrNode = (
    PlayNode
    | MenuNode
    | LanguageNode
    | CollectDigitsNode
    | CollectSpeechNode
    | ConditionNode
    | SetVariableNode
    | CrmLookupNode
    | QueueNode
    | TransferNode
    | VoicemailNode
    | CallbackNode
    | GotoNode
    | HangupNode
)

NODE_TYPES: Mapping[str, type[IvrNode]] = MappingProxyType(
    {
        "play": PlayNode,
        "menu": MenuNode,
        "language": LanguageNode,
        "collect_digits": CollectDigitsNode,
        "collect_speech": CollectSpeechNode,
        "condition": ConditionNode,
        "set_variable": SetVariableNode,
        "crm_lookup": CrmLookupNode,
        "queue": QueueNode,
        "transfer": TransferNode,
        "voicemail": VoicemailNode,
        "callback": CallbackNode,
        "goto": GotoNode,
        "hangup": HangupNode,
    }
)
