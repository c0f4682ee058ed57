"""The per-leg receive path: validation, drops by reason, media locking, rate limit, RTCP."""

from __future__ import annotations

import itertools

import pytest

from telephony.media.events import MediaSourceLocked
from telephony.media.leg import MediaLeg
from telephony.media.settings import LatchMode, LegSettings, LockState
from telephony.rtp.packet import build_header, parse
from telephony.rtp.rtcp import ReceiverReport, ReportBlock, SenderReport, parse_compound
from tests.media_engine.media_helpers import CALLER_ADDR, RtpPeer, new_leg

NAT_ADDR = ("198.51.100.7", 61000)
ATTACKER = ("203.0.113.66", 5004)


def make_leg(
    settings: LegSettings | None = None, now: float = 0.0
) -> tuple[MediaLeg, list[object]]:
    events: list[object] = []
    return new_leg(events=events, settings=settings, now=now), events


def test_packet_from_sdp_address_locks_at_once_and_others_are_ignored() -> None:
    leg, events = make_leg()
    peer = RtpPeer()
    assert leg.receive(peer.audio(), CALLER_ADDR, 0.0) is not None
    assert leg.lock_state is LockState.LOCKED
    assert events == [
        MediaSourceLocked(call_id="c1", address=CALLER_ADDR[0], port=CALLER_ADDR[1], latched=False)
    ]
    # RTP Bleed: a stream injected from elsewhere, even a well-formed one, is never used.
    intruder = RtpPeer(ssrc=99)
    for _ in range(10):
        assert leg.receive(intruder.audio(), ATTACKER, 0.1) is None
    assert leg.counters.foreign_address == 10
    assert leg.destination == CALLER_ADDR
    assert leg.receive(peer.audio(), CALLER_ADDR, 0.12) is not None


def test_nat_source_is_latched_after_consecutive_packets() -> None:
    leg, events = make_leg()
    peer = RtpPeer()
    # The first two packets only make the source a candidate: not used, counted.
    assert leg.receive(peer.audio(), NAT_ADDR, 0.00) is None
    assert leg.receive(peer.audio(), NAT_ADDR, 0.02) is None
    packet = leg.receive(peer.audio(), NAT_ADDR, 0.04)
    assert packet is not None
    assert leg.locked_source == NAT_ADDR
    assert leg.destination == NAT_ADDR  # symmetric RTP: we answer where it comes from
    assert isinstance(events[-1], MediaSourceLocked) and events[-1].latched
    assert leg.counters.foreign_address == 2


def test_interleaved_sources_never_latch_and_sdp_address_wins() -> None:
    leg, _ = make_leg()
    nat, attacker = RtpPeer(ssrc=1), RtpPeer(ssrc=2)
    for step in range(5):
        now = step * 0.02
        assert leg.receive(nat.audio(), NAT_ADDR, now) is None
        assert leg.receive(attacker.audio(), ATTACKER, now) is None
    assert leg.lock_state is LockState.LEARNING
    assert leg.receive(RtpPeer(ssrc=3).audio(), CALLER_ADDR, 0.2) is not None
    assert leg.locked_source == CALLER_ADDR


def test_no_latching_after_the_window_or_in_strict_mode() -> None:
    late, _ = make_leg(LegSettings(latch_window=2.0))
    peer = RtpPeer()
    for step in range(5):
        assert late.receive(peer.audio(), NAT_ADDR, 3.0 + step * 0.02) is None
    assert late.lock_state is LockState.LEARNING
    strict, _ = make_leg(LegSettings(latch=LatchMode.STRICT))
    for step in range(5):
        assert strict.receive(peer.audio(), NAT_ADDR, step * 0.02) is None
    assert strict.counters.foreign_address == 5


def test_renegotiation_learns_the_source_again() -> None:
    leg, _ = make_leg()
    peer = RtpPeer()
    leg.receive(peer.audio(), CALLER_ADDR, 0.0)
    leg.renegotiate(("192.0.2.99", 7000), 1.0)
    assert leg.lock_state is LockState.LEARNING
    assert leg.receive(peer.audio(), CALLER_ADDR, 1.02) is None  # not the new SDP address
    assert leg.receive(peer.audio(), ("192.0.2.99", 7000), 1.04) is not None


@pytest.mark.parametrize(
    ("datagram", "counter"),
    [
        (b"\x80\x00\x00", "malformed"),
        (b"\x40" + bytes(20), "malformed"),  # version 1
        (b"\x8f" + bytes(20), "malformed"),  # 15 CSRCs announced, not there
        (b"\x90" + bytes(11) + b"\x00\x00\xff\xff", "malformed"),  # extension overflow
        (build_header(18, False, 1, 1, 1) + bytes(20), "wrong_payload_type"),  # G.729
    ],
)
def test_bad_packets_are_dropped_and_counted(datagram: bytes, counter: str) -> None:
    leg, _ = make_leg()
    assert leg.receive(datagram, CALLER_ADDR, 0.0) is None
    assert getattr(leg.counters.drops, counter) == 1
    assert leg.counters.received == 0
    assert leg.receive(RtpPeer().audio(), CALLER_ADDR, 0.02) is not None  # the call goes on


def test_ssrc_change_is_followed_only_after_packets_in_sequence() -> None:
    leg, _ = make_leg()
    old, new = RtpPeer(ssrc=1), RtpPeer(ssrc=2, sequence=5)
    for step in range(3):
        assert leg.receive(old.audio(), CALLER_ADDR, step * 0.02) is not None
    assert leg.receive(new.audio(), CALLER_ADDR, 0.06) is None  # a stray packet: foreign
    assert leg.counters.drops.foreign_source == 1
    assert leg.receive(new.audio(), CALLER_ADDR, 0.08) is not None  # confirmed: followed
    assert leg.stats.ssrc == 2


def test_flood_from_locked_source_is_shed() -> None:
    leg, _ = make_leg(LegSettings(max_packet_rate=100, packet_burst=10))
    peer = RtpPeer()
    accepted = sum(leg.receive(peer.audio(), CALLER_ADDR, 1.0) is not None for _ in range(1000))
    assert accepted == 10
    assert leg.counters.flood == 990


def test_frames_are_stamped_on_the_absolute_clock_with_wraparound() -> None:
    leg, _ = make_leg()
    first = parse(leg.frame_packet(bytes(160), 0, 0.0))
    later = parse(leg.frame_packet(bytes(160), 45_000, 900.4))  # 15 minutes, a late tick
    assert first.marker and not later.marker
    assert first.ssrc == later.ssrc == 0xABCDEF01
    assert (first.sequence, later.sequence) == (65531, 65532)
    assert later.timestamp == (0xFFFFFF00 + 45_000 * 160) & 0xFFFFFFFF


def test_relayed_packets_keep_sender_spacing_on_our_clock() -> None:
    leg, _ = make_leg()
    peer = RtpPeer(timestamp=5_000_000)
    packets = [parse(peer.audio()) for _ in range(3)]
    out = [parse(leg.relay_packet(p, p.payload, 8, 1.0 + i * 0.02)) for i, p in enumerate(packets)]
    assert [p.payload_type for p in out] == [8, 8, 8]
    assert out[0].marker and not out[1].marker
    assert out[0].timestamp == leg.media_clock(1.0)
    assert [(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in itertools.pairwise(out)] == [
        160,
        160,
    ]


def test_rtcp_reports_and_peer_view_of_our_stream() -> None:
    leg, _ = make_leg()
    peer = RtpPeer()
    for step in range(10):
        if step != 5:  # one packet lost
            leg.receive(peer.audio(), CALLER_ADDR, step * 0.02)
        else:
            peer.audio()
    compound = parse_compound(leg.rtcp_report(1.0, 1_700_000_000.0))
    report = compound.packets[0]
    assert isinstance(report, ReceiverReport)  # we have not sent anything yet
    assert report.reports[0].ssrc == peer.ssrc
    assert report.reports[0].cumulative_lost == 1
    leg.frame_packet(bytes(160), 0, 1.0)
    assert isinstance(
        parse_compound(leg.rtcp_report(1.1, 1_700_000_000.1)).packets[0], SenderReport
    )
    theirs = ReceiverReport(
        ssrc=peer.ssrc,
        reports=(
            ReportBlock(
                ssrc=leg.ssrc, fraction_lost=64, cumulative_lost=3, highest_sequence=1, jitter=40
            ),
        ),
    )
    leg.receive_rtcp(theirs.serialize(), (CALLER_ADDR[0], CALLER_ADDR[1] + 1), 2.0, 0.0)
    assert leg.remote_fraction_lost == 0.25
    leg.receive_rtcp(b"\x80\xc9\x00", (CALLER_ADDR[0], 1), 2.0, 0.0)
    leg.receive_rtcp(theirs.serialize(), ATTACKER, 2.0, 0.0)
    assert leg.counters.rtcp_dropped == 2
