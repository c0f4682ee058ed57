"""Source guard: blocking after repeated authentication failures, token-bucket rate limits."""

from __future__ import annotations

import logging

import pytest

from telephony.sip.guard import GuardSettings, GuardVerdict, SourceGuard, TrunkLimit
from telephony.sip.registrar_events import SourceBlocked, SourceUnblocked

ATTACKER = "203.0.113.66"
PHONE = "198.51.100.20"


def guard(**overrides: float) -> SourceGuard:
    return SourceGuard(GuardSettings(**overrides))  # type: ignore[arg-type]


def test_fifth_failure_in_the_window_blocks_the_source() -> None:
    g = guard()
    for second in range(4):
        assert g.record_failure(ATTACKER, now=100.0 + second) is None
    assert g.check(ATTACKER, "REGISTER", now=104.0) is GuardVerdict.ALLOW
    event = g.record_failure(ATTACKER, now=104.0)
    assert event == SourceBlocked(
        source=ATTACKER, failures=5, window_seconds=60.0, block_seconds=600.0
    )
    assert g.check(ATTACKER, "REGISTER", now=104.1) is GuardVerdict.BLOCKED
    assert g.check(ATTACKER, "OPTIONS", now=200.0) is GuardVerdict.BLOCKED  # every method
    assert g.check(PHONE, "REGISTER", now=200.0) is GuardVerdict.ALLOW  # nobody else
    assert g.counters.blocks == 1 and g.counters.dropped_blocked == 2


def test_failures_spread_wider_than_the_window_do_not_block() -> None:
    g = guard()
    # One failure every 15 s: at most 4 fall inside any 60 s window.
    for n in range(20):
        assert g.record_failure(PHONE, now=1000.0 + 15.0 * n) is None
    assert not g.is_blocked(PHONE, now=1300.0)


def test_window_slides() -> None:
    g = guard(max_failures=3, failure_window=10.0)
    assert g.record_failure(ATTACKER, now=0.0) is None
    assert g.record_failure(ATTACKER, now=9.0) is None
    # The failure at 0 has left the window at 10: two in the window, not three.
    assert g.record_failure(ATTACKER, now=10.0) is None
    assert g.record_failure(ATTACKER, now=11.0) is not None


def test_block_ends_on_time_with_an_event_and_timer() -> None:
    g = guard(block_seconds=600.0)
    for _ in range(5):
        g.record_failure(ATTACKER, now=50.0)
    assert g.next_timer() == 650.0
    g.check(ATTACKER, "INVITE", now=60.0)
    assert g.expire(now=649.9) == []
    assert g.check(ATTACKER, "INVITE", now=649.9) is GuardVerdict.BLOCKED
    assert g.expire(now=650.0) == [SourceUnblocked(source=ATTACKER, dropped_requests=2)]
    assert g.next_timer() is None
    assert g.check(ATTACKER, "INVITE", now=650.0) is GuardVerdict.ALLOW
    # The count starts again from zero after a block.
    assert g.record_failure(ATTACKER, now=651.0) is None


def test_a_block_that_ran_out_is_lifted_by_check_even_without_expire() -> None:
    g = guard(block_seconds=10.0)
    for _ in range(5):
        g.record_failure(ATTACKER, now=0.0)
    assert g.check(ATTACKER, "REGISTER", now=10.0) is GuardVerdict.ALLOW
    assert g.next_timer() is None


def test_blocks_are_logged_with_the_source_only(caplog: pytest.LogCaptureFixture) -> None:
    g = guard()
    with caplog.at_level(logging.INFO, logger="telephony.sip.guard"):
        for _ in range(5):
            g.record_failure(ATTACKER, now=0.0)
        g.expire(now=601.0)
    warning, info = caplog.records
    assert warning.levelno == logging.WARNING
    assert warning.getMessage() == (
        f"security: blocking source {ATTACKER} for 600 s after 5 authentication failures in 60 s"
    )
    assert info.getMessage() == f"security: source {ATTACKER} unblocked (0 requests dropped)"


def test_ipv6_sources_count_per_prefix_and_mapped_ipv4_as_ipv4() -> None:
    g = guard()
    for host in range(5):
        g.record_failure(f"2001:db8:1:2::{host + 1}", now=0.0)
    assert g.check("2001:db8:1:2:ffff::9", "REGISTER", now=1.0) is GuardVerdict.BLOCKED
    assert g.check("2001:db8:1:3::1", "REGISTER", now=1.0) is GuardVerdict.ALLOW
    assert g.source_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert g.source_key("[2001:db8::1]") == "2001:db8::/64"


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    g = guard(rate=2.0, burst=4)
    verdicts = [g.check(ATTACKER, "INVITE", now=0.0) for _ in range(6)]
    assert verdicts == [GuardVerdict.ALLOW] * 4 + [GuardVerdict.RATE_LIMITED] * 2
    # Half a second buys one token at 2 per second.
    assert g.check(ATTACKER, "REGISTER", now=0.5) is GuardVerdict.ALLOW
    assert g.check(ATTACKER, "REGISTER", now=0.5) is GuardVerdict.RATE_LIMITED
    # The bucket never holds more than the burst.
    assert [g.check(ATTACKER, "INVITE", now=100.0) for _ in range(5)].count(GuardVerdict.ALLOW) == 4
    assert g.counters.dropped_rate_limited == 4


def test_in_dialog_and_other_methods_are_not_rate_limited() -> None:
    g = guard(rate=1.0, burst=1)
    assert g.check(PHONE, "INVITE", now=0.0) is GuardVerdict.ALLOW
    assert g.check(PHONE, "INVITE", now=0.0) is GuardVerdict.RATE_LIMITED
    for method in ("ACK", "BYE", "CANCEL", "OPTIONS"):
        assert g.check(PHONE, method, now=0.0) is GuardVerdict.ALLOW


def test_memory_is_bounded_per_table() -> None:
    g = guard(max_sources=3, rate=1.0, burst=1)
    for n in range(10):
        g.check(f"192.0.2.{n}", "INVITE", now=0.0)
        g.record_failure(f"192.0.2.{n}", now=0.0)
    assert len(g._buckets) == 3 and len(g._failures) == 3
    assert len(g._keys) == 3  # the parsed source keys too
    # The least recently seen was forgotten and starts with a full bucket again.
    assert g.check("192.0.2.0", "INVITE", now=0.0) is GuardVerdict.ALLOW
    assert g.check("192.0.2.9", "INVITE", now=0.0) is GuardVerdict.RATE_LIMITED


def test_a_trunk_s_invites_are_counted_for_the_trunk_as_a_whole() -> None:
    g = guard(rate=1.0, burst=2)
    carrier = TrunkLimit(trunk_id="carrier", calls_per_second=4.0)
    assert carrier.burst == 4  # one second's worth
    sources = ["192.0.2.10", "192.0.2.11"]
    verdicts = [g.check(sources[n % 2], "INVITE", now=0.0, trunk=carrier) for n in range(6)]
    # Four at once from the trunk (over the per-source burst of 2), whichever of its addresses.
    assert verdicts == [GuardVerdict.ALLOW] * 4 + [GuardVerdict.RATE_LIMITED] * 2
    assert g.check("192.0.2.11", "INVITE", now=0.25, trunk=carrier) is GuardVerdict.ALLOW
    # The trunk's addresses keep their own per-source bucket for REGISTER ...
    assert [g.check("192.0.2.10", "REGISTER", now=0.25) for _ in range(3)] == (
        [GuardVerdict.ALLOW] * 2 + [GuardVerdict.RATE_LIMITED]
    )
    # ... and a block applies to a trunk's address like to any other.
    for _ in range(5):
        g.record_failure("192.0.2.10", now=1.0)
    assert g.check("192.0.2.10", "INVITE", now=2.0, trunk=carrier) is GuardVerdict.BLOCKED
    assert g.check("192.0.2.11", "INVITE", now=2.0, trunk=carrier) is GuardVerdict.ALLOW


def test_a_trunk_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TrunkLimit(trunk_id="carrier", calls_per_second=0.0)
    assert TrunkLimit(trunk_id="slow", calls_per_second=0.2).burst == 1


def test_expire_forgets_failure_windows_that_slid_past() -> None:
    g = guard()
    g.record_failure(PHONE, now=0.0)
    g.expire(now=60.0)
    assert PHONE not in g._failures


@pytest.mark.parametrize(
    "overrides",
    [{"max_failures": 0}, {"rate": 0.0}, {"block_seconds": -1.0}, {"ipv6_prefix": 129}],
)
def test_settings_are_validated(overrides: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        GuardSettings(**overrides)  # type: ignore[arg-type]
