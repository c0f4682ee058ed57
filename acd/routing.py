"""Matching callers and agents: indexes, wait classes and the two routing decisions.

The engine keeps one invariant: no available agent could take any waiting caller. So a decision is
only ever needed for the one caller or the one agent whose situation just changed:

- a caller can be served (arrival, re-queue, escalation): pick among the *available agents who
  qualify*, read from the skill index in longest-idle order;
- an agent becomes available: pick among the *heads of the wait classes* they qualify for, then
  between queues by the cross-queue policy.

Neither walks the roster or every waiting caller.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping

from acd.agent_state import AgentState
from acd.agents import AgentRuntime
from acd.ewt import estimate_wait
from acd.index import SkillIndex
from acd.model import CrossQueuePolicy, EngineSettings, QueueConfig, Strategy
from acd.strategies import Scan, StrategyContext, select
from acd.waiting import CallStatus, QueueRuntime, WaitClass, WaitingCall


def build_classes(queues: Mapping[str, QueueConfig]) -> dict[str, list[WaitClass]]:
    """Wait classes per queue, one per escalation step; equal requirements share a class."""
    result: dict[str, list[WaitClass]] = {}
    for queue in queues.values():
        requirement = queue.requirement
        classes = [WaitClass(queue.queue_id, 0, requirement)]
        for number, step in enumerate(queue.escalation, start=1):
            if step.relax_proficiency:
                requirement = requirement.relaxed(step.relax_proficiency)
            if step.add_skills:
                requirement = requirement.with_alternatives((step.add_skills,))
            for overflow in step.overflow_queues:
                if overflow not in queues:
                    raise ValueError(
                        f"queue {queue.queue_id!r}: escalation step {number} overflows to "
                        f"unknown queue {overflow!r}"
                    )
                requirement = requirement.with_alternatives(
                    queues[overflow].requirement.alternatives
                )
            if requirement == classes[-1].requirement:
                classes.append(classes[-1])
            else:
                classes.append(WaitClass(queue.queue_id, number, requirement))
        result[queue.queue_id] = classes
    return result


class Router:
    __slots__ = (
        "_agents",
        "_by_skill",
        "_open",
        "_policy",
        "_rng",
        "available",
        "queues",
        "staffed",
        "sticky",
    )

    def __init__(
        self,
        queues: Mapping[str, QueueRuntime],
        agents: Mapping[str, AgentRuntime],
        settings: EngineSettings,
        rng: random.Random,
    ) -> None:
        self.queues = queues
        self._agents = agents
        self._policy = settings.cross_queue_policy
        self._rng = rng

        def skills_of(agent_id: str) -> Mapping[str, int]:
            return agents[agent_id].profile.skills

        self.available = SkillIndex(skills_of)  # agents in state available, longest idle first
        self.staffed = SkillIndex(skills_of)  # logged in and not paused
        self.sticky: dict[str, dict[str, WaitingCall]] = {}  # agent -> callers waiting for them
        self._by_skill: dict[str, list[WaitClass]] = {}
        self._open: list[WaitClass] = []  # classes any agent qualifies for
        seen: set[int] = set()
        for runtime in queues.values():
            for cls in runtime.classes:
                if id(cls) in seen:
                    continue
                seen.add(id(cls))
                skills = cls.requirement.skills()
                if any(not alternative for alternative in cls.requirement.alternatives):
                    self._open.append(cls)
                    continue
                for skill in skills:
                    self._by_skill.setdefault(skill, []).append(cls)

    def classes_for(self, agent: AgentRuntime) -> tuple[WaitClass, ...]:
        """The wait classes ``agent`` qualifies for (computed once per agent)."""
        if agent.classes is None:
            skills = agent.profile.skills
            found: dict[int, WaitClass] = {id(c): c for c in self._open}
            for skill in skills:
                for cls in self._by_skill.get(skill, ()):
                    if id(cls) not in found and cls.requirement.satisfied_by(skills):
                        found[id(cls)] = cls
            agent.classes = tuple(found.values())
        return agent.classes

    # Decisions --------------------------------------------------------------------------------

    def pick_agents(self, call: WaitingCall, now: float) -> list[str]:
        """The available agents to offer ``call`` to, by its queue's strategy (maybe none)."""
        runtime = self.queues[call.queue_id]
        config = runtime.config
        requirement = call.wait_class.requirement
        alternatives = requirement.alternatives
        if (
            config.strategy is Strategy.SKILL_WEIGHTED
            and len(alternatives) == 1
            and len(alternatives[0]) == 1
            and alternatives[0] == config.required_skills
        ):
            # One skill: the per-level dicts already hold the skill-weighted order.
            for agent_id in self.available.best_proficiency_first(alternatives[0][0]):
                if call.may_offer_to(agent_id, now):
                    return [agent_id]
            return []
        candidates = self.available.candidates(requirement)
        if call.excluded:
            candidates = (a for a in candidates if call.may_offer_to(a, now))

        def scan() -> Scan:
            pairs = self.available.scan(requirement)
            if call.excluded:
                pairs = [p for p in pairs if call.may_offer_to(p[1], now)]
            return pairs

        order = self.order_of(runtime)
        ctx = StrategyContext(
            figures=self._agents.__getitem__,
            order=order,
            last_offered=runtime.last_offered,
            requirement=config.requirement,
            rng=self._rng,
        )
        return select(config.strategy, candidates, scan, ctx)

    def pick_call(self, agent: AgentRuntime, now: float) -> WaitingCall | None:
        """The waiting caller ``agent`` should take next (maybe none)."""
        agent_id = agent.agent_id
        held = self.sticky.get(agent_id)
        if held:
            waiting = [
                c
                for c in held.values()
                if c.status is CallStatus.WAITING and c.may_offer_to(agent_id, now)
            ]
            if waiting:
                return min(waiting, key=WaitingCall.order_key)

        def accept(call: WaitingCall) -> bool:
            return call.may_offer_to(agent_id, now)

        heads: dict[str, WaitingCall] = {}
        for cls in self.classes_for(agent):
            head = cls.best(accept)
            if head is None:
                continue
            current = heads.get(cls.queue_id)
            if current is None or head.order_key() < current.order_key():
                heads[cls.queue_id] = head
        if not heads:
            return None
        if len(heads) == 1:
            return next(iter(heads.values()))
        return min(heads.values(), key=self._policy_key(now))

    def _policy_key(self, now: float) -> Callable[[WaitingCall], tuple[float, float, int]]:
        queues = self.queues
        if self._policy is CrossQueuePolicy.LONGEST_WAITING:
            return lambda c: (c.anchor, 0.0, c.seq)
        if self._policy is CrossQueuePolicy.PRIORITY_THEN_WAIT:

            def priority_key(c: WaitingCall) -> tuple[float, float, int]:
                config = queues[c.queue_id].config
                score = config.weight + c.effective_priority(now, config.priority_aging)
                return (-score, c.anchor, c.seq)

            return priority_key
        return lambda c: (queues[c.queue_id].service_level_gap(now), c.anchor, c.seq)

    def order_of(self, runtime: QueueRuntime) -> Callable[[str], int]:
        listed = runtime.order
        offset = len(listed)
        agents = self._agents
        # Agents not in the queue's list come after the listed ones, in roster order.
        return lambda agent_id: listed.get(agent_id, offset + agents[agent_id].roster_rank)

    # Estimates --------------------------------------------------------------------------------

    def estimated_wait(self, call: WaitingCall, now: float) -> float | None:
        runtime = self.queues[call.queue_id]
        talk = runtime.talk.average
        handle = runtime.handle_time(runtime.config.wrapuptime)
        available = 0
        busy: list[float] = []
        for agent_id in self.staffed.candidates(call.wait_class.requirement):
            agent = self._agents[agent_id]
            if agent.pending_logout or agent.pending_pause is not None:
                continue  # will not come back to take callers
            state = agent.state
            if state is AgentState.AVAILABLE:
                available += 1
            elif state is AgentState.WRAP_UP and agent.wrap_up_until is not None:
                busy.append(agent.wrap_up_until - now)
            elif state is AgentState.ON_CALL and agent.answered_at is not None:
                wrap = _wrap_of(agent, self.queues)
                busy.append(max(0.0, talk - (now - agent.answered_at)) + wrap)
            else:
                busy.append(handle)
        return estimate_wait(runtime.position(call), available, busy, handle)


def _wrap_of(agent: AgentRuntime, queues: Mapping[str, QueueRuntime]) -> float:
    if agent.profile.wrapuptime is not None:
        return agent.profile.wrapuptime
    if agent.queue_id is not None and agent.queue_id in queues:
        return queues[agent.queue_id].config.wrapuptime
    return 0.0
