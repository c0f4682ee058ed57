"""Matching callers and agents: indexes, wait classes and the two routing decisions.

The engine keeps one invariant: no available agent could take any waiting caller. So a decision is
only ever needed for the one caller or the one agent whose situation just changed:

- a caller can be served (arrival, re-queue, escalation): pick among the *available agents who
  qualify*, which the caller's wait class keeps sorted by its queue's strategy (the first entry,
  or a random position, is the answer);
- an agent becomes available: pick among the *heads of the wait classes* they qualify for, then
  between queues by the cross-queue policy.

Neither walks the roster or every waiting caller.

Callers with skills of their own (a language the IVR asked for, the CRM's): such a caller needs
an agent with the queue's skills *and* theirs, so they wait in a class of that combined
requirement, with its own ranked available agents like any other class. These classes are made
when the first caller needs one (filled from the staffed index: only agents who qualify are
visited) and dropped when their last caller leaves; callers of one queue with the same needs at
the same step share one. An agent's classes are the queue classes they qualify for (computed
once) plus the callers' classes, looked up by the agent's skills and cached until a class of
callers' skills is made or dropped. The rules:

- every alternative of the queue's requirement (its skills, an escalation's ``add_skills``, an
  overflow queue's skills) also requires the caller's skills; where both name one skill, the
  higher minimum applies;
- escalation steps that ``relax_proficiency`` relax the caller's minimums by as many levels,
  never below 1: a caller never loses a skill they asked for, only its level;
- a caller whose needs no logged-in, unpaused agent meets (a skill nobody has included) is in a
  queue nobody staffs: ``joinempty: no`` refuses them, otherwise they wait (until an agent with
  the skill logs in, the queue's max wait, or an escalation routes them elsewhere), and
  ``leavewhenempty`` sends them out when the last agent who could serve them leaves;
- a preferred agent (last agent, CRM account owner) may skip the queue's skills but never the
  caller's: without them the preference is ignored;
- position counts the callers ahead who compete for the same agents (see
  ``WaitingCall.competes_with``); the wait estimate counts the agents of the caller's class.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping

from acd.agent_state import AgentState
from acd.agents import AgentRuntime
from acd.ewt import estimate_wait
from acd.index import RankedAgents, SkillIndex
from acd.model import (
    CrossQueuePolicy,
    EngineSettings,
    QueueConfig,
    Requirement,
    SkillRequirement,
    relaxed_skills,
)
from acd.strategies import choose, rank_key
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
        "_own",
        "_own_by_skill",
        "_policy",
        "_rng",
        "generation",
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

        self.staffed = SkillIndex(skills_of)  # logged in and not paused
        self.sticky: dict[str, dict[str, WaitingCall]] = {}  # agent -> callers waiting for them
        self._by_skill: dict[str, list[WaitClass]] = {}
        self._open: list[WaitClass] = []  # classes any agent qualifies for
        # Classes of callers' own skills: (queue, requirement) -> class, and by one of the
        # callers' skills (every agent in the class has it); ``generation`` counts changes.
        self._own: dict[tuple[str, Requirement], WaitClass] = {}
        self._own_by_skill: dict[str, list[WaitClass]] = {}
        self.generation = 0
        seen: set[int] = set()
        for runtime in queues.values():
            for cls in runtime.classes:
                if id(cls) in seen:
                    continue
                seen.add(id(cls))
                config = runtime.config
                cls.free = RankedAgents(
                    rank_key(
                        config.strategy,
                        agents.__getitem__,
                        self.order_of(runtime),
                        config.requirement,
                    )
                )
                skills = cls.requirement.skills()
                if any(not alternative for alternative in cls.requirement.alternatives):
                    self._open.append(cls)
                    continue
                for skill in skills:
                    self._by_skill.setdefault(skill, []).append(cls)

    def classes_for(self, agent: AgentRuntime) -> tuple[WaitClass, ...]:
        """The wait classes ``agent`` qualifies for (computed once per agent, and the classes
        of callers' own skills once per change of those)."""
        if agent.classes is None:
            skills = agent.profile.skills
            found: dict[int, WaitClass] = {id(c): c for c in self._open}
            for skill in skills:
                for cls in self._by_skill.get(skill, ()):
                    if id(cls) not in found and cls.requirement.satisfied_by(skills):
                        found[id(cls)] = cls
            agent.classes = tuple(found.values())
        if not self._own:
            return agent.classes
        if agent.own_generation != self.generation:
            skills = agent.profile.skills
            agent.own_classes = tuple(
                cls
                for skill in skills
                for cls in self._own_by_skill.get(skill, ())
                if cls.requirement.satisfied_by(skills)
            )
            agent.own_generation = self.generation
        return agent.classes + agent.own_classes if agent.own_classes else agent.classes

    # Classes of callers' own skills -----------------------------------------------------------

    def class_of(
        self, runtime: QueueRuntime, step: int, needs: tuple[SkillRequirement, ...]
    ) -> WaitClass:
        """The class of a caller of ``runtime``'s queue at escalation ``step`` who needs
        ``needs`` (sorted, unrelaxed) on top of the queue: escalation relaxes their levels as it
        relaxes the queue's. The queue's own class when it already requires as much."""
        base = runtime.classes[step]
        if not needs:
            return base
        own = relaxed_skills(needs, runtime.config.relaxation(step))
        if base.requirement.includes(own):
            return base
        requirement = base.requirement.with_call_skills(own)
        key = (runtime.config.queue_id, requirement)
        cls = self._own.get(key)
        if cls is not None:
            return cls
        cls = WaitClass(runtime.config.queue_id, step, requirement, own)
        config = runtime.config
        # Skill-weighted ranks by the queue's skills and the caller's: the best French speaker.
        weighted = Requirement((tuple(config.required_skills) + own,))
        cls.free = RankedAgents(
            rank_key(config.strategy, self._agents.__getitem__, self.order_of(runtime), weighted)
        )
        agents = self._agents
        for agent_id in self.staffed.candidates(requirement):
            cls.staffed += 1
            agent = agents[agent_id]
            if agent.free:
                cls.free.add(agent_id, agent.idle_seq)
        self._own[key] = cls
        self._own_by_skill.setdefault(own[0].skill, []).append(cls)
        self.generation += 1
        return cls

    def holds_own_skills(self, agent: AgentRuntime, call: WaitingCall) -> bool:
        """Whether ``agent`` has the caller's own skills (as relaxed at the caller's step): a
        preferred agent may skip the queue's skills, never the caller's."""
        if not call.required:
            return True
        relax = self.queues[call.queue_id].config.relaxation(call.step)
        skills = agent.profile.skills
        return all(
            skills.get(n.skill, 0) >= n.min_proficiency
            for n in relaxed_skills(call.required, relax)
        )

    def enter(self, cls: WaitClass, call_id: str) -> None:
        """``call_id`` waits in ``cls`` now."""
        if cls.own:
            cls.members.add(call_id)

    def leave(self, cls: WaitClass, call_id: str) -> None:
        """``call_id`` no longer waits in ``cls``: a class of callers' skills left empty goes."""
        if not cls.own:
            return
        cls.members.discard(call_id)
        self.drop_if_unused(cls)

    def drop_if_unused(self, cls: WaitClass) -> None:
        if not cls.own or cls.members:
            return
        key = (cls.queue_id, cls.requirement)
        if self._own.get(key) is not cls:
            return  # a class of a configuration reloaded since
        del self._own[key]
        listed = self._own_by_skill[cls.own[0].skill]
        listed.remove(cls)
        if not listed:
            del self._own_by_skill[cls.own[0].skill]
        self.generation += 1

    def own_classes(self) -> tuple[WaitClass, ...]:
        """The classes of callers' own skills in use."""
        return tuple(self._own.values())

    # Decisions --------------------------------------------------------------------------------

    def became_available(self, agent: AgentRuntime, seq: int) -> None:
        """``agent`` entered the available state with idle sequence number ``seq``."""
        agent_id = agent.agent_id
        agent.idle_seq = seq
        for cls in self.classes_for(agent):
            cls.free.add(agent_id, seq)

    def left_available(self, agent: AgentRuntime) -> None:
        agent_id = agent.agent_id
        for cls in self.classes_for(agent):
            cls.free.remove(agent_id)

    def pick_agents(self, call: WaitingCall, now: float) -> list[str]:
        """The available agents to offer ``call`` to, by its queue's strategy (maybe none)."""
        runtime = self.queues[call.queue_id]
        skip = {a for a, until in call.excluded.items() if until > now} if call.excluded else ()
        return choose(
            runtime.config.strategy,
            call.wait_class.free,
            skip=skip,
            last_offered=runtime.last_offered,
            rng=self._rng,
        )

    def pick_call(self, agent: AgentRuntime, now: float) -> WaitingCall | None:
        """The waiting caller ``agent`` should take next (maybe none)."""
        agent_id = agent.agent_id
        held = self.sticky.get(agent_id)
        if held:
            waiting = [
                c
                for c in held.values()
                if c.status is CallStatus.WAITING
                and c.may_offer_to(agent_id, now)
                and self.holds_own_skills(agent, c)
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
