"""Event classes shaped like the real ones, for the envelope and schema tests: each field kind
the external form has to carry (enums, literals, optionals, tuples, mappings, defaults)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar, Literal, Optional


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueJoined:
    """A caller entered a queue."""

    TYPE: ClassVar[str] = "queue.joined"
    VERSION: ClassVar[int] = 1
    call_id: str
    queue_id: str
    priority: int
    position: int


class PauseReason(enum.Enum):
    LUNCH = "lunch"
    TRAINING = "training"


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStateChanged:
    """An agent moved to another state."""

    TYPE: ClassVar[str] = "agent.state_changed"
    VERSION: ClassVar[int] = 2
    agent_id: str
    state: Literal["available", "paused"]
    reason: PauseReason | None = None
    skills: tuple[str, ...] = ()
    attributes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    seconds_in_previous_state: float = 0.0
    softphone_registered: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class IvrInput:
    """The caller answered an IVR prompt."""

    TYPE: ClassVar[str] = "ivr.input"
    VERSION: ClassVar[int] = 3
    call_id: str
    node_id: str
    digits: Optional[str]  # noqa: UP045 - Optional[...] is part of what is supported
    n_best: tuple[tuple[str, float], ...]
    confidence: float | None


EVENT_CLASSES = (QueueJoined, AgentStateChanged, IvrInput)
