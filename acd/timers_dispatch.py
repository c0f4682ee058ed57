"""What the engine does when its timers fire: leases, wrap-up, escalation, announcements."""

from __future__ import annotations

from acd.actions import Announce, OfferCallbackChoice
from acd.agent_state import OFFER_STATES, AgentState, AgentTrigger
from acd.agents import AgentRuntime
from acd.core import EngineCore, Output
from acd.events import QueueEscalated, QueuePosition
from acd.model import OfferFailure
from acd.timers import TimerKind, elapsed
from acd.waiting import CallStatus, WaitingCall


class TimerHandlers(EngineCore):
    def on_timer(self, now: float) -> list[Output]:
        """Run every timer due at ``now``, earliest first."""
        while (due := self.timers.pop_due(now)) is not None:
            kind, key = due
            if kind is TimerKind.LEASE:
                self._lease_expired(key, now)
            elif kind is TimerKind.WRAP_UP:
                self._wrap_up_done(key, now)
            elif kind is TimerKind.HELD:
                agent = self.agents[key]
                agent.transfer_call = None  # a transfer's ring ended without any report
                self._release_hold(agent)
                self._route_agent(agent, now)
            else:
                call = self.calls.get(key)
                if call is not None:
                    self._call_timer(kind, call, now)
        return self._flush()

    def _arm_call_timers(self, call: WaitingCall, now: float) -> None:
        config = self.queues[call.queue_id].config
        if config.escalation:
            self.timers.set(TimerKind.ESCALATE, call.call_id, now + config.escalation[0].after)
        if call.is_callback:
            return
        if config.max_wait is not None:
            self.timers.set(TimerKind.MAX_WAIT, call.call_id, now + config.max_wait)
        if config.announce_frequency is not None:
            self.timers.set(TimerKind.ANNOUNCE, call.call_id, now + config.announce_frequency)

    def _lease_expired(self, agent_id: str, now: float) -> None:
        agent = self.agents[agent_id]
        if agent.state in OFFER_STATES:
            self._fail_offer(agent, OfferFailure.NO_ANSWER, now, expired=True)

    def _wrap_up_done(self, agent_id: str, now: float) -> None:
        agent = self.agents[agent_id]
        if agent.state is not AgentState.WRAP_UP:
            return
        if not self._leave_as_asked(agent, now, AgentTrigger.LOGOUT, AgentTrigger.PAUSE):
            self._transition(agent, AgentTrigger.WRAP_UP_DONE, now, "wrap_up_done")
            self._route_agent(agent, now)

    def _leave_as_asked(
        self, agent: AgentRuntime, now: float, logout: AgentTrigger, pause: AgentTrigger
    ) -> bool:
        """Apply the logout (first) or pause asked for during the agent's call, now that the
        call or its wrap-up is over, with the ``logout`` or ``pause`` trigger of that moment.
        False if neither was asked for (nothing changes)."""
        if agent.pending_logout:
            agent.pending_logout = False
            agent.pending_pause = None
            self._transition(agent, logout, now, "logout")
            return True
        if agent.pending_pause is not None:
            reason, agent.pending_pause = agent.pending_pause, None
            self._transition(agent, pause, now, reason)
            return True
        return False

    def _call_timer(self, kind: TimerKind, call: WaitingCall, now: float) -> None:
        runtime = self.queues[call.queue_id]
        config = runtime.config
        if kind is TimerKind.ESCALATE:
            self._escalate(call, now)
        elif kind is TimerKind.MAX_WAIT:
            self._exit(call, "timeout", config.exit_destination, now)
        elif kind is TimerKind.STICKY:
            self._unstick(call)
            self._route_call(call, now)
        elif kind is TimerKind.RETRY:
            call.excluded = {a: t for a, t in call.excluded.items() if t > now}
            if call.excluded:
                self.timers.set(TimerKind.RETRY, call.call_id, min(call.excluded.values()))
            self._route_call(call, now)
        elif kind is TimerKind.CALLBACK_RETRY:
            call.held_until = None
            self._route_call(call, now)
        elif kind is TimerKind.ANNOUNCE:
            assert config.announce_frequency is not None
            self.timers.set(TimerKind.ANNOUNCE, call.call_id, now + config.announce_frequency)
            if call.status is CallStatus.WAITING:
                self._announce(call, now)

    def _announce(self, call: WaitingCall, now: float) -> None:
        runtime = self.queues[call.queue_id]
        config = runtime.config
        position = runtime.position(call)
        ewt = self.router.estimated_wait(call, now)
        self._out.append(
            Announce(
                call_id=call.call_id,
                queue_id=call.queue_id,
                position=position if config.announce_position else None,
                ewt_seconds=ewt if config.announce_holdtime else None,
            )
        )
        self._out.append(
            QueuePosition(
                call_id=call.call_id, queue_id=call.queue_id, position=position, ewt_seconds=ewt
            )
        )

    def _escalate(self, call: WaitingCall, now: float) -> None:
        runtime = self.queues[call.queue_id]
        steps = runtime.config.escalation
        if call.step >= len(steps):
            return
        step = steps[call.step]
        call.step += 1
        self._out.append(
            QueueEscalated(
                call_id=call.call_id,
                queue_id=call.queue_id,
                step=call.step,
                wait_seconds=elapsed(call.joined_at, now),
            )
        )
        if call.step < len(steps):
            self.timers.set(
                TimerKind.ESCALATE, call.call_id, call.joined_at + steps[call.step].after
            )
        # The caller's own skills stay required, relaxed as the queue's are (see acd.routing).
        self._place(call, self._class_for(call))
        if not call.is_callback:
            if step.offer_callback:
                self._out.append(OfferCallbackChoice(call_id=call.call_id, queue_id=call.queue_id))
            if step.route_to is not None:
                self._exit(call, "escalated", step.route_to, now)
                return
        self._route_call(call, now)
