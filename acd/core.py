"""The engine's internal moves shared by its inputs: transitions, offers, re-queueing, exits.

:class:`acd.engine.AcdEngine` builds on this class; nothing here is called from outside.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from collections.abc import Iterable
from types import MappingProxyType

from acd.actions import AcdAction, CancelOffer, ExitReason, OfferCall, RouteCall
from acd.agent_state import OFFER_STATES, STAFFED_STATES, AgentState, AgentTrigger, next_state
from acd.agents import AgentRuntime
from acd.events import (
    AcdEvent,
    AgentNoAnswer,
    AgentOffered,
    AgentRejected,
    AgentStateChanged,
    QueueLeft,
    QueueLeftReason,
)
from acd.model import AgentProfile, ConfigError, EngineSettings, OfferFailure, QueueConfig
from acd.routing import Router, build_classes
from acd.timers import TimerKind, Timers, elapsed
from acd.waiting import CallStatus, QueueRuntime, WaitClass, WaitingCall

logger = logging.getLogger(__name__)

Output = AcdAction | AcdEvent


class UnknownCallError(KeyError):
    """A command named a call that is not waiting in any queue (answered, gone, or never seen)."""


def unique_queues(queues: Iterable[QueueConfig]) -> dict[str, QueueConfig]:
    configs: dict[str, QueueConfig] = {}
    for queue in queues:
        if queue.queue_id in configs:
            raise ConfigError(f"queue {queue.queue_id!r} is defined twice")
        configs[queue.queue_id] = queue
    return configs


def unique_agents(agents: Iterable[AgentProfile]) -> dict[str, AgentProfile]:
    profiles: dict[str, AgentProfile] = {}
    for profile in agents:
        if profile.agent_id in profiles:
            raise ConfigError(f"agent {profile.agent_id!r} is defined twice")
        profiles[profile.agent_id] = profile
    return profiles


class EngineCore:
    def __init__(
        self,
        queues: Iterable[QueueConfig],
        agents: Iterable[AgentProfile],
        *,
        rng: random.Random,
        settings: EngineSettings | None = None,
    ) -> None:
        self.settings = settings or EngineSettings()
        configs = unique_queues(queues)
        self.agents: dict[str, AgentRuntime] = {
            profile.agent_id: AgentRuntime(profile=profile, roster_rank=rank)
            for rank, profile in enumerate(unique_agents(agents).values())
        }
        classes = build_classes(configs)
        self.queues: dict[str, QueueRuntime] = {
            qid: self._new_queue(config, classes[qid]) for qid, config in configs.items()
        }
        self._rng = rng
        self.router = Router(self.queues, self.agents, self.settings, rng)
        self.calls: dict[str, WaitingCall] = {}  # every caller the engine looks after
        self.timers = Timers()
        self.last_agent: OrderedDict[str, str] = OrderedDict()  # customer -> agent who served
        # Removed by a reload but still busy: a queue with callers, an agent on a call. They
        # are forgotten once idle (see acd.reconfigure).
        self.retired_queues: set[str] = set()
        self.retiring_agents: set[str] = set()
        self._out: list[Output] = []
        self._seq = 0

    def _new_queue(self, config: QueueConfig, classes: list[WaitClass]) -> QueueRuntime:
        return QueueRuntime(
            config,
            classes,
            {agent_id: i for i, agent_id in enumerate(config.linear_order)},
            self.settings.service_level_window,
            self.settings.handle_time_samples,
            self.settings.default_talk_time,
        )

    def _flush(self) -> list[Output]:
        if self.retired_queues or self.retiring_agents:
            self._forget_retired()
        out, self._out = self._out, []
        return out

    def _forget_retired(self) -> None:
        """Drop the queues and agents a reload removed once nothing uses them any more."""
        for agent_id in list(self.retiring_agents):
            agent = self.agents[agent_id]
            if agent.state is AgentState.LOGGED_OUT:
                self.retiring_agents.discard(agent_id)
                self._drop_agent(agent)
        if self.retired_queues:
            busy = {call.queue_id for call in self.calls.values()}
            for queue_id in list(self.retired_queues - busy):
                self.retired_queues.discard(queue_id)
                del self.queues[queue_id]

    def _drop_agent(self, agent: AgentRuntime) -> None:
        """Forget a logged-out agent (no caller waits for them: see ``_release_sticky``)."""
        del self.agents[agent.agent_id]
        self.timers.cancel(TimerKind.HELD, agent.agent_id)

    def _release_sticky(self, agent_id: str, now: float) -> None:
        """Callers waiting for ``agent_id`` in particular go to anyone who may serve them."""
        for call in list(self.router.sticky.get(agent_id, {}).values()):
            self._unstick(call)
            call.preferred_agent = None
            self._route_call(call, now)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _agent(self, agent_id: str) -> AgentRuntime:
        try:
            return self.agents[agent_id]
        except KeyError:
            raise KeyError(f"unknown agent {agent_id!r}") from None

    # Agent state --------------------------------------------------------------------------------

    def _transition(
        self, agent: AgentRuntime, trigger: AgentTrigger, now: float, reason: str
    ) -> None:
        previous = agent.state
        state = next_state(agent.agent_id, previous, trigger)
        router = self.router
        if previous is AgentState.AVAILABLE and agent.held_until is None:
            router.left_available(agent)
        if state is AgentState.AVAILABLE:
            if agent.held_until is not None and agent.held_until <= now:
                self._release_hold(agent)
            if agent.held_until is None:
                router.became_available(agent, self._next_seq())
        emptied: list[WaitClass] = []
        was_staffed, is_staffed = previous in STAFFED_STATES, state in STAFFED_STATES
        if was_staffed != is_staffed:
            if is_staffed:
                router.staffed.add(agent.agent_id, self._next_seq())
            else:
                router.staffed.remove(agent.agent_id)
            for cls in router.classes_for(agent):
                cls.staffed += 1 if is_staffed else -1
                if cls.staffed == 0:
                    emptied.append(cls)
        self._out.append(
            AgentStateChanged(
                agent_id=agent.agent_id,
                state=state.value,
                previous_state=previous.value,
                reason=reason,
                seconds_in_previous=elapsed(agent.since, now),
                call_id=agent.call_id,
            )
        )
        agent.state = state
        agent.since = now
        agent.reason = reason
        if state in (AgentState.AVAILABLE, AgentState.PAUSED, AgentState.LOGGED_OUT):
            agent.call_id = agent.queue_id = None
            agent.answered_at = agent.wrap_up_until = None
        for cls in emptied:
            self._leave_when_empty(cls, now)

    def _hold(self, agent: AgentRuntime, until: float) -> None:
        """Keep ``agent`` out of the routing indexes until ``until`` (another node's claim)."""
        if agent.held_until is None and agent.state is AgentState.AVAILABLE:
            self.router.left_available(agent)
        agent.held_until = until
        self.timers.set(TimerKind.HELD, agent.agent_id, until)

    def _release_hold(self, agent: AgentRuntime) -> None:
        agent.held_until = None
        self.timers.cancel(TimerKind.HELD, agent.agent_id)
        if agent.state is AgentState.AVAILABLE:
            self.router.became_available(agent, self._next_seq())

    def _leave_when_empty(self, cls: WaitClass, now: float) -> None:
        runtime = self.queues.get(cls.queue_id)
        if runtime is None or not runtime.config.leavewhenempty:
            return  # (a queue a reload removed, forgotten once empty, has no callers to leave)
        stranded = [
            c
            for c in runtime.entries.values()
            if c.wait_class is cls and c.status is CallStatus.WAITING and not c.is_callback
        ]
        for call in stranded:
            self._exit(call, "empty", runtime.config.exit_destination, now)

    # Callers' classes ---------------------------------------------------------------------------

    def _class_for(self, call: WaitingCall) -> WaitClass:
        """The class ``call`` belongs in at its queue and escalation step, with its own skills."""
        return self.router.class_of(self.queues[call.queue_id], call.step, call.required)

    def _place(self, call: WaitingCall, cls: WaitClass) -> None:
        """Move ``call`` to ``cls`` (a pooled caller's entry in the old class becomes stale)."""
        old = call.wait_class
        if old is cls:
            return
        self.router.enter(cls, call.call_id)
        if call.pooled:
            cls.push(call)
        else:
            call.wait_class = cls
        self.router.leave(old, call.call_id)

    # Offers -------------------------------------------------------------------------------------

    def _route_call(self, call: WaitingCall, now: float) -> None:
        """Offer ``call`` to whoever may take it now, or leave it waiting."""
        if call.status is not CallStatus.WAITING or call.held_until is not None:
            return
        if call.sticky_until is not None:
            preferred = self.agents[call.preferred_agent or ""]
            if now < call.sticky_until and self.router.holds_own_skills(preferred, call):
                if preferred.free and call.may_offer_to(preferred.agent_id, now):
                    self._offer(call, [preferred.agent_id], now)
                return
            self._unstick(call)
        if not call.pooled:
            call.wait_class.push(call)
        chosen = self.router.pick_agents(call, now)
        if chosen:
            self._offer(call, chosen, now)

    def _route_agent(self, agent: AgentRuntime, now: float) -> None:
        if not agent.free:
            return
        call = self.router.pick_call(agent, now)
        if call is not None:
            self._offer(call, [agent.agent_id], now)

    def _offer(self, call: WaitingCall, agent_ids: list[str], now: float) -> None:
        runtime = self.queues[call.queue_id]
        self._unstick(call)
        call.status = CallStatus.OFFERED
        call.pooled = False
        lease = now + self.settings.offer_lease
        order = self.router.order_of(runtime)
        for agent_id in agent_ids:
            agent = self.agents[agent_id]
            agent.call_id = call.call_id
            agent.queue_id = call.queue_id
            self._transition(agent, AgentTrigger.RESERVE, now, "offer")
            call.offers[agent_id] = now
            self.timers.set(TimerKind.LEASE, agent_id, lease)
            runtime.last_offered = order(agent_id)
            self._out.append(
                OfferCall(
                    call_id=call.call_id,
                    agent_id=agent_id,
                    queue_id=call.queue_id,
                    lease_expires=lease,
                    attributes=call.attributes,
                    callback_destination=call.callback_destination,
                )
            )
            self._out.append(
                AgentOffered(
                    call_id=call.call_id,
                    agent_id=agent_id,
                    queue_id=call.queue_id,
                    lease_seconds=self.settings.offer_lease,
                    wait_seconds=elapsed(call.joined_at, now),
                    screen_pop=MappingProxyType(dict(call.attributes)),
                )
            )

    def _current_offer(self, call_id: str, agent_id: str) -> AgentRuntime | None:
        """The agent if ``call_id`` is their pending offer; None for a stale report."""
        agent = self._agent(agent_id)
        if agent.call_id != call_id or agent.state not in (
            AgentState.RESERVED,
            AgentState.RINGING,
        ):
            logger.debug("stale offer report: call %s agent %s", call_id, agent_id)
            return None
        return agent

    def _withdraw(
        self,
        call: WaitingCall,
        agent_id: str,
        now: float,
        reason: str,
        cancel: CancelOffer | None,
        trigger: AgentTrigger = AgentTrigger.WITHDRAW,
    ) -> AgentRuntime:
        """End ``agent_id``'s offer of ``call`` unanswered; the agent moves on ``trigger``."""
        agent = self.agents[agent_id]
        call.offers.pop(agent_id, None)
        if not call.offers and call.status is CallStatus.OFFERED:
            call.status = CallStatus.WAITING  # so leavewhenempty sees the caller as waiting
        self.timers.cancel(TimerKind.LEASE, agent_id)
        if cancel is not None:
            self._out.append(cancel)
        self._transition(agent, trigger, now, reason)
        return agent

    def _leave_work(
        self, agent: AgentRuntime, trigger: AgentTrigger, now: float, reason: str
    ) -> None:
        """Pause or log out now; a pending offer goes back to its caller's queue."""
        call = self.calls.get(agent.call_id or "") if agent.state in OFFER_STATES else None
        self.timers.cancel(TimerKind.WRAP_UP, agent.agent_id)
        if call is not None:
            cancel = CancelOffer(call_id=call.call_id, agent_id=agent.agent_id, reason="withdrawn")
            self._withdraw(call, agent.agent_id, now, reason, cancel, trigger)
            if not call.offers:
                self._requeue(call, now)
        else:
            self._transition(agent, trigger, now, reason)
        if trigger is AgentTrigger.LOGOUT:
            agent.pending_logout = False
        agent.pending_pause = None

    def _fail_offer(
        self, agent: AgentRuntime, failure: OfferFailure, now: float, expired: bool
    ) -> None:
        call = self.calls[agent.call_id or ""]
        config = self.queues[call.queue_id].config
        policy = config.ring_failures
        ring_seconds = elapsed(call.offers.get(agent.agent_id, now), now)
        if failure in policy.counts:
            agent.failures += 1
        if failure is OfferFailure.NO_ANSWER:
            self._out.append(
                AgentNoAnswer(
                    call_id=call.call_id,
                    agent_id=agent.agent_id,
                    queue_id=call.queue_id,
                    ring_seconds=ring_seconds,
                    consecutive_failures=agent.failures,
                )
            )
        else:
            self._out.append(
                AgentRejected(
                    call_id=call.call_id,
                    agent_id=agent.agent_id,
                    queue_id=call.queue_id,
                    reason=failure.value,  # type: ignore[arg-type]  # the three other failures
                    ring_seconds=ring_seconds,
                    consecutive_failures=agent.failures,
                )
            )
        pause = failure in policy.pauses_at_once or (
            config.autopause > 0 and failure in policy.counts and agent.failures >= config.autopause
        )
        cancel = (
            CancelOffer(call_id=call.call_id, agent_id=agent.agent_id, reason="expired")
            if expired
            else None
        )
        if config.retry > 0:
            call.excluded[agent.agent_id] = now + config.retry
        if pause:
            agent.failures = 0
            self._withdraw(
                call, agent.agent_id, now, f"autopause:{failure.value}", cancel, AgentTrigger.PAUSE
            )
        else:
            self._withdraw(call, agent.agent_id, now, f"offer_{failure.value}", cancel)
        if not call.offers:
            self._requeue(call, now)
        self._route_agent(agent, now)

    def _requeue(self, call: WaitingCall, now: float) -> None:
        """``call``'s offers all ended without an answer: back to waiting, or out if due."""
        if self.calls.get(call.call_id) is not call:
            return  # it left meanwhile (leavewhenempty when the agent paused)
        call.status = CallStatus.WAITING
        if call.pending_exit is not None:
            reason, destination = call.pending_exit
            self._exit(call, reason, destination, now)
            return
        if call.excluded:
            first = min(call.excluded.values())
            if first > now:
                self.timers.set(TimerKind.RETRY, call.call_id, first)
        self._route_call(call, now)

    def _unstick(self, call: WaitingCall) -> None:
        if call.sticky_until is None:
            return
        call.sticky_until = None
        self.timers.cancel(TimerKind.STICKY, call.call_id)
        held = self.router.sticky.get(call.preferred_agent or "")
        if held is not None:
            held.pop(call.call_id, None)
            if not held:
                del self.router.sticky[call.preferred_agent or ""]

    # Leaving ------------------------------------------------------------------------------------

    def _forget(self, call: WaitingCall) -> None:
        """Remove ``call`` from every structure (its offers must already be over)."""
        self._unstick(call)
        call.pooled = False
        self.router.leave(call.wait_class, call.call_id)
        self.queues[call.queue_id].entries.pop(call.call_id, None)
        self.calls.pop(call.call_id, None)
        self._cancel_call_timers(
            call.call_id,
            TimerKind.ESCALATE,
            TimerKind.ANNOUNCE,
            TimerKind.MAX_WAIT,
            TimerKind.RETRY,
            TimerKind.CALLBACK_RETRY,
        )

    def _cancel_call_timers(self, call_id: str, *kinds: TimerKind) -> None:
        for kind in kinds:
            self.timers.cancel(kind, call_id)

    def _leave_queue(
        self,
        call: WaitingCall,
        reason: QueueLeftReason,
        now: float,
        agent_id: str | None = None,
        destination: str | None = None,
    ) -> None:
        wait = elapsed(call.joined_at, now)
        runtime = self.queues[call.queue_id]
        if reason == "answered":
            runtime.service_level.record(now, wait, answered=True)
        elif reason in ("abandoned", "timeout", "escalated", "empty"):
            runtime.service_level.record(now, wait, answered=False)
        self._out.append(
            QueueLeft(
                call_id=call.call_id,
                queue_id=call.queue_id,
                reason=reason,
                wait_seconds=wait,
                agent_id=agent_id,
                destination=destination,
            )
        )

    def _exit(
        self, call: WaitingCall, reason: ExitReason, destination: str | None, now: float
    ) -> None:
        """Route a waiting caller out of the queue (timeout, escalation, empty queue)."""
        if call.status is CallStatus.OFFERED:
            call.pending_exit = (reason, destination)  # let the ringing agent answer first
            return
        self._out.append(
            RouteCall(
                call_id=call.call_id, queue_id=call.queue_id, reason=reason, destination=destination
            )
        )
        self._leave_queue(call, reason, now, destination=destination)
        self._forget(call)
