"""Agents, queues and skills: the immutable configuration the ACD engine routes with.

Every value here is a frozen dataclass validated on construction, so a loaded configuration that
reaches the engine is already known to be consistent. Option names follow Asterisk's app_queue where
they mean the same thing (``wrapuptime``, ``joinempty``, ``leavewhenempty``, ``autopause``,
``retry``, ``weight``) so that an admin who knows one recognises the other.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

MIN_PROFICIENCY = 1
MAX_PROFICIENCY = 5


class Strategy(enum.StrEnum):
    """How a queue picks among several available agents for one caller."""

    LONGEST_IDLE = "longest_idle"
    RING_ALL = "ring_all"
    ROUND_ROBIN = "round_robin"  # with memory: start after the agent offered last time
    FEWEST_CALLS = "fewest_calls"
    LEAST_TALK_TIME = "least_talk_time"
    LINEAR = "linear"  # fixed order: the queue's ``linear_order``, then the roster order
    RANDOM = "random"
    SKILL_WEIGHTED = "skill_weighted"  # best proficiency first, longest idle as tie-break


class CrossQueuePolicy(enum.StrEnum):
    """Which waiting caller an agent who serves several queues gets next."""

    LONGEST_WAITING = "longest_waiting"
    PRIORITY_THEN_WAIT = "priority_then_wait"
    SERVICE_LEVEL = "service_level"  # the queue furthest below its service-level target first


class OfferFailure(enum.StrEnum):
    """Why an offered agent did not take the call (the SIP outcome of ringing the softphone)."""

    NO_ANSWER = "no_answer"  # ring timeout, or 408/480 from the agent's leg
    REJECTED = "rejected"  # 603 Decline, or 486 sent by a "reject" button
    BUSY = "busy"  # 486/600 Busy: the phone is in use outside the ACD
    UNREGISTERED = "unregistered"  # 404/480 with no binding: the softphone is not registered


class QueueExitReason(enum.StrEnum):
    """Why a caller left a queue (the ``reason`` of ``queue.left``)."""

    ANSWERED = "answered"
    ABANDONED = "abandoned"
    TIMEOUT = "timeout"  # the queue's max wait passed
    CALLBACK = "callback"  # the caller hung up keeping their place for a callback
    MOVED = "moved"  # moved to another queue
    ESCALATED = "escalated"  # an escalation step routed the caller elsewhere
    EMPTY = "empty"  # leavewhenempty: no agent left who could serve the caller


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the object and the field."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SkillRequirement:
    """An agent must have ``skill`` at ``min_proficiency`` or better."""

    skill: str
    min_proficiency: int = MIN_PROFICIENCY

    def __post_init__(self) -> None:
        if not self.skill:
            raise ConfigError("skill requirement: skill name is empty")
        if not MIN_PROFICIENCY <= self.min_proficiency <= MAX_PROFICIENCY:
            raise ConfigError(
                f"skill requirement {self.skill!r}: min_proficiency {self.min_proficiency} "
                f"is outside {MIN_PROFICIENCY}..{MAX_PROFICIENCY}"
            )


@dataclass(frozen=True, slots=True)
class Requirement:
    """Who may serve a caller: any one alternative, each a set of skills all required.

    A queue starts with one alternative (its required skills); escalation relaxes it by lowering
    minimum proficiencies or by adding alternatives (an extra skill, an overflow queue's skills).
    One alternative with no skills means any logged-in agent.
    """

    alternatives: tuple[tuple[SkillRequirement, ...], ...]

    def __post_init__(self) -> None:
        if not self.alternatives:
            raise ConfigError("requirement has no alternative: nobody could ever serve it")

    def satisfied_by(self, skills: Mapping[str, int]) -> bool:
        return any(
            all(skills.get(r.skill, 0) >= r.min_proficiency for r in alternative)
            for alternative in self.alternatives
        )

    def skills(self) -> frozenset[str]:
        return frozenset(r.skill for alternative in self.alternatives for r in alternative)

    def relaxed(self, by: int) -> Requirement:
        """Every minimum proficiency lowered by ``by`` levels, never below 1."""
        return Requirement(
            tuple(
                tuple(
                    SkillRequirement(
                        skill=r.skill, min_proficiency=max(MIN_PROFICIENCY, r.min_proficiency - by)
                    )
                    for r in alternative
                )
                for alternative in self.alternatives
            )
        )

    def with_call_skills(self, needs: tuple[SkillRequirement, ...]) -> Requirement:
        """Every alternative also requiring ``needs`` (a caller's own skills): where both name a
        skill, the higher minimum applies. Skills in each alternative are sorted by name, so
        that equal requirements compare equal whatever order they were written in."""
        alternatives = []
        for alternative in self.alternatives:
            levels = {r.skill: r.min_proficiency for r in alternative}
            for need in needs:
                levels[need.skill] = max(levels.get(need.skill, 0), need.min_proficiency)
            alternatives.append(
                tuple(
                    SkillRequirement(skill=skill, min_proficiency=level)
                    for skill, level in sorted(levels.items())
                )
            )
        return Requirement(tuple(dict.fromkeys(alternatives)))

    def includes(self, needs: tuple[SkillRequirement, ...]) -> bool:
        """Whether every alternative already requires each of ``needs`` at its level or above."""
        return all(
            any(r.skill == n.skill and r.min_proficiency >= n.min_proficiency for r in alternative)
            for alternative in self.alternatives
            for n in needs
        )

    def with_alternatives(self, extra: tuple[tuple[SkillRequirement, ...], ...]) -> Requirement:
        merged = list(self.alternatives)
        for alternative in extra:
            if alternative not in merged:
                merged.append(alternative)
        return Requirement(tuple(merged))


@dataclass(frozen=True, slots=True, kw_only=True)
class EscalationStep:
    """What changes for a caller once they have waited ``after`` seconds in the queue.

    Relaxations widen who may answer; ``offer_callback`` asks the caller (through the IVR layer)
    whether they want a callback; ``route_to`` takes the caller out of the queue to a destination
    (voicemail, another IVR, an external number) named in the dial plan.
    """

    after: float
    relax_proficiency: int = 0
    add_skills: tuple[SkillRequirement, ...] = ()
    overflow_queues: tuple[str, ...] = ()
    offer_callback: bool = False
    route_to: str | None = None

    def __post_init__(self) -> None:
        if self.after <= 0:
            raise ConfigError(f"escalation step: after={self.after} must be > 0 seconds")
        if not 0 <= self.relax_proficiency < MAX_PROFICIENCY:
            raise ConfigError(
                f"escalation step after {self.after}s: relax_proficiency "
                f"{self.relax_proficiency} must be 0..{MAX_PROFICIENCY - 1}"
            )
        if self.route_to == "":
            raise ConfigError(f"escalation step after {self.after}s: route_to is empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class RingFailurePolicy:
    """How each offer failure counts against the agent.

    A failure in ``counts`` adds one to the agent's consecutive-failure streak (reset by an answer);
    the queue's ``autopause`` number of them pauses the agent. A failure in ``pauses_at_once``
    pauses the agent on the first occurrence: a softphone that is not registered cannot ring.
    """

    counts: frozenset[OfferFailure] = frozenset(
        {OfferFailure.NO_ANSWER, OfferFailure.REJECTED, OfferFailure.BUSY}
    )
    pauses_at_once: frozenset[OfferFailure] = frozenset({OfferFailure.UNREGISTERED})


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueConfig:
    """One queue. Durations are seconds; ``None`` means no limit."""

    queue_id: str
    name: str = ""
    required_skills: tuple[SkillRequirement, ...] = ()
    strategy: Strategy = Strategy.LONGEST_IDLE
    weight: int = 0  # app_queue "weight": added to callers' priority across queues
    service_level_percent: float = 80.0
    service_level_seconds: float = 20.0
    max_wait: float | None = None
    max_length: int | None = None
    wrapuptime: float = 0.0
    joinempty: bool = True
    leavewhenempty: bool = False
    autopause: int = 0  # pause an agent after this many consecutive failed offers; 0: never
    ring_timeout: float = 15.0
    retry: float = 5.0  # app_queue "retry": before re-offering to an agent who failed this call
    priority_aging: float | None = None  # seconds of waiting worth one priority point
    sticky_wait: float = 0.0  # how long a caller waits for their preferred agent
    escalation: tuple[EscalationStep, ...] = ()
    announce_frequency: float | None = None
    announce_position: bool = True
    announce_holdtime: bool = True
    exit_destination: str | None = None  # where timeout / empty / full callers go
    callback_attempts: int = 3
    callback_retry: float = 60.0
    linear_order: tuple[str, ...] = ()
    ring_failures: RingFailurePolicy = field(default_factory=RingFailurePolicy)

    def __post_init__(self) -> None:
        where = f"queue {self.queue_id!r}"
        if not self.queue_id:
            raise ConfigError("queue: queue_id is empty")
        skills = [r.skill for r in self.required_skills]
        if len(set(skills)) != len(skills):
            raise ConfigError(f"{where}: a skill is required twice in {skills}")
        if not 0 < self.service_level_percent <= 100:
            raise ConfigError(f"{where}: service_level_percent must be in (0, 100]")
        _positive(where, "service_level_seconds", self.service_level_seconds)
        _positive(where, "ring_timeout", self.ring_timeout)
        if self.max_wait is not None:
            _positive(where, "max_wait", self.max_wait)
        if self.max_length is not None and self.max_length < 1:
            raise ConfigError(f"{where}: max_length must be >= 1 (or None for no limit)")
        for name in ("wrapuptime", "retry", "sticky_wait", "callback_retry"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{where}: {name} must be >= 0")
        if self.autopause < 0:
            raise ConfigError(f"{where}: autopause must be >= 0")
        if self.priority_aging is not None:
            _positive(where, "priority_aging", self.priority_aging)
        if self.announce_frequency is not None:
            _positive(where, "announce_frequency", self.announce_frequency)
        if self.callback_attempts < 1:
            raise ConfigError(f"{where}: callback_attempts must be >= 1")
        afters = [step.after for step in self.escalation]
        if afters != sorted(set(afters)):
            raise ConfigError(f"{where}: escalation steps must have increasing 'after': {afters}")
        if self.queue_id in {q for step in self.escalation for q in step.overflow_queues}:
            raise ConfigError(f"{where}: a queue cannot overflow to itself")

    @property
    def requirement(self) -> Requirement:
        return Requirement((self.required_skills,))

    def relaxation(self, step: int) -> int:
        """Proficiency levels the first ``step`` escalation steps relax, in total."""
        return sum(s.relax_proficiency for s in self.escalation[:step])


def call_skills(levels: Mapping[str, int] | None) -> tuple[SkillRequirement, ...]:
    """A caller's own required skills (skill -> minimum proficiency), validated and sorted."""
    if not levels:
        return ()
    return tuple(
        SkillRequirement(skill=skill, min_proficiency=level)
        for skill, level in sorted(levels.items())
    )


def relaxed_skills(needs: tuple[SkillRequirement, ...], by: int) -> tuple[SkillRequirement, ...]:
    """``needs`` with each minimum lowered by ``by`` levels, never below 1."""
    if not by:
        return needs
    return tuple(
        SkillRequirement(
            skill=n.skill, min_proficiency=max(MIN_PROFICIENCY, n.min_proficiency - by)
        )
        for n in needs
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentProfile:
    """One agent as configured. ``skills`` maps skill name to proficiency 1..5."""

    agent_id: str
    name: str = ""
    skills: Mapping[str, int] = field(default_factory=dict)
    max_calls: int = 1
    wrapuptime: float | None = None  # overrides the queue's wrap-up time when set
    sip_user: str | None = None
    login_on_register: bool = False  # the softphone registering logs the agent in
    logout_on_unregister: bool = False  # its last registration ending logs them out

    def __post_init__(self) -> None:
        where = f"agent {self.agent_id!r}"
        if not self.agent_id:
            raise ConfigError("agent: agent_id is empty")
        for skill, level in self.skills.items():
            if not skill:
                raise ConfigError(f"{where}: empty skill name")
            if not MIN_PROFICIENCY <= level <= MAX_PROFICIENCY:
                raise ConfigError(
                    f"{where}: proficiency {level} in {skill!r} is outside "
                    f"{MIN_PROFICIENCY}..{MAX_PROFICIENCY}"
                )
        if self.max_calls != 1:
            # The agent state machine models one call at a time (ringing, talking, wrap-up).
            raise ConfigError(f"{where}: max_calls={self.max_calls}; only 1 is supported")
        if self.wrapuptime is not None and self.wrapuptime < 0:
            raise ConfigError(f"{where}: wrapuptime must be >= 0")
        # Freeze the mapping so a shared profile cannot be changed behind the engine's indexes.
        object.__setattr__(self, "skills", MappingProxyType(dict(self.skills)))


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineSettings:
    """Engine-wide settings. Durations are seconds."""

    offer_lease: float = 5.0  # a reserved agent not yet ringing is released after this
    cross_queue_policy: CrossQueuePolicy = CrossQueuePolicy.LONGEST_WAITING
    service_level_window: float = 1800.0
    handle_time_samples: int = 50
    default_talk_time: float = 180.0  # used for estimates until a queue has handled calls
    sticky_memory: int = 10_000  # callers remembered for "route to the last agent"

    def __post_init__(self) -> None:
        _positive("engine settings", "offer_lease", self.offer_lease)
        _positive("engine settings", "service_level_window", self.service_level_window)
        _positive("engine settings", "default_talk_time", self.default_talk_time)
        if self.handle_time_samples < 1 or self.sticky_memory < 0:
            raise ConfigError("engine settings: handle_time_samples >= 1, sticky_memory >= 0")


def _positive(where: str, name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{where}: {name}={value} must be > 0")
