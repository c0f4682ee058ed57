"""The engine's internal moves shared by its inputs: transitions, offers, re-queueing, exits.

:class:`acd.engine.AcdEngine` builds on this class; nothing here is called from outside.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from collections.abc import Iterable

from acd.actions import AcdAction, CancelOffer, ExitReason, OfferCall, RouteCall
from acd.agent_state import STAFFED_STATES, AgentState, AgentTrigger, next_state
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
        configs: dict[str, QueueConfig] = {}
        for queue in queues:
            if queue.queue_id in configs:
                raise ConfigError(f"queue {queue.queue_id!r} is defined twice")
            configs[queue.queue_id] = queue
        self.agents: dict[str, AgentRuntime] = {}
        for rank, profile in enumerate(agents):
            if profile.agent_id in self.agents:
                raise ConfigError(f"agent {profile.agent_id!r} is defined twice")
            self.agents[profile.agent_id] = AgentRuntime(profile=profile, roster_rank=rank)
        classes = build_classes(configs)
        self.queues: dict[str, QueueRuntime] = {
            qid: QueueRuntime(
                config,
                classes[qid],
                {agent_id: i for i, agent_id in enumerate(config.linear_order)},
                self.settings.service_level_window,
                self.settings.handle_time_samples,
                self.settings.default_talk_time,
            )
            for qid, config in configs.items()
        }
        self.router = Router(self.queues, self.agents, self.settings, rng)
        self.calls: dict[str, WaitingCall] = {}  # every caller the engine looks after
        self.timers = Timers()
        self.last_agent: OrderedDict[str, str] = OrderedDict()  # customer -> agent who served
        self._out: list[Output] = []
        self._seq = 0

    def _flush(self) -> list[Output]:
        out, self._out = self._out, []
        return out

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
        if previous is AgentState.AVAILABLE:
            router.available.remove(agent.agent_id)
        if state is AgentState.AVAILABLE:
            router.available.add(agent.agent_id, self._next_seq())
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

    def _leave_when_empty(self, cls: WaitClass, now: float) -> None:
        runtime = self.queues[cls.queue_id]
        if not runtime.config.leavewhenempty:
            return
        stranded = [
            c
            for c in runtime.entries.values()
            if c.wait_class is cls and c.status is CallStatus.WAITING and not c.is_callback
        ]
        for call in stranded:
            self._exit(call, "empty", runtime.config.exit_destination, now)

    # Offers -------------------------------------------------------------------------------------

    def _route_call(self, call: WaitingCall, now: float) -> None:
        """Offer ``call`` to whoever may take it now, or leave it waiting."""
        if call.status is not CallStatus.WAITING or call.held_until is not None:
            return
        if call.sticky_until is not None:
            preferred = self.agents[call.preferred_agent or ""]
            if now < call.sticky_until:
                if preferred.state is AgentState.AVAILABLE and call.may_offer_to(
                    preferred.agent_id, now
                ):
                    self._offer(call, [preferred.agent_id], now)
                return
            self._unstick(call)
        if not call.pooled:
            call.wait_class.push(call)
        chosen = self.router.pick_agents(call, now)
        if chosen:
            self._offer(call, chosen, now)

    def _route_agent(self, agent: AgentRuntime, now: float) -> None:
        if agent.state is not AgentState.AVAILABLE:
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
        self.queues[call.queue_id].entries.pop(call.call_id, None)
        self.calls.pop(call.call_id, None)
        for kind in (
            TimerKind.ESCALATE,
            TimerKind.ANNOUNCE,
            TimerKind.MAX_WAIT,
            TimerKind.RETRY,
            TimerKind.CALLBACK_RETRY,
        ):
            self.timers.cancel(kind, call.call_id)

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
