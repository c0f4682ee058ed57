"""RTP statistics (RFC 3550 §6.4, §A.1, §A.3, §A.8) against hand-computed values."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from telephony.rtp.packet import RtpPacket, parse
from telephony.rtp.rtcp import ReportBlock, SenderReport
from telephony.rtp.stats import (
    NTP_UNIX_EPOCH_OFFSET,
    DropCounters,
    DropReason,
    ReceiverStatistics,
    SenderStatistics,
    SourceVerdict,
    ntp_from_unix,
    ntp_short,
    round_trip_time,
    unix_from_ntp,
)

FIXTURES = Path(__file__).parent / "fixtures"
SOURCE = 0x0B0E0B0E
OTHER = 0x0DDBA11


def captured_stream() -> list[tuple[float, RtpPacket]]:
    reader = runpy.run_path(str(FIXTURES / "make_fixtures.py"))["read_rtpdump"]
    data = (FIXTURES / "pcmu_stream.rtpdump").read_bytes()
    return [(now, parse(datagram)) for now, datagram in reader(data)]


def feed(stats: ReceiverStatistics, *sequences: int, ssrc: int = SOURCE) -> list[SourceVerdict]:
    """Packets 20 ms apart in sending order, arriving without jitter."""
    return [
        stats.receive(ssrc=ssrc, sequence=seq & 0xFFFF, timestamp=160 * seq, now=seq * 0.020)
        for seq in sequences
    ]


def test_drop_counters() -> None:
    counters = DropCounters()
    counters.bump(DropReason.MALFORMED)
    counters.bump(DropReason.WRONG_PAYLOAD_TYPE)
    counters.late += 2
    assert counters.total == 4
    assert counters.as_dict() == {
        "malformed": 1,
        "wrong_payload_type": 1,
        "foreign_source": 0,
        "late": 2,
        "duplicate": 0,
        "overflow": 0,
    }


def test_new_source_is_on_probation_until_two_packets_in_sequence() -> None:
    stats = ReceiverStatistics(clock_rate=8000)
    assert stats.report_block(0.0) is None
    assert feed(stats, 100) == [SourceVerdict.PROBATION]
    assert not stats.validated
    assert stats.report_block(0.0) is None
    assert feed(stats, 101, 102) == [SourceVerdict.ACCEPTED, SourceVerdict.ACCEPTED]
    assert stats.validated
    assert (stats.expected, stats.received, stats.lost) == (2, 2, 0)


def test_probation_restarts_on_a_gap() -> None:
    stats = ReceiverStatistics(clock_rate=8000)
    assert feed(stats, 100, 102, 103) == [
        SourceVerdict.PROBATION,
        SourceVerdict.PROBATION,
        SourceVerdict.ACCEPTED,
    ]
    assert stats.expected == 1


def test_loss_and_fraction_lost_per_interval() -> None:
    stats = ReceiverStatistics(clock_rate=8000)
    # 100 is on probation; counting starts at 101. 102 and 105 are lost.
    feed(stats, 100, 101, 103, 104, *range(106, 110))
    assert (stats.expected, stats.received, stats.lost) == (9, 7, 2)
    first = stats.report_block(1.0)
    assert first is not None
    assert first.fraction_lost == (2 << 8) // 9 == 56
    assert first.cumulative_lost == 2
    assert first.highest_sequence == 109
    # Next interval: 110..119 without 115: 1 lost out of 10 expected.
    feed(stats, *(s for s in range(110, 120) if s != 115))
    second = stats.report_block(2.0)
    assert second is not None
    assert second.fraction_lost == (1 << 8) // 10 == 25
    assert second.cumulative_lost == 3
    # An interval with nothing new reports no loss.
    third = stats.report_block(3.0)
    assert third is not None
    assert third.fraction_lost == 0


def test_duplicates_make_cumulative_loss_negative_and_fraction_zero() -> None:
    stats = ReceiverStatistics(clock_rate=8000)
    feed(stats, 1, 2, 3, 3, 3, 4)
    block = stats.report_block(0.0)
    assert block is not None
    assert (stats.expected, stats.received) == (3, 5)
    assert block.cumulative_lost == -2
    assert block.fraction_lost == 0


def test_extended_sequence_across_wraparound() -> None:
    stats = ReceiverStatistics(clock_rate=8000)
    feed(stats, 65533, 65534, 65535, 65536, 65537)
    assert stats.extended_max_sequence == 65536 + 1
    assert (stats.expected, stats.lost) == (4, 0)
    block = stats.report_block(0.0)
    assert block is not None
    assert block.highest_sequence == 0x00010001


def test_reordered_packet_across_wraparound_does_not_add_a_cycle() -> None:
    stats = ReceiverStatistics(clock_rate=8000)
    feed(stats, 65533, 65534, 65536, 65535, 65537)
    assert stats.extended_max_sequence == 65537
    assert (stats.expected, stats.received) == (4, 4)


def test_large_jump_needs_two_packets_in_sequence_to_restart() -> None:
    stats = ReceiverStatistics(clock_rate=8000)
    feed(stats, 10, 11, 12)
    # A stray packet far ahead is not counted...
    assert feed(stats, 20000) == [SourceVerdict.BAD_SEQUENCE]
    assert feed(stats, 13) == [SourceVerdict.ACCEPTED]
    assert stats.extended_max_sequence == 13
    # ...but two in sequence mean the sender renumbered: counting restarts there.
    assert feed(stats, 30000, 30001) == [SourceVerdict.BAD_SEQUENCE, SourceVerdict.ACCEPTED]
    assert (stats.expected, stats.received, stats.extended_max_sequence) == (1, 1, 30001)


def test_interarrival_jitter_hand_computed() -> None:
    stats = ReceiverStatistics(clock_rate=8000)
    # Timestamps 0,160,320,480 sent 20 ms apart; arrivals 0, 20, 45, 60 ms. Relative transit in
    # timestamp units: (probation), 0, 40, 0. D = 40 then 40:
    # J1 = 0 + (40 - 0)/16 = 2.5; J2 = 2.5 + (40 - 2.5)/16 = 4.84375.
    for timestamp, arrival in ((0, 0.0), (160, 0.020), (320, 0.045), (480, 0.060)):
        stats.receive(ssrc=SOURCE, sequence=timestamp // 160, timestamp=timestamp, now=arrival)
    assert stats.jitter == pytest.approx(4.84375)
    assert stats.jitter_ms == pytest.approx(4.84375 / 8)
    block = stats.report_block(0.1)
    assert block is not None
    assert block.jitter == 4


def test_jitter_is_zero_across_timestamp_wraparound() -> None:
    stats = ReceiverStatistics(clock_rate=8000)
    for n in range(6):
        timestamp = (0xFFFFFE00 + 160 * n) & 0xFFFFFFFF
        stats.receive(ssrc=SOURCE, sequence=n, timestamp=timestamp, now=5.0 + n * 0.020)
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)


def test_foreign_packets_are_dropped_and_counted() -> None:
    counters = DropCounters()
    stats = ReceiverStatistics(clock_rate=8000, counters=counters)
    feed(stats, 1, 2, 3)
    # Interleaved packets from another source never take over.
    verdicts = []
    for seq in range(4, 8):
        verdicts += feed(stats, 1000 + seq, ssrc=OTHER)
        verdicts += feed(stats, seq)
    assert verdicts.count(SourceVerdict.FOREIGN) == 4
    assert counters.foreign_source == 4
    assert stats.ssrc == SOURCE
    assert stats.source_changes == 0


def test_ssrc_change_after_the_new_source_proves_itself() -> None:
    counters = DropCounters()
    stats = ReceiverStatistics(clock_rate=8000, counters=counters)
    feed(stats, 1, 2, 3)
    assert feed(stats, 500, 501, 502, ssrc=OTHER) == [
        SourceVerdict.FOREIGN,
        SourceVerdict.SOURCE_CHANGED,
        SourceVerdict.ACCEPTED,
    ]
    assert stats.ssrc == OTHER
    assert stats.source_changes == 1
    assert counters.foreign_source == 1
    assert (stats.expected, stats.received, stats.lost) == (2, 2, 0)
    block = stats.report_block(0.0)
    assert block is not None
    assert block.ssrc == OTHER


def test_last_sr_and_delay_since_last_sr() -> None:
    stats = ReceiverStatistics(clock_rate=8000)
    feed(stats, 1, 2)
    ntp = 0xE8A1B2C3D4E5F607
    report = SenderReport(
        ssrc=SOURCE, ntp_timestamp=ntp, rtp_timestamp=0, packet_count=0, octet_count=0
    )
    stats.on_sender_report(report, now=10.0)
    block = stats.report_block(11.5)
    assert block is not None
    assert block.last_sr == 0xB2C3D4E5
    assert block.delay_since_last_sr == 98304  # 1.5 s in 1/65536 s
    # An SR from someone else does not count.
    stats.on_sender_report(
        SenderReport(ssrc=OTHER, ntp_timestamp=1, rtp_timestamp=0, packet_count=0, octet_count=0),
        now=11.0,
    )
    block = stats.report_block(12.0)
    assert block is not None
    assert block.last_sr == 0xB2C3D4E5


def test_captured_stream() -> None:
    """The fixture leg: 20 packets over a sequence wrap, one lost, one duplicated, two swapped."""
    stats = ReceiverStatistics(clock_rate=8000)
    verdicts = [stats.receive_packet(packet, now) for now, packet in captured_stream()]
    assert verdicts.count(SourceVerdict.PROBATION) == 1
    assert verdicts.count(SourceVerdict.ACCEPTED) == 19  # 18 distinct + the duplicate
    assert stats.extended_max_sequence == 65536 + 13
    # 19 expected from 65531 to 13; the duplicate hides the loss, as RFC 3550 §A.3 says it may.
    assert (stats.expected, stats.received, stats.lost) == (19, 19, 0)
    # Reference: §A.8 on the accepted arrivals, in arrival order.
    arrivals = [(now, packet.timestamp) for now, packet in captured_stream()]
    jitter, previous = 0.0, None
    for now, timestamp in arrivals[1:]:
        transit = now * 8000 - timestamp
        if previous is not None:
            d = (transit - previous + 2**31) % 2**32 - 2**31
            jitter += (abs(d) - jitter) / 16
        previous = transit
    assert stats.jitter == pytest.approx(jitter)
    assert 10 < stats.jitter < 200


def test_sender_statistics_and_sender_report() -> None:
    sender = SenderStatistics(ssrc=0xABC, clock_rate=8000)
    assert not sender.has_sent
    for n in range(50):
        sender.on_sent(payload_size=160, timestamp=1000 + 160 * n, now=2.0 + 0.020 * n)
    assert (sender.packet_count, sender.octet_count) == (50, 8000)
    # Last packet: timestamp 8840 at 2.98 s; 0.5 s later the media clock reads 8840 + 4000.
    report = sender.sender_report(now=3.48, wallclock=1_700_000_000.25)
    assert report.rtp_timestamp == 12840
    assert report.ntp_timestamp == (1_700_000_000 + NTP_UNIX_EPOCH_OFFSET) << 32 | 1 << 30
    assert (report.packet_count, report.octet_count) == (50, 8000)


def test_sender_counts_wrap_at_32_bits() -> None:
    sender = SenderStatistics(ssrc=1, clock_rate=8000)
    sender.octet_count = 0xFFFFFF00
    sender.on_sent(payload_size=0x200, timestamp=0, now=0.0)
    assert sender.octet_count == 0x100


def test_ntp_conversions() -> None:
    ntp = ntp_from_unix(1_700_000_000.5)
    assert ntp >> 32 == 1_700_000_000 + NTP_UNIX_EPOCH_OFFSET
    assert ntp & 0xFFFFFFFF == 0x80000000
    assert unix_from_ntp(ntp) == 1_700_000_000.5
    assert ntp_short(0x0123456789ABCDEF) == 0x456789AB


def test_round_trip_time_example_of_rfc_3550() -> None:
    # §6.4.1 figure: A = 0xb710:8000, LSR = 0xb705:2000, DLSR = 0x0005:4000 -> RTT 6.125 s.
    seconds = (0xB710 - NTP_UNIX_EPOCH_OFFSET) % 65536 + 65536 * 26000
    arrival = seconds + 0.5
    assert ntp_short(ntp_from_unix(arrival)) == 0xB7108000
    block = ReportBlock(
        ssrc=1,
        fraction_lost=0,
        cumulative_lost=0,
        highest_sequence=0,
        jitter=0,
        last_sr=0xB7052000,
        delay_since_last_sr=0x00054000,
    )
    assert round_trip_time(block, arrival) == 6.125
    no_sr = ReportBlock(ssrc=1, fraction_lost=0, cumulative_lost=0, highest_sequence=0, jitter=0)
    assert round_trip_time(no_sr, arrival) is None
    assert round_trip_time(block, arrival - 10) is None  # negative: clock error
