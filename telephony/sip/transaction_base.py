"""What every transaction shares: stepping its table, and owning its timers.

A transaction never reads a clock or touches a socket. It asks its layer (the `LayerContext`) to
transmit bytes, to hand events to the TU and to arm timers in the layer's deadline heap; the layer
calls back `on_timer` when a deadline passes. Each armed timer carries a token, so re-arming or
cancelling a timer only needs the transaction to forget the old token: the stale heap entry is
skipped when it surfaces (no search through the heap).
"""

from __future__ import annotations

import logging
from typing import Protocol

from telephony.sip.message import SipMessage, SipRequest
from telephony.sip.timers import TransactionTimers
from telephony.sip.transaction_tables import Action, Input, Machine, State, Timer
from telephony.sip.transaction_types import (
    Address,
    TransactionCounters,
    TransactionError,
    TransactionId,
    TuEvent,
)

logger = logging.getLogger(__name__)


class LayerContext(Protocol):
    """The services a transaction gets from the `TransactionLayer` that owns it."""

    counters: TransactionCounters

    def transmit(
        self, data: bytes, destination: Address, transport: str, transaction: TransactionId | None
    ) -> None: ...

    def deliver(self, event: TuEvent) -> None: ...

    def arm(self, transaction: Transaction, timer: Timer, deadline: float) -> int: ...

    def terminated(self, transaction: Transaction) -> None: ...


class Transaction:
    """Base of the client and server transactions: the table-driven step and the timers."""

    __slots__ = (
        "_armed",
        "_due_now",
        "_intervals",
        "_layer",
        "id",
        "machine",
        "method",
        "state",
        "timers",
        "transport",
    )

    def __init__(
        self,
        *,
        machine: Machine,
        layer: LayerContext,
        transaction_id: TransactionId,
        method: str,
        transport: str,
        timers: TransactionTimers,
    ) -> None:
        self.machine = machine
        self.state = machine.initial
        self.id = transaction_id
        self.method = method
        self.transport = transport
        self.timers = timers
        self._layer = layer
        # Timer -> token of its live heap entry.
        self._armed: dict[Timer, int] = {}
        # Current retransmit interval of A, E, G and the 2xx retransmission. Made when first
        # needed, like the list below: a transaction outlives its final response by up to 32 s
        # (timers H, J, L), so each object it holds is one more for the garbage collector to
        # walk, hundreds of thousands of times over at hundreds of calls a second.
        self._intervals: dict[Timer, float] | None = None
        # Zero-length timers (D, I, J, K on reliable transports) fire right after the step.
        self._due_now: list[Timer] | None = None

    @property
    def is_invite(self) -> bool:
        return self.method == "INVITE"

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    def start(self, now: float) -> None:
        """Run the machine's entry actions (the initial send and its timers)."""
        for action in self.machine.entry:
            self._do(action, now, None)
        self._run_due_now(now)

    def fire(self, event: Input | Timer, now: float, message: SipMessage | None = None) -> None:
        """Step the table with `event`; `message` is the message that caused it, if any."""
        transition = self.machine.step(self.state, event)
        previous = self.state
        self.state = transition.target
        if transition.target is not previous:
            live = self.machine.live[transition.target]
            for timer in [t for t in self._armed if t not in live]:
                del self._armed[timer]
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "%s %s: %s -> %s on %s",
                    self.machine.name,
                    self.id,
                    previous.value,
                    transition.target.value,
                    event.value,
                )
        for action in transition.actions:
            self._do(action, now, message)
        if self.state is State.TERMINATED:
            self._armed.clear()
            self._due_now = self._intervals = None
            self._layer.terminated(self)
        else:
            self._run_due_now(now)

    def abandon(self) -> None:
        """End the transaction at once, without its remaining steps or timers (the layer
        forgets it): a new request took its place."""
        self.state = State.TERMINATED
        self._armed.clear()
        self._due_now = self._intervals = None

    def on_timer(self, timer: Timer, token: int, now: float) -> None:
        """Called by the layer when a heap entry comes due; stale entries are ignored."""
        if self._armed.get(timer) != token:
            return
        del self._armed[timer]
        self.fire(timer, now)

    def is_armed(self, timer: Timer, token: int) -> bool:
        return self._armed.get(timer) == token

    def armed_timers(self) -> frozenset[Timer]:
        return frozenset(self._armed)

    # -- timers -------------------------------------------------------------------------------

    def _start_timer(self, timer: Timer, duration: float | None, now: float) -> None:
        if duration is None:
            return  # not armed on this transport (A, E, G on reliable transports)
        if duration <= 0.0:
            self._armed[timer] = -1
            if self._due_now is None:
                self._due_now = []
            self._due_now.append(timer)
            return
        self._armed[timer] = self._layer.arm(self, timer, now + duration)

    def _start_retransmit(self, timer: Timer, interval: float | None, now: float) -> None:
        if interval is None:
            return
        if self._intervals is None:
            self._intervals = {}
        self._intervals[timer] = interval
        self._start_timer(timer, interval, now)

    def _run_due_now(self, now: float) -> None:
        due = self._due_now
        while due and self.state is not State.TERMINATED:
            timer = due.pop(0)
            if self._armed.get(timer) == -1:
                del self._armed[timer]
                self.fire(timer, now)

    # -- actions ------------------------------------------------------------------------------

    def _do(self, action: Action, now: float, message: SipMessage | None) -> None:
        timers = self.timers
        if action is Action.ABSORB:
            if isinstance(message, SipRequest):
                self._layer.counters.absorbed_requests += 1
            elif message is not None:
                self._layer.counters.absorbed_responses += 1
        elif action is Action.START_A:
            self._start_retransmit(Timer.A, timers.a, now)
        elif action is Action.START_B:
            self._start_timer(Timer.B, timers.b, now)
        elif action is Action.START_D:
            self._start_timer(Timer.D, timers.d, now)
        elif action is Action.START_E:
            self._start_retransmit(Timer.E, timers.e, now)
        elif action is Action.START_F:
            self._start_timer(Timer.F, timers.f, now)
        elif action is Action.START_G:
            self._start_retransmit(Timer.G, timers.g, now)
        elif action is Action.START_H:
            self._start_timer(Timer.H, timers.h, now)
        elif action is Action.START_I:
            self._start_timer(Timer.I, timers.i, now)
        elif action is Action.START_J:
            self._start_timer(Timer.J, timers.j, now)
        elif action is Action.START_K:
            self._start_timer(Timer.K, timers.k, now)
        elif action is Action.START_L:
            self._start_timer(Timer.L, timers.l, now)
        elif action is Action.START_M:
            self._start_timer(Timer.M, timers.m, now)
        elif action is Action.START_2XX_RETRANSMIT:
            # §13.3.1.4: the 2xx is retransmitted even over a reliable transport, because a
            # later hop may be UDP.
            self._start_retransmit(Timer.RETRANSMIT_2XX, timers.t1, now)
        elif action is Action.BACKOFF_A:
            self._backoff(Timer.A, timers.next_a(self._interval(Timer.A)), now)
        elif action is Action.BACKOFF_E:
            proceeding = self.state is State.PROCEEDING
            interval = timers.next_e(self._interval(Timer.E), proceeding=proceeding)
            self._backoff(Timer.E, interval, now)
        elif action is Action.BACKOFF_G:
            self._backoff(Timer.G, timers.next_g(self._interval(Timer.G)), now)
        elif action is Action.BACKOFF_2XX:
            interval = timers.next_2xx(self._interval(Timer.RETRANSMIT_2XX))
            self._backoff(Timer.RETRANSMIT_2XX, interval, now)
        else:
            self._do_specific(action, now, message)

    def _interval(self, timer: Timer) -> float:
        assert self._intervals is not None  # a backoff follows the timer's start
        return self._intervals[timer]

    def _backoff(self, timer: Timer, interval: float, now: float) -> None:
        assert self._intervals is not None
        self._intervals[timer] = interval
        self._start_timer(timer, interval, now)

    def _do_specific(self, action: Action, now: float, message: SipMessage | None) -> None:
        raise TransactionError(f"{self.machine.name} has no action {action.value!r}")
