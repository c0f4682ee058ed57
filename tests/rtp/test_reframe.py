"""Re-framing received G.711 packets of any duration into 20 ms frames (telephony.rtp.reframe)."""

from __future__ import annotations

import pytest

from telephony.rtp.packet import RtpPacket
from telephony.rtp.reframe import Reframer

FILL = 0xFF  # µ-law silence


def stream(samples: bytes, sizes: list[int], *, first_ts: int = 1000) -> list[RtpPacket]:
    """Cut `samples` into packets of the given sizes (cycled), numbered like a phone would."""
    packets: list[RtpPacket] = []
    offset, sequence = 0, 7
    while offset < len(samples):
        size = sizes[len(packets) % len(sizes)]
        packets.append(
            RtpPacket(
                payload_type=0,
                sequence=sequence & 0xFFFF,
                timestamp=(first_ts + offset) & 0xFFFFFFFF,
                ssrc=42,
                payload=samples[offset : offset + size],
            )
        )
        offset += size
        sequence += 1
    return packets


def run(reframer: Reframer, packets: list[RtpPacket]) -> list[RtpPacket]:
    return [frame for packet in packets for frame in reframer.push(packet)]


AUDIO = bytes(range(256)) * 15  # 3840 samples: 480 ms, not silence anywhere


@pytest.mark.parametrize("ptime_ms", [10, 20, 30, 40, 60])
def test_any_packet_duration_becomes_the_same_20ms_frames(ptime_ms: int) -> None:
    frames = run(Reframer(fill=FILL), stream(AUDIO, [ptime_ms * 8]))
    assert [len(f.payload) for f in frames] == [160] * 24
    assert b"".join(f.payload for f in frames) == AUDIO
    assert [f.timestamp for f in frames] == [1000 + 160 * i for i in range(24)]


def test_whole_frames_pass_through_untouched() -> None:
    reframer = Reframer(fill=FILL)
    packets = stream(AUDIO, [160])
    assert all(reframer.push(p) == [p] for p in packets)
    assert reframer.reframed == 0


def test_frames_carry_the_last_contributing_packets_sequence_and_the_first_marker() -> None:
    packets = stream(AUDIO[:480], [240])
    marked = RtpPacket(
        payload_type=0,
        sequence=packets[0].sequence,
        timestamp=packets[0].timestamp,
        ssrc=42,
        payload=packets[0].payload,
        marker=True,
    )
    frames = run(Reframer(fill=FILL), [marked, packets[1]])
    # The second frame is half of packet 7 and half of packet 8.
    assert [(f.sequence, f.marker) for f in frames] == [(7, True), (8, False), (8, False)]
    assert {f.ssrc for f in frames} == {42}


def test_a_lost_10ms_packet_becomes_silence_inside_its_frame() -> None:
    reframer = Reframer(fill=FILL)
    packets = stream(AUDIO[:800], [80])  # ten 10 ms packets, five frames
    del packets[3]  # the second half of frame 1
    # The incomplete frame waits for its missing piece until a frame two frames on starts.
    frames = sorted(run(reframer, packets), key=lambda f: f.timestamp)
    assert [f.timestamp - 1000 for f in frames] == [0, 160, 320, 480, 640]
    assert frames[1].payload == AUDIO[160:240] + bytes([FILL]) * 80
    assert reframer.padded == 1
    assert b"".join(f.payload for i, f in enumerate(frames) if i != 1) == (
        AUDIO[:160] + AUDIO[320:800]
    )


def test_reordered_10ms_packets_still_make_whole_frames() -> None:
    packets = stream(AUDIO[:640], [80])
    packets[2], packets[3] = packets[3], packets[2]
    frames = run(Reframer(fill=FILL), packets)
    assert b"".join(f.payload for f in frames) == AUDIO[:640]


def test_a_duplicate_piece_changes_nothing() -> None:
    packets = stream(AUDIO[:320], [80])
    frames = run(Reframer(fill=FILL), [packets[0], packets[0], packets[1], *packets[2:]])
    assert b"".join(f.payload for f in frames) == AUDIO[:320]


def test_timestamps_wrap_around_2_to_the_32() -> None:
    frames = run(Reframer(fill=FILL), stream(AUDIO[:960], [240], first_ts=0xFFFFFF00))
    assert [f.timestamp for f in frames] == [(0xFFFFFF00 + 160 * i) & 0xFFFFFFFF for i in range(6)]
    assert b"".join(f.payload for f in frames) == AUDIO[:960]


def test_a_talkspurt_start_releases_what_is_pending_and_anchors_anew() -> None:
    reframer = Reframer(fill=FILL)
    first = stream(AUDIO[:80], [80])
    assert reframer.push(first[0]) == []  # half a frame waits for its other half
    # The next talkspurt starts 1000 samples on, off the old grid: the half frame is released.
    marked = RtpPacket(
        payload_type=0, sequence=9, timestamp=2080, ssrc=42, payload=AUDIO[:160], marker=True
    )
    frames = reframer.push(marked)
    assert [(f.timestamp, f.payload[:80] == AUDIO[:80]) for f in frames] == [
        (1000, True),
        (2080, True),
    ]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        Reframer(fill=256)
    with pytest.raises(ValueError):
        Reframer(fill=FILL, max_pending=0)
