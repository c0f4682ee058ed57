"""The ACD's `TelephonyPort` on telephony's call API: agents' softphones rung for waiting callers.

The ACD service asks for an operation and returns; this port starts it and reports the outcome
back through the service's report methods, never awaiting the service itself (it runs one input
at a time and would wait for its own port):

- ``ring_agent`` starts ``Call.originate_agent`` in a task. The softphone's 180/183 is seen as
  the telephony event ``call.ringing`` (`on_ringing`) and reported as ``ringing``; the answered
  leg is kept and reported as ``answered``; a failure is reported as ``ring_failed`` with the
  ACD's name for it (the two layers name ring failures alike: no answer, rejected, busy,
  unregistered).
- ``cancel_ring`` cancels that task (telephony sends CANCEL) or hangs up a leg answered too late.
- ``bridge`` hands the answered leg to the caller's flow, which stops the music and bridges; from
  then on the end of the agent's leg, whoever hangs up, is reported once as ``agent_hung_up``
  (wrap-up follows).
- ``transferred``: an agent's phone moved the caller to another agent's phone (a blind transfer
  by REFER, which telephony carries out on its own); the ACD hears that the new agent answered
  and, once, that their leg ended, so each agent is charged with their own part of the call.
- ``announce``, ``route_call`` and ``offer_callback`` concern the waiting caller and go to the
  component that owns the caller's flow (`CallerSide`).

Callbacks: a call registered as a callback (`expect_callback`, when the caller asks for one) has
no caller on the line, so its agent is rung on their own (`CallerSide.ring_for_callback`). Once
the agent answers, ``dial_callback`` calls the customer out through the trunk
(`CallerSide.call_customer`) while the agent waits on the line, bridges the two when the customer
answers and reports ``callback_result``; a customer who does not answer (or an agent who hangs up
first) ends the agent's leg and is reported as not connected, and the ACD retries as configured.
The callbacks this port knows are the ones registered on this node.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from acd.actions import CancelReason, RouteReason
from acd.model import OfferFailure
from telephony.calls import AgentLeg, Call, CallOutFailure, RingFailure

__all__ = ["AcdReports", "CallTelephonyPort", "CallerSide"]

logger = logging.getLogger(__name__)


class AcdReports(Protocol):
    """The report methods of :class:`acd.service.AcdService`."""

    def ringing(self, call_id: str, agent_id: str) -> None: ...

    def answered(self, call_id: str, agent_id: str) -> None: ...

    def ring_failed(self, call_id: str, agent_id: str, reason: OfferFailure) -> None: ...

    def agent_hung_up(self, agent_id: str) -> None: ...

    def caller_hung_up(self, call_id: str) -> None: ...

    def transfer_answered(
        self, call_id: str, agent_id: str, queue_id: str, ring_seconds: float
    ) -> None: ...

    def transfer_ended(self, call_id: str, agent_id: str) -> None: ...

    def callback_result(self, call_id: str, connected: bool) -> None: ...


class CallerSide(Protocol):
    """What the port needs from the component that runs the callers' calls."""

    def waiting_call(self, call_id: str) -> Call | None:
        """The caller's call while it waits in a queue (None: gone, or not waiting)."""

    def connect(self, call_id: str, agent: AgentLeg) -> bool:
        """Stop what the caller hears and bridge them to ``agent``; False if the caller is gone."""

    def agent_lost(self, call_id: str) -> None:
        """The agent who answered hung up before the bridge: the caller waits again."""

    def announce(
        self, call_id: str, queue_id: str, position: int | None, ewt_seconds: float | None
    ) -> None: ...

    def route(
        self, call_id: str, queue_id: str, destination: str | None, reason: RouteReason
    ) -> None: ...

    def offer_callback(self, call_id: str, queue_id: str) -> None: ...

    async def ring_for_callback(
        self, call_id: str, sip_user: str, ring_timeout: float
    ) -> AgentLeg | RingFailure:
        """Ring an agent for a callback (no caller on the line)."""
        ...

    async def call_customer(self, call_id: str, destination: str) -> Call | CallOutFailure:
        """Call a callback's customer out through the trunk; their answered call, or why not."""
        ...


@dataclass(slots=True, eq=False)
class _Ring:
    """One offer on its way to an agent's phone."""

    call_id: str
    agent_id: str
    sip_user: str
    task: asyncio.Task[None] | None = None
    #: The answered leg, until the ACD bridges it or withdraws the offer.
    leg: AgentLeg | None = None
    ringing_reported: bool = False


class CallTelephonyPort:
    """Implements :class:`acd.telephony_port.TelephonyPort`; ``acd`` is set once the service
    that reports through it exists (the two refer to each other)."""

    def __init__(self, callers: CallerSide) -> None:
        self.callers = callers
        self.acd: AcdReports | None = None
        self._rings: dict[tuple[str, str], _Ring] = {}  # by (call, agent)
        self._by_phone: dict[tuple[str, str], _Ring] = {}  # by (call, SIP user)
        #: Agent legs bridged to callers, by leg id: their end is reported once.
        self._connected: dict[str, str] = {}
        #: Calls registered as callbacks on this node, until connected or given up.
        self._callbacks: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def _reports(self) -> AcdReports:
        if self.acd is None:
            raise RuntimeError("the telephony port has no ACD to report to")
        return self.acd

    # ------------------------------------------------------------------ TelephonyPort

    async def ring_agent(
        self,
        call_id: str,
        agent_id: str,
        sip_user: str,
        ring_timeout: float,
        attributes: Mapping[str, str],
    ) -> None:
        key = (call_id, agent_id)
        if key in self._rings:
            logger.warning("call %s: %s is already being rung", call_id, agent_id)
            return
        call = self.callers.waiting_call(call_id)
        callback = call_id in self._callbacks
        if not callback and (call is None or call.ended):
            # The caller left while the ACD decided; the hang-up report withdraws the offer.
            self._reports().caller_hung_up(call_id)
            return
        # The routing attributes stay in the event log for the agent's desktop: the call API
        # does not put headers on the INVITE to the softphone yet.
        ring = _Ring(call_id=call_id, agent_id=agent_id, sip_user=sip_user)
        self._rings[key] = ring
        self._by_phone[(call_id, sip_user)] = ring
        dial: Callable[[], Awaitable[AgentLeg | RingFailure]]
        if callback:
            dial = partial(self.callers.ring_for_callback, call_id, sip_user, ring_timeout)
        else:
            assert call is not None
            dial = partial(call.originate_agent, sip_user, ring_timeout)
        ring.task = self._spawn(self._ring(ring, dial))

    async def cancel_ring(self, call_id: str, agent_id: str, reason: CancelReason) -> None:
        ring = self._take(call_id, agent_id)
        if ring is None:
            return
        logger.debug("call %s: offer to %s withdrawn (%s)", call_id, agent_id, reason)
        if ring.task is not None and not ring.task.done():
            ring.task.cancel()  # CANCEL to the phone; an answer in flight is hung up
        if ring.leg is not None:
            ring.leg.hangup()

    async def bridge(self, call_id: str, agent_id: str) -> None:
        reports = self._reports()
        ring = self._take(call_id, agent_id)
        leg = ring.leg if ring is not None else None
        if leg is None:
            logger.warning("call %s: no answered leg of %s to bridge", call_id, agent_id)
            reports.agent_hung_up(agent_id)  # the ACD has them on this call: free them
            self.callers.agent_lost(call_id)
            return
        self._connected[leg.leg_id] = agent_id
        self._spawn(self._watch_agent(leg, agent_id))
        if leg.ended:
            self.callers.agent_lost(call_id)
            return
        if not self.callers.connect(call_id, leg):
            leg.hangup()  # the caller is gone; the agent goes to wrap-up as for a short call

    async def announce(
        self, call_id: str, queue_id: str, position: int | None, ewt_seconds: float | None
    ) -> None:
        self.callers.announce(call_id, queue_id, position, ewt_seconds)

    async def route_call(
        self, call_id: str, queue_id: str, destination: str | None, reason: RouteReason
    ) -> None:
        self.callers.route(call_id, queue_id, destination, reason)

    async def offer_callback(self, call_id: str, queue_id: str) -> None:
        self.callers.offer_callback(call_id, queue_id)

    async def dial_callback(
        self, call_id: str, agent_id: str, destination: str, attempt: int
    ) -> None:
        ring = self._take(call_id, agent_id)
        leg = ring.leg if ring is not None else None
        if leg is None or leg.ended:
            logger.info("callback %s: the agent's leg is gone before dialling", call_id)
            self._reports().callback_result(call_id, False)
            return
        logger.info("callback %s: calling %s (attempt %d)", call_id, destination, attempt)
        self._spawn(self._dial_customer(call_id, agent_id, leg, destination))

    # ------------------------------------------------------------------ callbacks

    def expect_callback(self, call_id: str) -> None:
        """``call_id`` becomes a callback: its offers ring the agent with no caller behind."""
        self._callbacks.add(call_id)

    def forget_callback(self, call_id: str) -> None:
        """The callback was connected or given up for good."""
        self._callbacks.discard(call_id)

    async def _dial_customer(
        self, call_id: str, agent_id: str, leg: AgentLeg, destination: str
    ) -> None:
        reports = self._reports()
        dial = asyncio.ensure_future(self.callers.call_customer(call_id, destination))
        agent_gone = asyncio.ensure_future(leg.wait_ended())
        try:
            await asyncio.wait({dial, agent_gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            agent_gone.cancel()
            if not dial.done():
                dial.cancel()  # the agent hung up while the customer's phone rang: CANCEL
        customer = dial.result() if dial.done() and not dial.cancelled() else None
        if not isinstance(customer, Call) or leg.ended or customer.ended:
            if isinstance(customer, Call):
                customer.hangup()
            logger.info("callback %s: %s not connected (%s)", call_id, destination, customer)
            leg.hangup()
            reports.callback_result(call_id, False)
            return
        # From here the call is the agent's as any answered call: its end means wrap-up.
        self._connected[leg.leg_id] = agent_id
        self._spawn(self._watch_agent(leg, agent_id))
        customer.bridge(leg)
        self.forget_callback(call_id)
        reports.callback_result(call_id, True)

    # ------------------------------------------------------------------ telephony events

    def on_ringing(self, call_id: str, sip_user: str) -> None:
        """``call.ringing``: the phone of ``sip_user`` rings for ``call_id`` (180/183)."""
        ring = self._by_phone.get((call_id, sip_user))
        if ring is not None and not ring.ringing_reported and ring.leg is None:
            ring.ringing_reported = True
            self._reports().ringing(call_id, ring.agent_id)

    def transferred(
        self, call_id: str, agent_id: str, leg: AgentLeg, queue_id: str, ring_seconds: float
    ) -> None:
        """The caller of ``call_id`` (from ``queue_id``) was transferred to ``agent_id``, whose
        phone answered as ``leg``."""
        self._reports().transfer_answered(call_id, agent_id, queue_id, ring_seconds)
        self._spawn(self._watch_transfer(leg, call_id, agent_id))

    @property
    def rings_in_progress(self) -> int:
        return len(self._rings)

    def close(self) -> None:
        """Stop every ring (CANCEL) and forget the legs; used when the server stops."""
        for task in list(self._tasks):
            task.cancel()
        for ring in self._rings.values():
            if ring.leg is not None:
                ring.leg.hangup()
        self._rings.clear()
        self._by_phone.clear()
        self._connected.clear()
        self._callbacks.clear()

    # ------------------------------------------------------------------ tasks

    async def _ring(
        self, ring: _Ring, dial: Callable[[], Awaitable[AgentLeg | RingFailure]]
    ) -> None:
        key = (ring.call_id, ring.agent_id)
        try:
            outcome = await dial()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("call %s: ringing %s failed", ring.call_id, ring.sip_user)
            outcome = RingFailure.NO_ANSWER
        ring.task = None
        if self._rings.get(key) is not ring:
            # Withdrawn while the answer came in: the leg is not wanted.
            if isinstance(outcome, AgentLeg):
                outcome.hangup()
            return
        reports = self._reports()
        if isinstance(outcome, RingFailure):
            self._take(ring.call_id, ring.agent_id)
            reports.ring_failed(ring.call_id, ring.agent_id, OfferFailure(outcome.value))
            return
        ring.leg = outcome
        reports.answered(ring.call_id, ring.agent_id)

    def _take(self, call_id: str, agent_id: str) -> _Ring | None:
        ring = self._rings.pop((call_id, agent_id), None)
        if ring is not None and self._by_phone.get((call_id, ring.sip_user)) is ring:
            del self._by_phone[(call_id, ring.sip_user)]
        return ring

    async def _watch_agent(self, leg: AgentLeg, agent_id: str) -> None:
        await leg.wait_ended()
        if self._connected.pop(leg.leg_id, None) is not None:
            self._reports().agent_hung_up(agent_id)

    async def _watch_transfer(self, leg: AgentLeg, call_id: str, agent_id: str) -> None:
        await leg.wait_ended()
        self._reports().transfer_ended(call_id, agent_id)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("telephony port task failed", exc_info=task.exception())
