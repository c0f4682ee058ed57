"""The ACD engine's entry points for calls that are not plain queue offers, sans-IO.

Callbacks (a caller who left the line keeping their place, dialled back once an agent takes
it), callers transferred straight to an agent's phone, and the agents' own calls outside the
queues; with the helpers the whole engine shares. :class:`acd.engine.AcdEngine` builds on this
class; the conventions are its own (``now`` passed in, actions and events returned in order).
"""

from __future__ import annotations

from collections.abc import Mapping

from acd.actions import CancelOffer, CancelReason
from acd.agent_state import AgentState, AgentTrigger, IllegalTransitionError, next_state
from acd.agents import AgentRuntime
from acd.core import Output, UnknownCallError
from acd.events import (
    AgentAnswered,
    CallbackCompleted,
    CallbackFailed,
    CallbackRequested,
)
from acd.model import call_skills
from acd.reconfigure import Reconfiguration
from acd.timers import TimerKind, elapsed
from acd.waiting import CallStatus, QueueRuntime, WaitingCall


class CallEntryPoints(Reconfiguration):
    # Callbacks ------------------------------------------------------------------------------------

    def request_callback(self, call_id: str, destination: str, now: float) -> list[Output]:
        """The caller hangs up keeping their place; the ACD calls ``destination`` back."""
        if not destination:
            raise ValueError("callback destination is empty")
        call = self._waiting(call_id)
        if call.is_callback:
            raise ValueError(f"call {call_id!r} is already a callback")
        freed = self._withdraw_all(call, now, "withdrawn")
        runtime = self.queues[call.queue_id]
        self._leave_queue(call, "callback", now)
        call.callback_destination = destination
        call.pending_exit = None
        self._unstick(call)
        self._cancel_call_timers(call_id, TimerKind.ANNOUNCE, TimerKind.MAX_WAIT)
        self._out.append(
            CallbackRequested(
                call_id=call_id,
                queue_id=call.queue_id,
                destination=destination,
                position=runtime.position(call),
            )
        )
        self._route_call(call, now)
        for agent in freed:
            self._route_agent(agent, now)
        return self._flush()

    def callback_result(self, call_id: str, connected: bool, now: float) -> list[Output]:
        """Outcome of dialling a callback customer after the agent answered."""
        call = self.calls.get(call_id)
        if call is None or call.status is not CallStatus.DIALING:
            raise UnknownCallError(f"call {call_id!r} is not a callback being dialled")
        agent = self.agents[self._dialing_agent(call)]
        call.offers.clear()
        runtime = self.queues[call.queue_id]
        if connected:
            self._out.append(
                CallbackCompleted(
                    call_id=call_id,
                    queue_id=call.queue_id,
                    agent_id=agent.agent_id,
                    attempts=call.callback_attempts,
                    wait_seconds=elapsed(call.joined_at, now),
                )
            )
            self.calls.pop(call_id, None)
            self._forget(call)
            return self._flush()
        # The agent was on the line only for the dialling: no talk time, no wrap-up.
        self._end_call(agent, now, "callback_unanswered", talk=None)
        final = call.callback_attempts >= runtime.config.callback_attempts
        self._callback_failed(call, final=final)
        if final:
            self._forget(call)
        else:
            call.status = CallStatus.WAITING
            call.held_until = now + runtime.config.callback_retry
            runtime.entries[call_id] = call
            self.timers.set(TimerKind.CALLBACK_RETRY, call_id, call.held_until)
        self._route_agent(agent, now)
        return self._flush()

    # Transfers and the agents' own calls ----------------------------------------------------------

    def transfer_ringing(
        self, call_id: str, agent_id: str, ring_seconds: float, now: float
    ) -> list[Output]:
        """The caller of ``call_id`` is being transferred to ``agent_id``'s phone, which rings
        for at most ``ring_seconds``: a free agent is held out of routing meanwhile (a lease:
        released by :meth:`transfer_answered`, :meth:`transfer_failed` or the end of the ring
        time), so that no queue call rings the same phone. An agent who is not free (busy,
        paused, held by another node) is left as they are."""
        agent = self._agent(agent_id)
        if not agent.free or agent.transfer_call is not None:
            return []
        agent.transfer_call = call_id
        self._hold(agent, now + max(0.0, ring_seconds))
        return self._flush()

    def transfer_failed(self, call_id: str, agent_id: str, now: float) -> list[Output]:
        """The transfer of ``call_id`` to ``agent_id``'s phone was not answered: the agent held
        for it is routed again. A stale report (another transfer, or none) changes nothing."""
        agent = self._agent(agent_id)
        if agent.transfer_call != call_id:
            return []
        self._end_transfer_hold(agent)
        self._route_agent(agent, now)
        return self._flush()

    def transfer_answered(
        self, call_id: str, agent_id: str, queue_id: str, ring_seconds: float, now: float
    ) -> list[Output]:
        """A caller of ``queue_id`` was transferred to ``agent_id``'s phone (not offered by the
        ACD: another agent's blind transfer rings it directly) and the agent answered. They are
        on that call from now, so its talk time from here on is theirs; its end is reported with
        :meth:`call_ended`. Raises :class:`IllegalTransitionError` unless they were available
        (held for this transfer, or not held at all)."""
        agent = self._agent(agent_id)
        if agent.transfer_call == call_id:
            self._end_transfer_hold(agent)
        if agent.state is not AgentState.AVAILABLE or agent.held_until is not None:
            raise IllegalTransitionError(agent_id, agent.state, AgentTrigger.TAKE_TRANSFER)
        agent.call_id = call_id  # named by the state change
        self._transition(agent, AgentTrigger.TAKE_TRANSFER, now, "transferred")
        agent.queue_id = queue_id if queue_id in self.queues else None
        agent.answered_at = now
        agent.failures = 0
        agent.calls_answered += 1
        self._out.append(
            AgentAnswered(
                call_id=call_id,
                agent_id=agent_id,
                queue_id=queue_id,
                wait_seconds=0.0,  # the caller waited for the first agent, not for this one
                ring_seconds=ring_seconds,
            )
        )
        return self._flush()

    def direct_call_started(self, agent_id: str, call_id: str, now: float) -> list[Output]:
        """``agent_id`` is on a call of their own, outside the queues (see
        :mod:`acd.agent_state`): ``on_call`` until :meth:`direct_call_ended`, so that no queue
        call is offered meanwhile; a wrap-up in progress ends. A paused or logged-out agent
        stays so, but goes ``on_call`` if unpaused or logged in before that call ends.
        Raises :class:`IllegalTransitionError` while an offer is pending or on another call."""
        agent = self._agent(agent_id)
        if agent.state in (AgentState.PAUSED, AgentState.LOGGED_OUT):
            agent.own_call = call_id
            return []
        next_state(agent_id, agent.state, AgentTrigger.DIRECT_CALL)  # raises before any change
        self._start_own_call(agent, call_id, now)
        return self._flush()

    def direct_call_ended(self, agent_id: str, call_id: str, now: float) -> list[Output]:
        """The agent's own call ``call_id`` ended: no wrap-up (no queue call was handled), then
        a pause or logout asked for meanwhile, else available and routed."""
        agent = self._agent(agent_id)
        if agent.own_call == call_id:
            agent.own_call = None  # ended while they were paused or logged out
            return []
        if agent.state is not AgentState.ON_CALL or agent.call_id != call_id:
            raise IllegalTransitionError(agent_id, agent.state, AgentTrigger.HANG_UP_NO_WRAP_UP)
        self._end_call(agent, now, "direct_call_ended", talk=None)
        self._route_agent(agent, now)
        return self._flush()

    def _start_own_call(self, agent: AgentRuntime, call_id: str, now: float) -> None:
        agent.own_call = None
        self.timers.cancel(TimerKind.WRAP_UP, agent.agent_id)
        agent.call_id = call_id  # named by the state change
        self._transition(agent, AgentTrigger.DIRECT_CALL, now, "direct_call")
        agent.queue_id = agent.wrap_up_until = None
        agent.answered_at = now

    def _back_to_work(self, agent: AgentRuntime, now: float) -> None:
        """The agent just became available (login, unpause): on the call of their own they
        placed meanwhile, if it goes on, else routed."""
        if agent.own_call is not None:
            self._start_own_call(agent, agent.own_call, now)
        else:
            self._route_agent(agent, now)

    def _end_transfer_hold(self, agent: AgentRuntime) -> None:
        agent.transfer_call = None
        if agent.held_until is not None:
            self._release_hold(agent)

    # Restoring a previous run's callbacks -------------------------------------------------------

    def restore_callback(
        self,
        call_id: str,
        queue_id: str,
        destination: str,
        now: float,
        *,
        waited: float = 0.0,
        priority: int = 0,
        attributes: Mapping[str, str] | None = None,
        attempts: int = 0,
        required_skills: Mapping[str, int] | None = None,
    ) -> list[Output]:
        """A callback a previous run of this node had not completed: back in ``queue_id``,
        keeping its place (it has waited ``waited`` seconds) and its attempts so far.

        No ``callback.requested`` again: the request was reported when the caller made it.
        """
        if call_id in self.calls:
            raise ValueError(f"call {call_id!r} is already queued")
        if not destination:
            raise ValueError("callback destination is empty")
        runtime = self._open_queue(queue_id)
        arrival = now - max(0.0, waited)
        needs = call_skills(required_skills)
        call = WaitingCall(
            call_id=call_id,
            queue_id=queue_id,
            priority=priority,
            attributes=dict(attributes or {}),
            anchor=arrival,
            joined_at=arrival,
            seq=self._next_seq(),
            wait_class=self.router.class_of(runtime, 0, needs),
            rank=runtime.rank_of(priority, arrival),
            callback_destination=destination,
            callback_attempts=attempts,
            required=needs,
        )
        self.router.enter(call.wait_class, call_id)
        self.calls[call_id] = call
        runtime.entries[call_id] = call
        escalation = runtime.config.escalation
        if escalation:
            # Counted from its arrival: steps already due fire at the next timer, in order.
            self.timers.set(TimerKind.ESCALATE, call_id, arrival + escalation[0].after)
        self._route_call(call, now)
        return self._flush()

    # Helpers ------------------------------------------------------------------------------------

    def _waiting(self, call_id: str) -> WaitingCall:
        call = self.calls.get(call_id)
        if call is None or call.queue_id not in self.queues or call.status is CallStatus.DIALING:
            raise UnknownCallError(f"call {call_id!r} is not waiting in a queue")
        if call.call_id not in self.queues[call.queue_id].entries:
            raise UnknownCallError(f"call {call_id!r} is not waiting in a queue")
        return call

    def _callback_failed(self, call: WaitingCall, *, final: bool) -> None:
        self._out.append(
            CallbackFailed(
                call_id=call.call_id,
                queue_id=call.queue_id,
                attempts=call.callback_attempts,
                final=final,
            )
        )

    def _dialing_agent(self, call: WaitingCall) -> str:
        return next(iter(call.offers))

    def _withdraw_all(
        self, call: WaitingCall, now: float, reason: CancelReason
    ) -> list[AgentRuntime]:
        """Cancel every pending offer of ``call``; the agents are available again (not routed)."""
        freed = []
        for agent_id in list(call.offers):
            cancel = CancelOffer(call_id=call.call_id, agent_id=agent_id, reason=reason)
            freed.append(self._withdraw(call, agent_id, now, f"offer_{reason}", cancel))
        call.status = CallStatus.WAITING if call.status is CallStatus.OFFERED else call.status
        return freed

    def _end_call(self, agent: AgentRuntime, now: float, reason: str, talk: float | None) -> None:
        queue_id = agent.queue_id
        runtime = self.queues.get(queue_id or "")
        if talk is not None:
            agent.talk_time += talk
            if runtime is not None:
                runtime.talk.record(talk)
        wrap = agent.profile.wrapuptime
        if wrap is None:
            wrap = runtime.config.wrapuptime if runtime is not None else 0.0
        if talk is not None and wrap > 0:
            self._transition(agent, AgentTrigger.HANG_UP, now, reason)
            agent.queue_id = queue_id
            agent.wrap_up_until = now + wrap
            self.timers.set(TimerKind.WRAP_UP, agent.agent_id, agent.wrap_up_until)
        elif not self._leave_as_asked(
            agent, now, AgentTrigger.HANG_UP_AND_LOGOUT, AgentTrigger.HANG_UP_AND_PAUSE
        ):
            self._transition(agent, AgentTrigger.HANG_UP_NO_WRAP_UP, now, reason)

    def _open_queue(self, queue_id: str) -> QueueRuntime:
        """A queue callers may join: configured, not removed by a reload."""
        if queue_id in self.retired_queues:
            raise KeyError(f"unknown queue {queue_id!r} (removed from the configuration)")
        return self._queue(queue_id)

    def _queue(self, queue_id: str) -> QueueRuntime:
        try:
            return self.queues[queue_id]
        except KeyError:
            raise KeyError(f"unknown queue {queue_id!r}") from None
