"""Flood notices: a source whose requests the guard drops is reported at most once per
notice interval, with how many were dropped since; and the SIP tally read for metrics."""

from __future__ import annotations

from telephony.sip.guard import FloodNotice, GuardSettings, GuardVerdict, SourceGuard, TrunkLimit
from telephony.stats import SipTally

FLOODER = "203.0.113.7"
OTHER = "203.0.113.8"


def flood(guard: SourceGuard, source: str, start: float, seconds: float, rate: float) -> int:
    """INVITEs at ``rate`` per second for ``seconds``; how many the guard dropped."""
    dropped = 0
    for n in range(int(seconds * rate)):
        if guard.check(source, "INVITE", start + n / rate) is not GuardVerdict.ALLOW:
            dropped += 1
    return dropped


def test_a_rate_limited_source_gets_one_notice_per_interval() -> None:
    guard = SourceGuard(GuardSettings(rate=10, burst=20, notice_interval=60))
    dropped = flood(guard, FLOODER, 1000.0, 150.0, 100.0)  # 100/s for two and a half minutes
    notices = guard.take_notices()
    # The first drop at once, then one a minute: at 1060 and 1120 (each minute's drops).
    assert [n.source for n in notices] == [FLOODER] * 3
    assert notices[0] == FloodNotice(
        source=FLOODER, verdict=GuardVerdict.RATE_LIMITED, method="INVITE", dropped=1
    )
    assert sum(n.dropped for n in notices) < dropped  # the drops after the last notice wait
    assert all(5000 < n.dropped < 6000 for n in notices[1:])
    assert guard.take_notices() == []  # handed over once


def test_each_source_has_its_own_notices_and_a_blocked_source_too() -> None:
    guard = SourceGuard(GuardSettings(rate=10, burst=20, max_failures=1, notice_interval=60))
    flood(guard, FLOODER, 0.0, 1.0, 100.0)
    guard.record_failure(OTHER, now=2.0)  # blocked at once (one failure allowed)
    for n in range(5):
        assert guard.check(OTHER, "OPTIONS", 3.0 + n) is GuardVerdict.BLOCKED
    notices = guard.take_notices()
    assert [(n.source, n.verdict, n.dropped) for n in notices] == [
        (FLOODER, GuardVerdict.RATE_LIMITED, 1),
        (OTHER, GuardVerdict.BLOCKED, 1),
    ]
    assert guard.blocked_count(now=10.0) == 1
    assert guard.blocked_count(now=10_000.0) == 0


def test_a_trunk_over_its_rate_is_named_in_the_notice() -> None:
    guard = SourceGuard(GuardSettings(notice_interval=60))
    trunk = TrunkLimit(trunk_id="carrier", calls_per_second=2)
    verdicts = [guard.check(FLOODER, "INVITE", 5.0, trunk=trunk) for _ in range(4)]
    assert verdicts.count(GuardVerdict.RATE_LIMITED) == 2
    (notice,) = guard.take_notices()
    assert notice.trunk_id == "carrier" and notice.dropped == 1


def test_allowed_requests_give_no_notice() -> None:
    guard = SourceGuard(GuardSettings(rate=10, burst=20))
    assert flood(guard, FLOODER, 0.0, 10.0, 5.0) == 0
    assert guard.take_notices() == []


def test_sip_tally_reads_the_start_line_and_bounds_method_labels() -> None:
    tally = SipTally()
    for data in (
        b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n",
        b"SIP/2.0 200 OK\r\n\r\n",
        b"SIP/2.0 486 Busy Here\r\n\r\n",
        b"INVITE sip:1001@127.0.0.1 SIP/2.0\r\n\r\n",
        b"BYE sip:1001@127.0.0.1 SIP/2.0\r\n\r\n",
    ):
        tally.sent(data)
    for method in ("REGISTER", "REGISTER", "XFLOOD1", "XFLOOD2"):
        tally.request_received(method)
    tally.response_received(180)
    assert tally.responses_sent == {200: 2, 486: 1}
    assert tally.requests_sent == {"INVITE": 1, "BYE": 1}
    # Invented methods share one label: a flood of them cannot grow the table.
    assert tally.requests_received == {"REGISTER": 2, "other": 2}
    assert tally.responses_received == {180: 1}
