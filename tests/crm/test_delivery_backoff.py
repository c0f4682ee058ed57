"""Webhook retry schedule and the per-endpoint circuit breaker, on a fake clock."""

from __future__ import annotations

import random

import pytest

from crm_bridge.backoff import (
    TRANSITIONS,
    BreakerState,
    BreakerTransitionError,
    BreakerTrigger,
    CircuitBreaker,
    RetryPolicy,
)


class FixedRandom:
    """An RNG that always returns the same draw."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def test_schedule_doubles_up_to_the_cap_then_gives_up() -> None:
    policy = RetryPolicy(initial_delay=5, multiplier=2, max_delay=60, jitter=0, max_attempts=7)
    delays = [policy.delay(attempt, FixedRandom(0.5)) for attempt in range(1, 8)]
    assert delays == [5, 10, 20, 40, 60, 60, None]


def test_jitter_draws_from_the_injected_rng_within_its_band() -> None:
    policy = RetryPolicy(initial_delay=10, multiplier=3, max_delay=1000, jitter=0.5)
    assert policy.delay(2, FixedRandom(0.0)) == 30.0  # no reduction
    assert policy.delay(2, FixedRandom(0.999999)) == pytest.approx(15.0, abs=1e-4)
    rng = random.Random(7)
    draws = [policy.delay(3, rng) for _ in range(200)]
    assert all(d is not None and 45.0 < d <= 90.0 for d in draws)
    assert len(set(draws)) > 100  # actually spread, not constant
    # Same seed, same schedule: reproducible in tests and simulations.
    again = random.Random(7)
    assert [policy.delay(3, again) for _ in range(200)] == draws


def test_full_jitter_spans_zero_to_the_delay() -> None:
    policy = RetryPolicy(initial_delay=8, jitter=1.0)
    assert policy.delay(1, FixedRandom(0.75)) == 2.0


def test_retry_after_is_a_lower_bound() -> None:
    policy = RetryPolicy(initial_delay=5, jitter=0, max_delay=60)
    assert policy.delay(1, FixedRandom(0), retry_after=120) == 120
    assert policy.delay(3, FixedRandom(0), retry_after=1) == 20
    assert policy.next_attempt_at(1, now=1000.0, rng=FixedRandom(0)) == 1005.0
    assert RetryPolicy(max_attempts=1).next_attempt_at(1, 1000.0, FixedRandom(0)) is None


def test_huge_attempt_numbers_do_not_overflow() -> None:
    policy = RetryPolicy(initial_delay=1, multiplier=10, max_delay=30, max_attempts=10_000)
    assert policy.base_delay(5000) == 30


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_delay": 0},
        {"multiplier": 0.5},
        {"initial_delay": 10, "max_delay": 5},
        {"jitter": 1.5},
        {"max_attempts": 0},
    ],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_breaker_opens_after_consecutive_failures_and_rejects_while_open() -> None:
    breaker = CircuitBreaker("https://crm.example/hook", failure_threshold=3, cooldown=30)
    for _ in range(2):
        permit = breaker.acquire(now=0)
        assert permit is not None
        assert breaker.record_failure(permit, now=0) is None
    # A success in between resets the count.
    permit = breaker.acquire(now=1)
    assert permit is not None
    breaker.record_success(permit, now=1)
    assert breaker.consecutive_failures == 0

    transition = None
    for _ in range(3):
        permit = breaker.acquire(now=2)
        assert permit is not None
        transition = breaker.record_failure(permit, now=2)
    assert transition is not None
    assert (transition.before, transition.after, transition.trigger) == (
        BreakerState.CLOSED,
        BreakerState.OPEN,
        BreakerTrigger.TRIP,
    )
    assert breaker.state is BreakerState.OPEN
    assert breaker.next_deadline() == 32
    assert breaker.acquire(now=31.9) is None


def open_breaker(now: float = 0.0, **kwargs: float) -> CircuitBreaker:
    breaker = CircuitBreaker("crm", failure_threshold=1, **kwargs)  # type: ignore[arg-type]
    permit = breaker.acquire(now)
    assert permit is not None
    breaker.record_failure(permit, now)
    assert breaker.state is BreakerState.OPEN
    return breaker


def test_half_open_allows_one_probe_and_closes_on_success() -> None:
    breaker = open_breaker(cooldown=30)
    probe = breaker.acquire(now=30)
    assert breaker.state is BreakerState.HALF_OPEN
    assert probe is not None and probe.probe
    assert breaker.acquire(now=30) is None  # only one probe at a time
    transition = breaker.record_success(probe, now=31)
    assert transition is not None and transition.after is BreakerState.CLOSED
    permit = breaker.acquire(now=31)
    assert permit is not None and not permit.probe


def test_failed_probe_reopens_with_a_doubled_capped_cooldown() -> None:
    breaker = open_breaker(cooldown=30, max_cooldown=100)
    now = 30.0
    for cooldown in (60, 100, 100):  # doubled, then capped
        probe = breaker.acquire(now)
        assert probe is not None and probe.probe
        transition = breaker.record_failure(probe, now=now + 5)
        assert transition is not None and transition.trigger is BreakerTrigger.PROBE_FAILED
        assert breaker.next_deadline() == now + 5 + cooldown
        now = now + 5 + cooldown
    probe = breaker.acquire(now)
    assert probe is not None
    breaker.record_success(probe, now)
    # After a success, the next opening starts again from the base cool-down.
    permit = breaker.acquire(now)
    assert permit is not None
    breaker.record_failure(permit, now)
    assert breaker.next_deadline() == now + 30


def test_timer_moves_open_to_half_open_without_a_request() -> None:
    breaker = open_breaker(cooldown=10)
    assert breaker.handle_timer(now=9.9) is None
    transition = breaker.handle_timer(now=10)
    assert transition is not None and transition.after is BreakerState.HALF_OPEN
    assert breaker.next_deadline() is None


def test_results_of_requests_sent_before_the_breaker_tripped_are_ignored() -> None:
    breaker = CircuitBreaker("crm", failure_threshold=1, cooldown=10)
    in_flight = breaker.acquire(now=0)
    tripping = breaker.acquire(now=0)
    assert in_flight is not None and tripping is not None
    breaker.record_failure(tripping, now=1)
    assert breaker.state is BreakerState.OPEN
    # The late success neither closes the breaker nor raises.
    assert breaker.record_success(in_flight, now=2) is None
    assert breaker.state is BreakerState.OPEN
    assert breaker.stale_results == 1


def test_a_cancelled_probe_frees_its_slot() -> None:
    breaker = open_breaker(cooldown=10)
    probe = breaker.acquire(now=10)
    assert probe is not None
    breaker.record_cancelled(probe)
    assert breaker.acquire(now=10) is not None


def test_reset_closes_from_any_state() -> None:
    breaker = open_breaker(cooldown=10)
    assert breaker.reset(now=1).after is BreakerState.CLOSED
    assert breaker.reset(now=2).before is BreakerState.CLOSED
    breaker = open_breaker(cooldown=10)
    breaker.handle_timer(now=10)
    assert breaker.reset(now=11).before is BreakerState.HALF_OPEN


def test_transitions_outside_the_table_are_errors() -> None:
    breaker = CircuitBreaker("crm")
    with pytest.raises(BreakerTransitionError, match="probe_succeeded in closed"):
        breaker._apply(BreakerTrigger.PROBE_SUCCEEDED, now=0)
    missing = {
        (state, trigger)
        for state in BreakerState
        for trigger in BreakerTrigger
        if (state, trigger) not in TRANSITIONS
    }
    assert missing == {
        (BreakerState.CLOSED, BreakerTrigger.COOLDOWN_ELAPSED),
        (BreakerState.CLOSED, BreakerTrigger.PROBE_SUCCEEDED),
        (BreakerState.CLOSED, BreakerTrigger.PROBE_FAILED),
        (BreakerState.OPEN, BreakerTrigger.TRIP),
        (BreakerState.OPEN, BreakerTrigger.PROBE_SUCCEEDED),
        (BreakerState.OPEN, BreakerTrigger.PROBE_FAILED),
        (BreakerState.HALF_OPEN, BreakerTrigger.TRIP),
        (BreakerState.HALF_OPEN, BreakerTrigger.COOLDOWN_ELAPSED),
    }
