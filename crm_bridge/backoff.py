"""Webhook retry schedule and per-endpoint circuit breaker (sans-IO: ``now`` is passed in).

``RetryPolicy`` says when attempt *n* of a delivery may run again: exponential backoff capped at
``max_delay``, with a random part drawn from an injected RNG so that many deliveries failing
together do not retry together, and never sooner than a receiver's ``Retry-After``
(RFC 9110 §10.2.3). After ``max_attempts`` the delivery goes to the dead-letter view.

``CircuitBreaker`` stops hammering an endpoint that keeps failing. Its states and every allowed
transition are in ``TRANSITIONS``; anything else raises ``BreakerTransitionError``:

    closed    --trip------------> open        (``failure_threshold`` consecutive failures)
    open      --cooldown_elapsed-> half_open   (the cool-down has passed; ``now`` says so)
    half_open --probe_succeeded--> closed
    half_open --probe_failed-----> open        (the next cool-down is twice as long, capped)
    any state --reset-----------> closed      (an administrator's decision)

Requests get a ``Permit`` from ``acquire``; results come back with it. A result whose permit was
issued before the last state change (a request still in flight when the breaker tripped) is
stale: it is counted and otherwise ignored, so it can neither re-open nor close the breaker.
"""

from __future__ import annotations

import enum
import logging
import math
import types
from dataclasses import dataclass
from typing import Protocol

logger = logging.getLogger(__name__)


class RandomSource(Protocol):
    """Uniform floats in [0, 1); ``random.Random`` is one."""

    def random(self) -> float: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with jitter for webhook redelivery."""

    initial_delay: float = 5.0
    """Seconds before the second attempt (before jitter)."""
    multiplier: float = 2.0
    """Each further delay is this many times the previous one."""
    max_delay: float = 3600.0
    """Cap on one delay, seconds."""
    jitter: float = 0.5
    """Fraction of each delay that is random: 0 = fixed, 1 = anywhere in [0, delay)."""
    max_attempts: int = 12
    """Attempts in total (the first included) before dead-lettering."""

    def __post_init__(self) -> None:
        if not self.initial_delay > 0:
            raise ValueError(f"initial_delay must be > 0 s, got {self.initial_delay}")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier}")
        if self.max_delay < self.initial_delay:
            raise ValueError(
                f"max_delay ({self.max_delay} s) is below initial_delay ({self.initial_delay} s)"
            )
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")

    def base_delay(self, attempt: int) -> float:
        """The delay after failed attempt ``attempt`` (1-based) before jitter."""
        if attempt < 1:
            raise ValueError(f"attempts are numbered from 1, got {attempt}")
        # Compare exponents rather than computing a huge power that would overflow.
        exponent = attempt - 1
        if self.multiplier > 1 and exponent * math.log(self.multiplier) >= math.log(
            self.max_delay / self.initial_delay
        ):
            return self.max_delay
        return min(self.max_delay, self.initial_delay * self.multiplier**exponent)

    def delay(
        self, attempt: int, rng: RandomSource, retry_after: float | None = None
    ) -> float | None:
        """Seconds to wait after failed attempt ``attempt``, or None: give up (dead letter).

        With jitter *j* the delay is uniform in ``[(1 - j) * base, base)``. ``retry_after`` is
        the receiver's own request and is honoured as a lower bound (it may exceed max_delay).
        """
        if attempt >= self.max_attempts:
            return None
        base = self.base_delay(attempt)
        wait = base * (1.0 - self.jitter * rng.random())
        if retry_after is not None and retry_after > wait:
            wait = retry_after
        return wait

    def next_attempt_at(
        self, attempt: int, now: float, rng: RandomSource, retry_after: float | None = None
    ) -> float | None:
        """Monotonic time of the next attempt after failed attempt ``attempt``, or None."""
        wait = self.delay(attempt, rng, retry_after)
        return None if wait is None else now + wait


class BreakerState(enum.Enum):
    CLOSED = "closed"
    """Requests flow; consecutive failures are counted."""
    OPEN = "open"
    """No requests until the cool-down ends."""
    HALF_OPEN = "half_open"
    """A few probe requests decide whether to close or re-open."""


class BreakerTrigger(enum.Enum):
    TRIP = "trip"
    COOLDOWN_ELAPSED = "cooldown_elapsed"
    PROBE_SUCCEEDED = "probe_succeeded"
    PROBE_FAILED = "probe_failed"
    RESET = "reset"


_S = BreakerState
_T = BreakerTrigger
TRANSITIONS: types.MappingProxyType[tuple[BreakerState, BreakerTrigger], BreakerState] = (
    types.MappingProxyType(
        {
            (_S.CLOSED, _T.TRIP): _S.OPEN,
            (_S.OPEN, _T.COOLDOWN_ELAPSED): _S.HALF_OPEN,
            (_S.HALF_OPEN, _T.PROBE_SUCCEEDED): _S.CLOSED,
            (_S.HALF_OPEN, _T.PROBE_FAILED): _S.OPEN,
            (_S.CLOSED, _T.RESET): _S.CLOSED,
            (_S.OPEN, _T.RESET): _S.CLOSED,
            (_S.HALF_OPEN, _T.RESET): _S.CLOSED,
        }
    )
)


class BreakerTransitionError(RuntimeError):
    """A trigger that the transition table does not allow in the current state."""

    def __init__(self, endpoint: str, state: BreakerState, trigger: BreakerTrigger) -> None:
        super().__init__(
            f"breaker {endpoint!r}: no transition for {trigger.value} in {state.value}"
        )
        self.state = state
        self.trigger = trigger


@dataclass(frozen=True, slots=True, kw_only=True)
class Permit:
    """Leave to send one request; hand it back with the result."""

    generation: int
    probe: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """A state change, returned so the caller can log it and update metrics."""

    endpoint: str
    before: BreakerState
    after: BreakerState
    trigger: BreakerTrigger
    at: float


class CircuitBreaker:
    """Closed / open / half-open breaker for one webhook endpoint."""

    def __init__(
        self,
        endpoint: str,
        *,
        failure_threshold: int = 5,
        cooldown: float = 30.0,
        max_cooldown: float = 600.0,
        half_open_probes: int = 1,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if not 0 < cooldown <= max_cooldown:
            raise ValueError(f"need 0 < cooldown ({cooldown}) <= max_cooldown ({max_cooldown})")
        if half_open_probes < 1:
            raise ValueError(f"half_open_probes must be >= 1, got {half_open_probes}")
        self.endpoint = endpoint
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.half_open_probes = half_open_probes
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._consecutive_failures = 0
        self._consecutive_opens = 0
        self._open_until: float | None = None
        self._probes_in_flight = 0
        self.stale_results = 0

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive_failures

    def next_deadline(self) -> float | None:
        """When the breaker will next change by itself (end of cool-down), else None."""
        return self._open_until if self._state is BreakerState.OPEN else None

    def handle_timer(self, now: float) -> Transition | None:
        """Move open → half-open once the cool-down is over."""
        if (
            self._state is BreakerState.OPEN
            and self._open_until is not None
            and now >= self._open_until
        ):
            return self._apply(BreakerTrigger.COOLDOWN_ELAPSED, now)
        return None

    def acquire(self, now: float) -> Permit | None:
        """A permit to send now, or None while open (or while half-open probes are out)."""
        self.handle_timer(now)
        if self._state is BreakerState.CLOSED:
            return Permit(generation=self._generation, probe=False)
        if self._state is BreakerState.HALF_OPEN and self._probes_in_flight < self.half_open_probes:
            self._probes_in_flight += 1
            return Permit(generation=self._generation, probe=True)
        return None

    def record_success(self, permit: Permit, now: float) -> Transition | None:
        if self._is_stale(permit):
            return None
        if permit.probe:
            self._probes_in_flight -= 1
            self._consecutive_opens = 0
            return self._apply(BreakerTrigger.PROBE_SUCCEEDED, now)
        self._consecutive_failures = 0
        return None

    def record_failure(self, permit: Permit, now: float) -> Transition | None:
        if self._is_stale(permit):
            return None
        if permit.probe:
            self._probes_in_flight -= 1
            return self._apply(BreakerTrigger.PROBE_FAILED, now)
        self._consecutive_failures += 1
        if self._consecutive_failures >= self.failure_threshold:
            return self._apply(BreakerTrigger.TRIP, now)
        return None

    def record_cancelled(self, permit: Permit) -> None:
        """The request was abandoned without a result: free its probe slot."""
        if not self._is_stale(permit) and permit.probe:
            self._probes_in_flight -= 1

    def reset(self, now: float) -> Transition:
        """Close the breaker whatever its state (an administrator's action)."""
        self._consecutive_opens = 0
        return self._apply(BreakerTrigger.RESET, now)

    def _is_stale(self, permit: Permit) -> bool:
        if permit.generation == self._generation:
            return False
        self.stale_results += 1
        logger.debug(
            "breaker %r: ignoring result of a request from before the last change", self.endpoint
        )
        return True

    def _apply(self, trigger: BreakerTrigger, now: float) -> Transition:
        before = self._state
        after = TRANSITIONS.get((before, trigger))
        if after is None:
            raise BreakerTransitionError(self.endpoint, before, trigger)
        self._state = after
        self._generation += 1
        self._probes_in_flight = 0
        self._consecutive_failures = 0
        if after is BreakerState.OPEN:
            self._consecutive_opens += 1
            # Each re-opening without a success in between doubles the cool-down, up to the cap.
            factor = 2.0 ** min(self._consecutive_opens - 1, 32)
            self._open_until = now + min(self.max_cooldown, self.cooldown * factor)
        else:
            self._open_until = None
        transition = Transition(
            endpoint=self.endpoint, before=before, after=after, trigger=trigger, at=now
        )
        logger.info(
            "breaker %r: %s -> %s (%s)", self.endpoint, before.value, after.value, trigger.value
        )
        return transition
