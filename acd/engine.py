"""The ACD engine: skills-based queuing of callers to agents, sans-IO.

Every input is a method taking ``now`` (monotonic seconds) and returning the resulting actions
(:mod:`acd.actions`, for the layer that owns calls) and events (:mod:`acd.events`, for the bus), in
the order they happened. ``next_timer()`` says when ``on_timer(now)`` is due next.

Reports from the telephony side may race with the engine's own decisions (an answer crossing an
expired lease, a hang-up crossing an answer); the engine answers a stale report with nothing, or
with a :class:`~acd.actions.CancelOffer` for an answer that came too late. Commands that name an
unknown agent or call, and agent moves the state machine forbids, raise.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

from acd.actions import CancelOffer, DialCallback, RouteCall
from acd.agent_state import AgentState, AgentTrigger, IllegalTransitionError
from acd.core import Output, UnknownCallError
from acd.engine_calls import CallEntryPoints
from acd.events import (
    AgentAnswered,
    CallbackAttempted,
    QueueJoined,
    QueueJoinRejected,
    QueuePriorityChanged,
)
from acd.model import OfferFailure, call_skills
from acd.timers import TimerKind, elapsed
from acd.waiting import CallStatus, WaitingCall

logger = logging.getLogger(__name__)

__all__ = ["AcdEngine", "Output", "UnknownCallError"]

CUSTOMER_KEY = "customer_id"  # routing attribute naming the customer, for "last agent" routing
# Shortest time an agent another node holds stays out of decisions here, even when that node's
# claim is just ending: without it a refused claim could be retried at once, again and again.
MIN_HOLD = 1.0


class AcdEngine(CallEntryPoints):
    """Construct with ``AcdEngine(queues, agents, rng=random.Random(seed), settings=...)``."""

    # Callers ------------------------------------------------------------------------------------

    def enqueue(
        self,
        call_id: str,
        queue_id: str,
        now: float,
        *,
        priority: int = 0,
        attributes: Mapping[str, str] | None = None,
        preferred_agent: str | None = None,
        required_skills: Mapping[str, int] | None = None,
    ) -> list[Output]:
        """A caller arrives in ``queue_id``; routed at once if an agent may take them.

        ``required_skills`` (skill -> minimum proficiency) are the caller's own needs on top of
        the queue's: only an agent with all of both may be offered the call (see the module
        documentation). Raises ValueError for a proficiency outside 1..5.
        """
        if call_id in self.calls:
            raise ValueError(f"call {call_id!r} is already queued")
        runtime = self._open_queue(queue_id)
        config = runtime.config
        attributes = dict(attributes or {})
        needs = call_skills(required_skills)
        reject: Literal["full", "empty"] | None = None
        wait_class = None
        if config.max_length is not None and len(runtime.entries) >= config.max_length:
            reject = "full"
        else:
            wait_class = self.router.class_of(runtime, 0, needs)
            if not config.joinempty and wait_class.staffed == 0:
                # Nobody logged in has the queue's skills and the caller's (a skill no agent
                # has at all is the same): joinempty says whether to wait for one.
                self.router.drop_if_unused(wait_class)
                reject = "empty"
        if reject is not None:
            self._out.append(QueueJoinRejected(call_id=call_id, queue_id=queue_id, reason=reject))
            self._out.append(
                RouteCall(
                    call_id=call_id,
                    queue_id=queue_id,
                    reason=reject,
                    destination=config.exit_destination,
                )
            )
            return self._flush()
        seq = self._next_seq()
        call = WaitingCall(
            call_id=call_id,
            queue_id=queue_id,
            priority=priority,
            attributes=attributes,
            anchor=now,
            joined_at=now,
            seq=seq,
            wait_class=wait_class or runtime.classes[0],
            rank=runtime.rank_of(priority, now),
            required=needs,
        )
        self.router.enter(call.wait_class, call_id)
        if preferred_agent is None and CUSTOMER_KEY in attributes:
            preferred_agent = self.last_agent.get(attributes[CUSTOMER_KEY])
        if preferred_agent is not None and (
            preferred_agent not in self.agents or preferred_agent in self.retiring_agents
        ):
            logger.info("call %s: preferred agent %r is unknown", call_id, preferred_agent)
            preferred_agent = None
        if preferred_agent is not None and not self.router.holds_own_skills(
            self.agents[preferred_agent], call
        ):
            logger.info("call %s: preferred agent %r lacks its skills", call_id, preferred_agent)
            preferred_agent = None
        call.preferred_agent = preferred_agent
        self.calls[call_id] = call
        runtime.entries[call_id] = call
        self._out.append(
            QueueJoined(
                call_id=call_id,
                queue_id=queue_id,
                priority=priority,
                position=runtime.position(call),
                required_skills=MappingProxyType(call.required_skills),
            )
        )
        self._arm_call_timers(call, now)
        if preferred_agent is not None:
            agent = self.agents[preferred_agent]
            if config.sticky_wait > 0 and agent.state is not AgentState.LOGGED_OUT:
                call.sticky_until = now + config.sticky_wait
                self.router.sticky.setdefault(preferred_agent, {})[call_id] = call
                self.timers.set(TimerKind.STICKY, call_id, call.sticky_until)
            elif agent.free:
                self._offer(call, [preferred_agent], now)
                return self._flush()
        self._route_call(call, now)
        return self._flush()

    def caller_abandoned(self, call_id: str, now: float) -> list[Output]:
        """The caller hung up while waiting (or while an agent was being rung)."""
        call = self.calls.get(call_id)
        if call is None or call.status is CallStatus.DIALING:
            logger.debug("abandon of call %s that is not waiting", call_id)
            return []
        freed = self._withdraw_all(call, now, "abandoned")
        if call.is_callback:
            self._callback_failed(call, final=True)
        else:
            self._leave_queue(call, "abandoned", now)
        self._forget(call)
        for agent in freed:
            self._route_agent(agent, now)
        return self._flush()

    def set_priority(self, call_id: str, priority: int, now: float) -> list[Output]:
        """Change a waiting caller's priority; the new order applies to the next decision."""
        call = self._waiting(call_id)
        runtime = self.queues[call.queue_id]
        previous = call.priority
        call.priority = priority
        call.rank = runtime.rank_of(priority, call.anchor)
        if call.pooled:
            call.wait_class.push(call)  # re-keyed; the old heap entry is now stale
        self._out.append(
            QueuePriorityChanged(
                call_id=call_id, queue_id=call.queue_id, previous=previous, priority=priority
            )
        )
        self._route_call(call, now)
        return self._flush()

    def move_call(self, call_id: str, queue_id: str, now: float) -> list[Output]:
        """Move a waiting caller to another queue; their arrival time keeps their place."""
        call = self._waiting(call_id)
        target = self._open_queue(queue_id)
        if queue_id == call.queue_id:
            raise ValueError(f"call {call_id!r} is already in queue {queue_id!r}")
        freed = self._withdraw_all(call, now, "withdrawn")
        if not call.is_callback:
            self._leave_queue(call, "moved", now)
        self._forget(call)
        call.queue_id = queue_id
        call.joined_at = now
        call.step = 0
        call.wait_class = self._class_for(call)  # the caller's own skills come along
        self.router.enter(call.wait_class, call_id)
        call.rank = target.rank_of(call.priority, call.anchor)
        call.excluded.clear()
        call.pending_exit = None
        call.preferred_agent = None
        self.calls[call_id] = call
        target.entries[call_id] = call
        if not call.is_callback:
            self._out.append(
                QueueJoined(
                    call_id=call_id,
                    queue_id=queue_id,
                    priority=call.priority,
                    position=target.position(call),
                    required_skills=MappingProxyType(call.required_skills),
                )
            )
        self._arm_call_timers(call, now)
        self._route_call(call, now)
        for agent in freed:
            self._route_agent(agent, now)
        return self._flush()

    # Offers -------------------------------------------------------------------------------------

    def offer_ringing(self, call_id: str, agent_id: str, now: float) -> list[Output]:
        """The agent's softphone is ringing: the lease now lasts the queue's ring timeout."""
        agent = self._current_offer(call_id, agent_id)
        if agent is None or agent.state is AgentState.RINGING:
            return []
        call = self.calls[call_id]
        self._transition(agent, AgentTrigger.RING, now, "ringing")
        agent.call_id, agent.queue_id = call_id, call.queue_id
        ring_timeout = self.queues[call.queue_id].config.ring_timeout
        self.timers.set(TimerKind.LEASE, agent_id, now + ring_timeout)
        return self._flush()

    def offer_answered(self, call_id: str, agent_id: str, now: float) -> list[Output]:
        """The agent answered: the caller leaves the queue; other ring-all offers are cancelled."""
        agent = self._current_offer(call_id, agent_id)
        if agent is None:
            return [CancelOffer(call_id=call_id, agent_id=agent_id, reason="stale")]
        call = self.calls[call_id]
        runtime = self.queues[call.queue_id]
        ring_seconds = elapsed(call.offers.pop(agent_id, now), now)
        self.timers.cancel(TimerKind.LEASE, agent_id)
        freed = self._withdraw_all(call, now, "answered_elsewhere")
        self._transition(agent, AgentTrigger.ANSWER, now, "answered")
        agent.call_id, agent.queue_id = call_id, call.queue_id
        agent.answered_at = now
        agent.failures = 0
        agent.calls_answered += 1
        call.pending_exit = None
        self._out.append(
            AgentAnswered(
                call_id=call_id,
                agent_id=agent_id,
                queue_id=call.queue_id,
                wait_seconds=elapsed(call.joined_at, now),
                ring_seconds=ring_seconds,
            )
        )
        customer = call.attributes.get(CUSTOMER_KEY)
        if customer is not None and self.settings.sticky_memory > 0:
            self.last_agent[customer] = agent_id
            self.last_agent.move_to_end(customer)
            while len(self.last_agent) > self.settings.sticky_memory:
                self.last_agent.popitem(last=False)
        if call.is_callback:
            call.status = CallStatus.DIALING
            call.callback_attempts += 1
            call.offers = {agent_id: now}  # remembers who is dialling
            runtime.entries.pop(call_id, None)
            self._cancel_call_timers(call_id, TimerKind.ESCALATE, TimerKind.RETRY)
            self._out.append(
                CallbackAttempted(
                    call_id=call_id,
                    queue_id=call.queue_id,
                    agent_id=agent_id,
                    attempt=call.callback_attempts,
                )
            )
            self._out.append(
                DialCallback(
                    call_id=call_id,
                    agent_id=agent_id,
                    queue_id=call.queue_id,
                    destination=call.callback_destination or "",
                    attempt=call.callback_attempts,
                )
            )
        else:
            self._leave_queue(call, "answered", now, agent_id=agent_id)
            self._forget(call)
        for other in freed:
            self._route_agent(other, now)
        return self._flush()

    def offer_failed(
        self, call_id: str, agent_id: str, reason: OfferFailure, now: float
    ) -> list[Output]:
        """The agent's phone did not take the call; it is re-offered to the next agent."""
        agent = self._current_offer(call_id, agent_id)
        if agent is None:
            return []
        self._fail_offer(agent, OfferFailure(reason), now, expired=False)
        return self._flush()

    def offer_claimed_elsewhere(
        self, call_id: str, agent_id: str, held_until: float, now: float
    ) -> list[Output]:
        """Another node holds the agent (the shared store refused the claim) until ``held_until``.

        Not the agent's failure: nothing counts toward auto-pause and no no-answer or rejection
        is reported. The offer is withdrawn, the caller goes to the next agent, and the agent is
        left out of every decision here until ``held_until``, when they are tried again.
        """
        agent = self._current_offer(call_id, agent_id)
        if agent is None:
            return []
        call = self.calls[call_id]
        self._hold(agent, max(held_until, now + MIN_HOLD))
        self._withdraw(call, agent_id, now, "claimed_elsewhere", None)
        if not call.offers:
            self._requeue(call, now)
        return self._flush()

    def call_ended(self, agent_id: str, now: float) -> list[Output]:
        """The agent's call ended: wrap-up (queue's time, or the agent's own) then available."""
        agent = self._agent(agent_id)
        if agent.state is not AgentState.ON_CALL:
            raise IllegalTransitionError(agent_id, agent.state, AgentTrigger.HANG_UP)
        call = self.calls.get(agent.call_id or "")
        if call is not None and call.status is CallStatus.DIALING:
            self.calls.pop(call.call_id, None)  # customer hung up before the callback connected
            self._forget(call)
        talk = now - (agent.answered_at if agent.answered_at is not None else now)
        self._end_call(agent, now, "call_ended", talk=talk)
        self._route_agent(agent, now)
        return self._flush()

    # Agents -------------------------------------------------------------------------------------

    def agent_login(self, agent_id: str, now: float, reason: str = "login") -> list[Output]:
        if agent_id in self.retiring_agents:
            raise KeyError(f"unknown agent {agent_id!r} (removed from the configuration)")
        agent = self._agent(agent_id)
        self._transition(agent, AgentTrigger.LOGIN, now, reason)
        self._back_to_work(agent, now)
        return self._flush()

    def agent_logout(self, agent_id: str, now: float, reason: str = "logout") -> list[Output]:
        """Log out now, or when the current call ends."""
        agent = self._agent(agent_id)
        if agent.state is AgentState.ON_CALL:
            agent.pending_logout = True
            return []
        self._leave_work(agent, AgentTrigger.LOGOUT, now, reason)
        return self._flush()

    def agent_pause(self, agent_id: str, reason: str, now: float) -> list[Output]:
        """Pause now (a pending offer is withdrawn), or when the current call ends."""
        if not reason:
            raise ValueError("a pause needs a reason")
        agent = self._agent(agent_id)
        if agent.state is AgentState.ON_CALL:
            agent.pending_pause = reason
            return []
        self._leave_work(agent, AgentTrigger.PAUSE, now, reason)
        return self._flush()

    def agent_unpause(self, agent_id: str, now: float) -> list[Output]:
        agent = self._agent(agent_id)
        if agent.pending_pause is not None and agent.state is AgentState.ON_CALL:
            agent.pending_pause = None
            return []
        self._transition(agent, AgentTrigger.UNPAUSE, now, "unpause")
        agent.failures = 0
        self._back_to_work(agent, now)
        return self._flush()

    # Restoring a previous run -------------------------------------------------------------------

    def restore_agent(
        self,
        agent_id: str,
        state: AgentState,
        now: float,
        *,
        reason: str = "restored",
        wrap_up_left: float = 0.0,
    ) -> list[Output]:
        """Put a logged-out agent back in the state a previous run of this node left them in.

        ``state`` is what the shared store last saw: ``available``, ``paused`` (with the pause
        ``reason``) or ``wrap_up`` (``wrap_up_left`` seconds to go). An agent who was offered a
        call or talking is restored available: that call was on the node that went away.
        """
        agent = self._agent(agent_id)
        if agent.state is not AgentState.LOGGED_OUT:
            raise IllegalTransitionError(agent_id, agent.state, AgentTrigger.LOGIN)
        if state is AgentState.LOGGED_OUT:
            return []
        if state is AgentState.PAUSED:
            self._transition(agent, AgentTrigger.RESTORE_PAUSED, now, reason)
            return self._flush()
        if state is AgentState.WRAP_UP and wrap_up_left > 0:
            self._transition(agent, AgentTrigger.RESTORE_WRAP_UP, now, "restored")
            agent.wrap_up_until = now + wrap_up_left
            self.timers.set(TimerKind.WRAP_UP, agent_id, agent.wrap_up_until)
            return self._flush()
        self._transition(agent, AgentTrigger.LOGIN, now, "restored")
        self._route_agent(agent, now)
        return self._flush()

    # Queries ------------------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        return self.timers.next_deadline()

    def agent_state(self, agent_id: str) -> AgentState:
        return self._agent(agent_id).state

    def pending_pause(self, agent_id: str) -> str | None:
        """The reason of a pause asked for during the agent's call, applied when it ends."""
        return self._agent(agent_id).pending_pause

    def agent_call(self, agent_id: str) -> str | None:
        """The call offered to or connected with the agent."""
        return self._agent(agent_id).call_id

    def waiting(self, queue_id: str) -> tuple[str, ...]:
        """Call ids in the queue, in the order they will be served (callbacks included)."""
        entries = self._queue(queue_id).entries.values()
        return tuple(c.call_id for c in sorted(entries, key=WaitingCall.order_key))

    def position(self, call_id: str) -> int:
        call = self._waiting(call_id)
        return self.queues[call.queue_id].position(call)

    def estimated_wait(self, call_id: str, now: float) -> float | None:
        return self.router.estimated_wait(self._waiting(call_id), now)

    def service_level(self, queue_id: str, now: float) -> float:
        return self._queue(queue_id).service_level.percent(now)

    def announce(self, call_id: str, now: float) -> list[Output]:
        """Position / hold-time data for ``call_id`` now, as its periodic announcement would."""
        self._announce(self._waiting(call_id), now)
        return self._flush()
