"""Domain events of the ACD: what happened to callers in queues and to agents.

They carry no wall-clock time (the bus stamps it); durations a KPI needs are explicit fields in
seconds (``wait_seconds``, ``ring_seconds``, ``seconds_in_previous``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar, Literal

QueueLeftReason = Literal[
    "answered", "abandoned", "timeout", "callback", "moved", "escalated", "empty"
]
AgentStateName = Literal[
    "logged_out", "available", "reserved", "ringing", "on_call", "wrap_up", "paused"
]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _non_negative(name: str, value: float) -> None:
    _require(value >= 0, f"{name} must be >= 0, got {value}")


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueJoined:
    """A caller entered a queue. ``required_skills`` (skill: minimum proficiency) are the
    caller's own needs, set by the IVR or the CRM, required of the agent on top of the queue's
    skills; empty when the queue's skills suffice."""

    TYPE: ClassVar[str] = "queue.joined"
    VERSION: ClassVar[int] = 2  # 2: required_skills
    call_id: str
    queue_id: str
    priority: int
    position: int
    required_skills: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        _require(self.position >= 1, f"position must be >= 1, got {self.position}")
        for skill, level in self.required_skills.items():
            _require(1 <= level <= 5, f"required skill {skill!r}: level {level} not in 1..5")


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueJoinRejected:
    """A caller could not join a queue: it was full, or no agent could serve it (joinempty)."""

    TYPE: ClassVar[str] = "queue.join_rejected"
    VERSION: ClassVar[int] = 1
    call_id: str
    queue_id: str
    reason: Literal["full", "empty"]


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueLeft:
    """A caller left a queue. ``agent_id`` is set when answered."""

    TYPE: ClassVar[str] = "queue.left"
    VERSION: ClassVar[int] = 1
    call_id: str
    queue_id: str
    reason: QueueLeftReason
    wait_seconds: float
    agent_id: str | None = None
    destination: str | None = None

    def __post_init__(self) -> None:
        _non_negative("wait_seconds", self.wait_seconds)
        _require(
            (self.agent_id is not None) == (self.reason == "answered"),
            "agent_id is set exactly when the reason is 'answered'",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuePosition:
    """A caller's place in the queue and estimated wait (None when no agent could serve)."""

    TYPE: ClassVar[str] = "queue.position"
    VERSION: ClassVar[int] = 1
    call_id: str
    queue_id: str
    position: int
    ewt_seconds: float | None

    def __post_init__(self) -> None:
        _require(self.position >= 1, f"position must be >= 1, got {self.position}")
        if self.ewt_seconds is not None:
            _non_negative("ewt_seconds", self.ewt_seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuePriorityChanged:
    """A waiting caller's priority changed (IVR, CRM data or a supervisor)."""

    TYPE: ClassVar[str] = "queue.priority_changed"
    VERSION: ClassVar[int] = 1
    call_id: str
    queue_id: str
    previous: int
    priority: int


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueEscalated:
    """A caller reached escalation step ``step`` (1-based) after ``wait_seconds``."""

    TYPE: ClassVar[str] = "queue.escalated"
    VERSION: ClassVar[int] = 1
    call_id: str
    queue_id: str
    step: int
    wait_seconds: float

    def __post_init__(self) -> None:
        _require(self.step >= 1, f"step must be >= 1, got {self.step}")
        _non_negative("wait_seconds", self.wait_seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentOffered:
    """A call was offered to an agent; the offer is a lease valid ``lease_seconds``."""

    TYPE: ClassVar[str] = "agent.offered"
    VERSION: ClassVar[int] = 2  # 2: screen_pop
    call_id: str
    agent_id: str
    queue_id: str
    lease_seconds: float
    wait_seconds: float
    screen_pop: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """What the agent's screen shows about the caller: the call's routing attributes (the
    IVR's variables, ``crm.*`` fields of the CRM's customer record)."""

    def __post_init__(self) -> None:
        _require(self.lease_seconds > 0, "lease_seconds must be > 0")
        _non_negative("wait_seconds", self.wait_seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentNoAnswer:
    """An offered agent did not answer before the ring timeout (or the lease expired)."""

    TYPE: ClassVar[str] = "agent.no_answer"
    VERSION: ClassVar[int] = 1
    call_id: str
    agent_id: str
    queue_id: str
    ring_seconds: float
    consecutive_failures: int

    def __post_init__(self) -> None:
        _non_negative("ring_seconds", self.ring_seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRejected:
    """An offer failed at the agent's phone: declined, busy, or not registered."""

    TYPE: ClassVar[str] = "agent.rejected"
    VERSION: ClassVar[int] = 1
    call_id: str
    agent_id: str
    queue_id: str
    reason: Literal["rejected", "busy", "unregistered"]
    ring_seconds: float
    consecutive_failures: int

    def __post_init__(self) -> None:
        _non_negative("ring_seconds", self.ring_seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentAnswered:
    """An agent answered a queued call, or a caller another agent transferred to them; the
    caller waited ``wait_seconds`` in the queue for this agent (0 after a transfer)."""

    TYPE: ClassVar[str] = "agent.answered"
    VERSION: ClassVar[int] = 1
    call_id: str
    agent_id: str
    queue_id: str
    wait_seconds: float
    ring_seconds: float

    def __post_init__(self) -> None:
        _non_negative("wait_seconds", self.wait_seconds)
        _non_negative("ring_seconds", self.ring_seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStateChanged:
    """An agent moved between states; ``reason`` says why (e.g. ``autopause:no_answer``)."""

    TYPE: ClassVar[str] = "agent.state_changed"
    VERSION: ClassVar[int] = 1
    agent_id: str
    state: AgentStateName
    previous_state: AgentStateName
    reason: str
    seconds_in_previous: float
    call_id: str | None = None

    def __post_init__(self) -> None:
        _require(bool(self.reason), "reason must not be empty")
        _non_negative("seconds_in_previous", self.seconds_in_previous)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackRequested:
    """A caller left the line keeping their place; the ACD will call ``destination`` back."""

    TYPE: ClassVar[str] = "callback.requested"
    VERSION: ClassVar[int] = 1
    call_id: str
    queue_id: str
    destination: str
    position: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackAttempted:
    """The callback's place came up: agent ``agent_id`` dials the customer (attempt N)."""

    TYPE: ClassVar[str] = "callback.attempted"
    VERSION: ClassVar[int] = 1
    call_id: str
    queue_id: str
    agent_id: str
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackCompleted:
    """The customer answered the callback and is connected to the agent."""

    TYPE: ClassVar[str] = "callback.completed"
    VERSION: ClassVar[int] = 1
    call_id: str
    queue_id: str
    agent_id: str
    attempts: int
    wait_seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackFailed:
    """The customer could not be reached; ``final`` when no attempt is left."""

    TYPE: ClassVar[str] = "callback.failed"
    VERSION: ClassVar[int] = 1
    call_id: str
    queue_id: str
    attempts: int
    final: bool


AcdEvent = (
    QueueJoined
    | QueueJoinRejected
    | QueueLeft
    | QueuePosition
    | QueuePriorityChanged
    | QueueEscalated
    | AgentOffered
    | AgentNoAnswer
    | AgentRejected
    | AgentAnswered
    | AgentStateChanged
    | CallbackRequested
    | CallbackAttempted
    | CallbackCompleted
    | CallbackFailed
)

ALL_EVENTS: tuple[type[AcdEvent], ...] = (
    QueueJoined,
    QueueJoinRejected,
    QueueLeft,
    QueuePosition,
    QueuePriorityChanged,
    QueueEscalated,
    AgentOffered,
    AgentNoAnswer,
    AgentRejected,
    AgentAnswered,
    AgentStateChanged,
    CallbackRequested,
    CallbackAttempted,
    CallbackCompleted,
    CallbackFailed,
)
