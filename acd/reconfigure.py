"""A configuration reload applied to the running engine, without dropping a caller.

What changes where (the rules an admin can rely on):

- **Queues added** take callers at once. **Queues changed** apply their new settings to the next
  decision: skills and escalation steps (each waiting caller keeps the step they reached, counted
  from when they joined), strategy, ring timeout, wrap-up, limits. Timers already running are
  re-armed from the caller's arrival in the queue (a shorter ``max_wait`` may send a caller out at
  once); a new ``servicelevel`` threshold starts a new service-level window.
- **Queues removed** take no new callers (joining or moving a caller there fails as for an
  unknown queue), but callers already waiting stay and are served as before, with the queue's
  last settings, until they are answered, leave, or a supervisor moves them; the queue is
  forgotten when its last caller is gone. Routing a caller out against their will because an
  admin edited a file would be worse than letting the queue drain.
- **Agents added** start logged out. **Agents changed** (skills, wrap-up, softphone) keep their
  state; new skills apply to the next decision. **Agents removed** are logged out at once (an
  offer in progress goes to the next agent); one on a call finishes it (and its wrap-up) first,
  takes no new call, and is forgotten when logged out.

Everything the engine indexes by configuration (wait classes, skill indexes, strategy orders) is
rebuilt from the new configuration and refilled from the agents' and callers' live state, keeping
idle order and places in line; then every waiting caller is routed again, since new skills may
let an idle agent take them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from acd.agent_state import STAFFED_STATES, AgentState, AgentTrigger
from acd.agents import AgentRuntime
from acd.core import Output, unique_agents, unique_queues
from acd.ewt import ServiceLevel
from acd.model import AgentProfile, EngineSettings, QueueConfig
from acd.routing import Router, build_classes
from acd.timers import TimerKind
from acd.timers_dispatch import TimerHandlers
from acd.waiting import CallStatus, QueueRuntime, WaitingCall


class Reconfiguration(TimerHandlers):
    def reconfigure(
        self,
        queues: Iterable[QueueConfig],
        agents: Iterable[AgentProfile],
        now: float,
        *,
        settings: EngineSettings | None = None,
    ) -> list[Output]:
        """Adopt a reloaded configuration (see the module documentation for what changes)."""
        configs = unique_queues(queues)
        profiles = unique_agents(agents)
        if settings is not None:
            self.settings = settings
        for agent_id in [a for a in self.agents if a not in profiles]:
            self._remove_agent(self.agents[agent_id], now)
        staffed_order = {
            agent_id: self.router.staffed.seq(agent_id)
            for agent_id, agent in self.agents.items()
            if agent.state in STAFFED_STATES
        }
        for rank, (agent_id, profile) in enumerate(profiles.items()):
            runtime = self.agents.get(agent_id)
            if runtime is None:
                self.agents[agent_id] = AgentRuntime(profile=profile, roster_rank=rank)
            else:
                runtime.profile, runtime.roster_rank = profile, rank
            if agent_id in self.retiring_agents:  # removed, then back while still on a call
                self.retiring_agents.discard(agent_id)
                self.agents[agent_id].pending_logout = False
        staffed_before = {
            queue_id: [cls.staffed for cls in runtime.classes]
            for queue_id, runtime in self.queues.items()
        }
        served_before = [
            call_id
            for call_id, call in self.calls.items()
            if call.wait_class.own and call.wait_class.staffed > 0
        ]
        self._rebuild_queues(configs)
        self._reindex(staffed_order)
        self._replace_callers(staffed_before, served_before, now)
        return self._flush()

    def _remove_agent(self, agent: AgentRuntime, now: float) -> None:
        agent_id = agent.agent_id
        self._release_sticky(agent_id, now)
        agent.pending_pause = None
        if agent.state is AgentState.ON_CALL:
            agent.pending_logout = True  # logged out when the call (and wrap-up) ends
            self.retiring_agents.add(agent_id)
            return
        if agent.state is not AgentState.LOGGED_OUT:
            self._leave_work(agent, AgentTrigger.LOGOUT, now, "removed")
        self.retiring_agents.discard(agent_id)
        self._drop_agent(agent)

    def _rebuild_queues(self, configs: dict[str, QueueConfig]) -> None:
        busy = {call.queue_id for call in self.calls.values()}
        for queue_id, runtime in self.queues.items():
            if queue_id not in configs and queue_id in busy:
                # Removed while callers wait: kept with its last settings until they are gone.
                # An overflow to a queue that no longer exists at all is dropped.
                known = configs.keys() | busy
                configs[queue_id] = dataclasses.replace(
                    runtime.config,
                    escalation=tuple(
                        dataclasses.replace(
                            step,
                            overflow_queues=tuple(q for q in step.overflow_queues if q in known),
                        )
                        for step in runtime.config.escalation
                    ),
                )
                self.retired_queues.add(queue_id)
            elif queue_id in configs:
                self.retired_queues.discard(queue_id)
        classes = build_classes(configs)
        queues: dict[str, QueueRuntime] = {}
        for queue_id, config in configs.items():
            existing = self.queues.get(queue_id)
            if existing is None:
                queues[queue_id] = self._new_queue(config, classes[queue_id])
                continue
            runtime = existing
            previous = runtime.config
            runtime.config = config
            runtime.classes = classes[queue_id]
            runtime.order = {agent_id: i for i, agent_id in enumerate(config.linear_order)}
            if config.service_level_seconds != previous.service_level_seconds:
                runtime.service_level = ServiceLevel(
                    config.service_level_seconds, self.settings.service_level_window
                )
            if config.linear_order != previous.linear_order:
                runtime.last_offered = None  # positions in the old order mean nothing now
            queues[queue_id] = runtime
        self.queues = queues
        sticky = self.router.sticky
        self.router = Router(self.queues, self.agents, self.settings, self._rng)
        self.router.sticky = sticky

    def _reindex(self, staffed_order: dict[str, int]) -> None:
        """Fill the new indexes from the agents' states, keeping their order."""
        router = self.router
        agents = self.agents
        for agent in agents.values():
            agent.classes = None  # the wait classes are new objects
            agent.own_classes, agent.own_generation = (), -1
        for agent_id in sorted(staffed_order, key=staffed_order.__getitem__):
            staffed = agents.get(agent_id)
            if staffed is None or staffed.state not in STAFFED_STATES:
                continue
            router.staffed.add(agent_id, staffed_order[agent_id])
            for cls in router.classes_for(staffed):
                cls.staffed += 1
        for agent in agents.values():
            if agent.free:
                router.became_available(agent, agent.idle_seq)

    def _replace_callers(
        self, staffed_before: dict[str, list[int]], served_before: list[str], now: float
    ) -> None:
        """Every caller into their queue's new wait class and timers, then routed again.

        ``served_before``: callers with skills of their own whose class had staff before."""
        for call in self.calls.values():
            runtime = self.queues[call.queue_id]
            config = runtime.config
            steps = config.escalation
            call.step = min(call.step, len(steps))
            call.rank = runtime.rank_of(call.priority, call.anchor)
            # The old class and its heap are gone (with the old router: nothing to leave).
            wait_class = self.router.class_of(runtime, call.step, call.required)
            self.router.enter(wait_class, call.call_id)
            if call.pooled:
                wait_class.push(call)
            else:
                call.wait_class = wait_class
            if call.status is CallStatus.DIALING:
                continue
            self._rearm(call, now)
        for queue_id, runtime in list(self.queues.items()):
            before = staffed_before.get(queue_id, [])
            for step, cls in enumerate(runtime.classes):
                # leavewhenempty: callers leave when the last agent who could serve them goes,
                # here because the reload took away the agents (or the skills) they relied on.
                if cls.staffed == 0 and step < len(before) and before[step] > 0:
                    self._leave_when_empty(cls, now)
        for call_id in served_before:
            stranded = self.calls.get(call_id)
            if stranded is not None and stranded.wait_class.staffed == 0:
                self._leave_when_empty(stranded.wait_class, now)
        for call in sorted(self.calls.values(), key=WaitingCall.order_key):
            if call.status is CallStatus.WAITING and self.calls.get(call.call_id) is call:
                self._route_call(call, now)

    def _rearm(self, call: WaitingCall, now: float) -> None:
        config = self.queues[call.queue_id].config
        steps = config.escalation
        timers = self.timers
        if call.step < len(steps):
            timers.set(TimerKind.ESCALATE, call.call_id, call.joined_at + steps[call.step].after)
        else:
            timers.cancel(TimerKind.ESCALATE, call.call_id)
        if call.is_callback:
            return
        if config.max_wait is not None:
            timers.set(TimerKind.MAX_WAIT, call.call_id, call.joined_at + config.max_wait)
        else:
            timers.cancel(TimerKind.MAX_WAIT, call.call_id)
        if config.announce_frequency is None:
            timers.cancel(TimerKind.ANNOUNCE, call.call_id)
        elif not timers.is_set(TimerKind.ANNOUNCE, call.call_id):
            timers.set(TimerKind.ANNOUNCE, call.call_id, now + config.announce_frequency)
