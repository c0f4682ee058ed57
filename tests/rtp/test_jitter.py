"""Jitter buffer: playout timing, reordering, loss concealment, duplicates, late packets, capacity,
16-bit sequence and 32-bit timestamp wraparound, resynchronisation. Time is a fake clock."""

from __future__ import annotations

import math
import runpy
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.rtp.jitter import (
    FrameStatus,
    JitterBuffer,
    JitterBufferSettings,
    PlayoutFrame,
    PushOutcome,
)
from telephony.rtp.packet import RtpPacket, parse
from telephony.rtp.stats import DropCounters

R, REP, SIL = FrameStatus.RECEIVED, FrameStatus.REPEATED, FrameStatus.SILENCE
FIXTURES = Path(__file__).parent / "fixtures"


def captured_stream() -> list[tuple[float, RtpPacket]]:
    reader = runpy.run_path(str(FIXTURES / "make_fixtures.py"))["read_rtpdump"]
    data = (FIXTURES / "pcmu_stream.rtpdump").read_bytes()
    return [(now, parse(datagram)) for now, datagram in reader(data)]


def voice(n: int, *, base_seq: int = 0, base_ts: int = 0, marker: bool = False) -> RtpPacket:
    """The n-th 20 ms packet of a stream; its payload says which one it is."""
    return RtpPacket(
        payload_type=0,
        sequence=(base_seq + n) & 0xFFFF,
        timestamp=(base_ts + 160 * n) & 0xFFFFFFFF,
        ssrc=1,
        payload=bytes((n % 256,)) * 160,
        marker=marker,
    )


def run(
    buffer: JitterBuffer, arrivals: list[tuple[float, RtpPacket]], until: float
) -> list[tuple[float, PlayoutFrame]]:
    """Deliver arrivals and pop frames at their deadlines, in time order, up to `until`.
    At equal times the arrival goes first."""
    pending = sorted(arrivals, key=lambda arrival: arrival[0])
    played: list[tuple[float, PlayoutFrame]] = []
    i = 0
    while True:
        next_arrival = pending[i][0] if i < len(pending) else math.inf
        deadline = buffer.next_deadline if buffer.next_deadline is not None else math.inf
        if min(next_arrival, deadline) > until + 1e-6:  # tolerate float sums of 0.02
            return played
        if next_arrival <= deadline:
            buffer.push(pending[i][1], next_arrival)
            i += 1
        else:
            frame = buffer.pop(deadline)
            assert frame is not None
            played.append((deadline, frame))


def statuses(played: list[tuple[float, PlayoutFrame]]) -> list[FrameStatus]:
    return [frame.status for _, frame in played]


def sequences(played: list[tuple[float, PlayoutFrame]]) -> list[int | None]:
    return [frame.sequence for _, frame in played]


def test_first_frame_is_played_target_delay_after_its_arrival() -> None:
    buffer = JitterBuffer()
    assert buffer.next_deadline is None
    assert buffer.pop(5.0) is None
    assert buffer.push(voice(0), 1.0) is PushOutcome.BUFFERED
    assert buffer.next_deadline == pytest.approx(1.060)
    assert buffer.pop(1.059) is None
    frame = buffer.pop(1.060)
    assert frame == PlayoutFrame(status=R, timestamp=0, payload=voice(0).payload, sequence=0)
    assert buffer.next_deadline == pytest.approx(1.080)
    assert buffer.pop(1.079) is None


def test_jittery_in_order_stream_is_played_whole_and_evenly() -> None:
    delays = [0.0, 0.030, 0.005, 0.038, 0.012, 0.0, 0.025, 0.039, 0.001, 0.02]
    arrivals = [(0.020 * n + delay, voice(n)) for n, delay in enumerate(delays)]
    played = run(JitterBuffer(), arrivals, until=0.06 + 0.02 * 9)
    assert statuses(played) == [R] * 10
    assert sequences(played) == list(range(10))
    times = [at for at, _ in played]
    assert times == pytest.approx([0.06 + 0.02 * n for n in range(10)])


def test_reordered_packets_are_played_in_order() -> None:
    arrivals = [(0.0, voice(0)), (0.040, voice(2)), (0.045, voice(1)), (0.070, voice(4))]
    arrivals += [(0.075, voice(3)), (0.100, voice(5))]
    played = run(JitterBuffer(), arrivals, until=0.16)
    assert statuses(played) == [R] * 6
    assert sequences(played) == [0, 1, 2, 3, 4, 5]


def test_loss_is_concealed_by_one_repeat_then_silence() -> None:
    kept = [0, 1, 3, 6]  # 2 lost alone; 4 and 5 lost in a row
    arrivals = [(0.020 * n, voice(n)) for n in kept]
    played = run(JitterBuffer(), arrivals, until=0.06 + 0.02 * 6)
    assert statuses(played) == [R, R, REP, R, REP, SIL, R]
    frames = [frame for _, frame in played]
    assert frames[2].payload == voice(1).payload
    assert frames[4].payload == voice(3).payload
    assert frames[5].payload is None
    assert [frame.timestamp for frame in frames] == [160 * n for n in range(7)]
    buffer = JitterBuffer()
    run(buffer, arrivals, until=0.21)  # one frame more: repeats the last received one
    assert (buffer.playout.received, buffer.playout.repeated, buffer.playout.silence) == (4, 3, 1)


def test_duplicates_are_dropped_before_and_after_playout() -> None:
    counters = DropCounters()
    buffer = JitterBuffer(counters=counters)
    assert buffer.push(voice(0), 0.0) is PushOutcome.BUFFERED
    assert buffer.push(voice(1), 0.02) is PushOutcome.BUFFERED
    assert buffer.push(voice(1), 0.021) is PushOutcome.DUPLICATE
    assert len(buffer) == 2
    played = run(buffer, [(0.03, voice(2))], until=0.10)
    assert buffer.push(voice(1), 0.101) is PushOutcome.DUPLICATE  # already played
    assert counters.duplicate == 2
    assert counters.late == 0
    assert sequences(played) == [0, 1, 2]


def test_late_packet_is_dropped_and_counted() -> None:
    counters = DropCounters()
    buffer = JitterBuffer(counters=counters)
    # Packet 2 is due at 0.10 but arrives at 0.105.
    arrivals = [(0.0, voice(0)), (0.02, voice(1)), (0.105, voice(2)), (0.06, voice(3))]
    arrivals += [(0.08, voice(4))]
    played = run(buffer, arrivals, until=0.14)
    assert statuses(played) == [R, R, REP, R, R]
    assert counters.late == 1
    assert buffer.playout.resyncs == 0


def test_sequence_and_timestamp_wraparound() -> None:
    base_seq, base_ts = 65533, 0xFFFFFFFF - 160 * 2
    order = [0, 1, 3, 2, 4, 5, 6]  # reordered across the sequence wrap
    arrivals = [
        (0.02 * n + 0.001 * i, voice(n, base_seq=base_seq, base_ts=base_ts))
        for i, n in enumerate(order)
    ]
    played = run(JitterBuffer(), arrivals, until=0.06 + 0.02 * 6)
    assert statuses(played) == [R] * 7
    assert sequences(played) == [65533, 65534, 65535, 0, 1, 2, 3]
    timestamps = [frame.timestamp for _, frame in played]
    assert timestamps == [(base_ts + 160 * n) & 0xFFFFFFFF for n in range(7)]
    assert timestamps[3] < timestamps[2]  # the 32-bit timestamp wrapped too


def test_packet_beyond_capacity_reanchors_and_bounds_the_buffer() -> None:
    counters = DropCounters()
    buffer = JitterBuffer(JitterBufferSettings(capacity=10), counters=counters)
    # A sender whose clock runs fast delivers far ahead of the playout clock.
    for n in range(10):
        assert buffer.push(voice(n), 0.0) is PushOutcome.BUFFERED
    assert len(buffer) == 10
    assert buffer.push(voice(10), 0.0) is PushOutcome.RESYNCED
    assert len(buffer) == 1  # frames 0-9 would have played before it: discarded
    assert counters.overflow == 10
    frame = buffer.pop(0.06)
    assert frame is not None
    assert frame.sequence == 10


def test_timestamp_jump_mid_stream_reanchors_on_the_new_timeline() -> None:
    arrivals = [(0.02 * n, voice(n)) for n in range(5)]
    jumped = [(0.02 * n, voice(n, base_ts=160 * 1000)) for n in range(5, 10)]
    buffer = JitterBuffer()
    played = run(buffer, arrivals + jumped, until=0.5)
    assert [s for s in sequences(played) if s is not None] == list(range(10))
    assert buffer.playout.resyncs == 1


def test_delay_step_resynchronises_after_consecutive_late_packets() -> None:
    buffer = JitterBuffer()
    # Network delay steps from 0 to 200 ms at packet 10.
    arrivals = [(0.02 * n + (0.2 if n >= 10 else 0.0), voice(n)) for n in range(20)]
    played = run(buffer, arrivals, until=0.9)
    assert buffer.counters.late == 1  # packet 10; packet 11 re-anchors
    assert buffer.playout.resyncs == 1
    received = [(at, frame.sequence) for at, frame in played if frame.status is R]
    assert [seq for _, seq in received] == [*range(10), *range(11, 20)]
    # Packet 11 arrived at 0.42 and plays on the 20 ms grid at 0.48, target delay later.
    assert dict((seq, at) for at, seq in received)[11] == pytest.approx(0.48)


def test_talkspurt_after_silence_keeps_its_timing() -> None:
    # Silence suppression: sequence numbers continue, timestamps jump (RFC 3551 §4.1).
    first = [(0.02 * n, voice(n)) for n in range(5)]
    second = [
        (
            0.02 * n,
            RtpPacket(
                payload_type=0,
                sequence=n - 15,
                timestamp=160 * n,
                ssrc=1,
                payload=b"\x01" * 160,
                marker=n == 20,
            ),
        )
        for n in range(20, 23)
    ]
    buffer = JitterBuffer()
    played = run(buffer, first + second, until=0.06 + 0.02 * 22)
    assert statuses(played) == [R] * 5 + [REP] + [SIL] * 14 + [R] * 3
    assert sequences(played)[-3:] == [5, 6, 7]
    assert buffer.playout.resyncs == 0


def test_talkspurt_arriving_later_is_given_the_target_delay_again() -> None:
    first = [(0.02 * n, voice(n)) for n in range(5)]
    # The next talkspurt comes 50 ms later than the first one's delay would put it.
    second = [(0.02 * n + 0.05, voice(n, marker=n == 20)) for n in range(20, 23)]
    buffer = JitterBuffer()
    played = run(buffer, first + second, until=1.0)
    assert buffer.playout.resyncs == 1
    at = {frame.sequence: when for when, frame in played}
    assert at[20] == pytest.approx(0.52)  # arrived 0.45, first grid deadline >= 0.51
    assert statuses(played).count(R) == 8


def test_caller_falling_far_behind_skips_overdue_frames() -> None:
    buffer = JitterBuffer()
    for n in range(3):
        buffer.push(voice(n), 0.02 * n)
    frame = buffer.pop(1.0)  # first deadline was 0.06: 47 frames overdue
    assert frame is not None
    assert frame.status is SIL
    assert buffer.playout.skipped == 47
    assert buffer.counters.overflow == 3
    assert buffer.next_deadline == pytest.approx(1.02)


def test_reset_starts_playout_anew() -> None:
    buffer = JitterBuffer()
    buffer.push(voice(0), 0.0)
    buffer.reset()
    assert buffer.next_deadline is None
    assert len(buffer) == 0
    buffer.push(voice(0, base_seq=900, base_ts=77), 3.0)
    assert buffer.next_deadline == pytest.approx(3.06)


def test_captured_stream_plays_through_with_one_concealed_frame() -> None:
    buffer = JitterBuffer()
    played = run(buffer, captured_stream(), until=2.0)
    received = [frame.sequence for _, frame in played if frame.status is R]
    assert received == [*range(65530, 65536), 0, 1, *range(3, 14)]
    assert statuses(played)[8] is REP  # sequence 2 was lost
    assert buffer.counters.duplicate == 1
    assert buffer.counters.late == 0


@pytest.mark.parametrize(
    "fields",
    [
        {"capacity": 3},
        {"frame_duration": 0.0201},
        {"clock_rate": 0},
        {"resync_after_late": 0},
        {"target_delay": -0.01},
    ],
)
def test_settings_are_validated(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        JitterBufferSettings(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("interval", [0.0199, 0.0201])
def test_sender_clock_drift_is_absorbed(interval: float) -> None:
    buffer = JitterBuffer()
    arrivals = [(interval * n, voice(n)) for n in range(3000)]
    played = run(buffer, arrivals, until=interval * 3000)
    received = [frame.sequence or 0 for _, frame in played if frame.status is R]
    assert received == sorted(set(received))  # in order, none twice
    assert len(received) > 2900
    assert buffer.playout.resyncs >= 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 0.25), st.booleans(), st.booleans()), min_size=1, max_size=60),
    st.integers(0, 65535),
    st.integers(0, 2**32 - 1),
)
def test_any_network_keeps_the_buffer_bounded_and_playout_ordered(
    network: list[tuple[float, bool, bool]], base_seq: int, base_ts: int
) -> None:
    buffer = JitterBuffer()
    arrivals = []
    for n, (delay, lost, duplicated) in enumerate(network):
        if lost:
            continue
        packet = voice(n, base_seq=base_seq, base_ts=base_ts)
        arrivals.append((0.02 * n + delay, packet))
        if duplicated:
            arrivals.append((0.02 * n + delay + 0.01, packet))
    pending = sorted(arrivals, key=lambda arrival: arrival[0])
    played: list[int] = []
    for now, packet in pending:
        while buffer.next_deadline is not None and buffer.next_deadline < now:
            frame = buffer.pop(buffer.next_deadline)
            assert frame is not None
            if frame.sequence is not None:
                played.append((frame.sequence - base_seq) & 0xFFFF)
        buffer.push(packet, now)
        assert len(buffer) <= buffer.settings.capacity
    assert played == sorted(set(played))


def test_a_packet_older_than_one_played_is_late_even_after_a_re_anchor() -> None:
    # Found by the property above: packet 2 arrives first and plays; 3 arrives so late that
    # playout re-anchors on it, which puts packet 0's timestamp ahead of the playout point.
    buffer = JitterBuffer()
    assert buffer.push(voice(2), 0.04) is PushOutcome.BUFFERED
    played = []
    for now, packet in ((0.145, voice(1)), (0.2475, voice(3)), (0.25, voice(0))):
        while buffer.next_deadline is not None and buffer.next_deadline < now:
            frame = buffer.pop(buffer.next_deadline)
            assert frame is not None
            played.append(frame.sequence)
        buffer.push(packet, now)
    assert buffer.counters.late == 2  # packets 1 and 0
    while len(buffer):
        frame = buffer.pop(buffer.next_deadline or 0.0)
        if frame is not None:
            played.append(frame.sequence)
    assert [seq for seq in played if seq is not None] == [2, 3]


def test_packets_never_land_before_frames_kept_across_a_re_anchor() -> None:
    # Found by the property above: packet 2 is buffered on one timeline, packet 11 re-anchors
    # playout after it, and packet 9, in between on the new timeline, would have played first.
    delays = [0.0, 0.125, 0.171875, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.0625, 0.25, 0.0]
    arrivals = sorted((0.02 * n + delay, n) for n, delay in enumerate(delays))
    buffer = JitterBuffer()
    played = []
    for now, n in arrivals:
        while buffer.next_deadline is not None and buffer.next_deadline < now:
            frame = buffer.pop(buffer.next_deadline)
            assert frame is not None
            if frame.sequence is not None:
                played.append(frame.sequence)
        buffer.push(voice(n), now)
    assert played == sorted(set(played))
    assert 2 in played  # the kept frame still plays
