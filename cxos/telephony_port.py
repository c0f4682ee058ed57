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
- ``announce``, ``route_call`` and ``offer_callback`` concern the waiting caller and go to the
  component that owns the caller's flow (`CallerSide`).

Callbacks: ``dial_callback`` needs a call placed to the customer's number through a trunk, which
the call API cannot place yet (it rings registered softphones only). The agent's leg is released
and the attempt reported as not connected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from acd.actions import CancelReason, RouteReason
from acd.model import OfferFailure
from telephony.calls import AgentLeg, Call, RingFailure

__all__ = ["AcdReports", "CallTelephonyPort", "CallerSide"]

logger = logging.getLogger(__name__)


class AcdReports(Protocol):
    """The report methods of :class:`acd.service.AcdService`."""

    def ringing(self, call_id: str, agent_id: str) -> None: ...

    def answered(self, call_id: str, agent_id: str) -> None: ...

    def ring_failed(self, call_id: str, agent_id: str, reason: OfferFailure) -> None: ...

    def agent_hung_up(self, agent_id: str) -> None: ...

    def caller_hung_up(self, call_id: str) -> None: ...

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
        if call is None or call.ended:
            # The caller left while the ACD decided; the hang-up report withdraws the offer.
            self._reports().caller_hung_up(call_id)
            return
        # The routing attributes stay in the event log for the agent's desktop: the call API
        # does not put headers on the INVITE to the softphone yet.
        ring = _Ring(call_id=call_id, agent_id=agent_id, sip_user=sip_user)
        self._rings[key] = ring
        self._by_phone[(call_id, sip_user)] = ring
        ring.task = self._spawn(self._ring(ring, call, ring_timeout))

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
        logger.warning(
            "callback %s to %s (attempt %d) not dialled: calls out through a trunk are not "
            "supported by the call API yet",
            call_id,
            destination,
            attempt,
        )
        ring = self._take(call_id, agent_id)
        if ring is not None and ring.leg is not None:
            ring.leg.hangup()
        self._reports().callback_result(call_id, False)

    # ------------------------------------------------------------------ telephony events

    def on_ringing(self, call_id: str, sip_user: str) -> None:
        """``call.ringing``: the phone of ``sip_user`` rings for ``call_id`` (180/183)."""
        ring = self._by_phone.get((call_id, sip_user))
        if ring is not None and not ring.ringing_reported and ring.leg is None:
            ring.ringing_reported = True
            self._reports().ringing(call_id, ring.agent_id)

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

    # ------------------------------------------------------------------ tasks

    async def _ring(self, ring: _Ring, call: Call, ring_timeout: float) -> None:
        key = (ring.call_id, ring.agent_id)
        try:
            outcome = await call.originate_agent(ring.sip_user, ring_timeout)
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

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("telephony port task failed", exc_info=task.exception())
