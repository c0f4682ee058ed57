"""A fake clock around the ACD engine, and shorthands for building configurations."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from acd.actions import CancelOffer, OfferCall
from acd.engine import AcdEngine, Output
from acd.events import AgentStateChanged
from acd.model import AgentProfile, EngineSettings, OfferFailure, QueueConfig, SkillRequirement

T = TypeVar("T")


def need(skill: str, level: int = 1) -> SkillRequirement:
    return SkillRequirement(skill=skill, min_proficiency=level)


def queue(queue_id: str, *skills: SkillRequirement, **options: Any) -> QueueConfig:
    return QueueConfig(queue_id=queue_id, required_skills=tuple(skills), **options)


def agent(agent_id: str, wrapuptime: float | None = None, **skills: int) -> AgentProfile:
    return AgentProfile(agent_id=agent_id, skills=skills, wrapuptime=wrapuptime)


class Harness:
    """Drives an engine with a fake clock; every output is also kept in ``log``."""

    def __init__(
        self,
        queues: Iterable[QueueConfig],
        agents: Iterable[AgentProfile],
        *,
        seed: int = 0,
        settings: EngineSettings | None = None,
    ) -> None:
        self.engine = AcdEngine(queues, agents, rng=random.Random(seed), settings=settings)
        self.now = 0.0
        self.log: list[Output] = []

    def _keep(self, out: list[Output]) -> list[Output]:
        self.log.extend(out)
        return out

    def advance(self, seconds: float) -> list[Output]:
        """Move the clock, firing every timer on its own deadline on the way."""
        target = self.now + seconds
        out: list[Output] = []
        while (deadline := self.engine.next_timer()) is not None and deadline <= target:
            self.now = max(self.now, deadline)
            out += self.engine.on_timer(self.now)
        self.now = target
        return self._keep(out)

    def login(self, *agent_ids: str) -> list[Output]:
        out: list[Output] = []
        for agent_id in agent_ids:
            out += self.engine.agent_login(agent_id, self.now)
        return self._keep(out)

    def enqueue(self, call_id: str, queue_id: str, **kw: Any) -> list[Output]:
        return self._keep(self.engine.enqueue(call_id, queue_id, self.now, **kw))

    def ring(self, call_id: str, agent_id: str) -> list[Output]:
        return self._keep(self.engine.offer_ringing(call_id, agent_id, self.now))

    def answer(self, call_id: str, agent_id: str) -> list[Output]:
        return self._keep(self.engine.offer_answered(call_id, agent_id, self.now))

    def fail(self, call_id: str, agent_id: str, reason: OfferFailure) -> list[Output]:
        return self._keep(self.engine.offer_failed(call_id, agent_id, reason, self.now))

    def hang_up(self, agent_id: str) -> list[Output]:
        return self._keep(self.engine.call_ended(agent_id, self.now))

    def abandon(self, call_id: str) -> list[Output]:
        return self._keep(self.engine.caller_abandoned(call_id, self.now))

    def call(self, name: str, *args: Any, **kw: Any) -> list[Output]:
        """Any other engine input, with the current time as ``now``."""
        return self._keep(getattr(self.engine, name)(*args, now=self.now, **kw))

    def serve(self, call_id: str, agent_id: str, talk: float = 60.0) -> None:
        """Ring, answer, talk ``talk`` seconds and hang up."""
        self.ring(call_id, agent_id)
        self.answer(call_id, agent_id)
        self.advance(talk)
        self.hang_up(agent_id)

    def state(self, agent_id: str) -> str:
        return self.engine.agent_state(agent_id).value


def of_type(outputs: Iterable[Output], kind: type[T]) -> list[T]:
    return [o for o in outputs if isinstance(o, kind)]


def offers(outputs: Iterable[Output]) -> list[tuple[str, str]]:
    """(call, agent) pairs offered, in order."""
    return [(o.call_id, o.agent_id) for o in of_type(outputs, OfferCall)]


def offered_agent(outputs: Iterable[Output], call_id: str) -> str:
    agents = [a for c, a in offers(outputs) if c == call_id]
    assert len(agents) == 1, f"expected one offer of {call_id}, got {agents}"
    return agents[0]


def cancels(outputs: Iterable[Output]) -> list[tuple[str, str, str]]:
    return [(o.call_id, o.agent_id, o.reason) for o in of_type(outputs, CancelOffer)]


def states(outputs: Iterable[Output], agent_id: str) -> list[tuple[str, str]]:
    return [
        (o.state, o.reason) for o in of_type(outputs, AgentStateChanged) if o.agent_id == agent_id
    ]


def skills(**levels: int) -> Mapping[str, int]:
    return levels
