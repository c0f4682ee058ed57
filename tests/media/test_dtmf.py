"""RFC 4733 telephone-events: payload codec, receiver state machine and sender."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telephony.rtp.dtmf import (
    DTMF_KEYS,
    MAX_DURATION,
    DtmfDigit,
    DtmfKeyDown,
    DtmfOutput,
    DtmfReceiver,
    ReceiverState,
    TelephoneEvent,
    TelephoneEventError,
    TelephoneEventPacket,
    digit_for_event,
    event_for_digit,
    telephone_event_packets,
)

FIXTURES = Path(__file__).parent / "fixtures"
START_TS = 123_456


# -- payload ------------------------------------------------------------------------


def test_payload_round_trip_of_a_known_packet() -> None:
    # Event 5, E bit, volume 10 (-10 dBm0), duration 800 units (100 ms at 8 kHz).
    event = TelephoneEvent.parse(bytes.fromhex("058a0320"))
    assert event == TelephoneEvent(event=5, end=True, volume=10, duration=800)
    assert event.digit == "5"
    assert event.to_bytes() == bytes.fromhex("058a0320")


def test_reserved_bit_is_ignored_on_parse_and_cleared_on_serialize() -> None:
    event = TelephoneEvent.parse(bytes.fromhex("0bca00a0"))  # E and R set, volume 10
    assert (event.event, event.end, event.volume, event.digit) == (11, True, 10, "#")
    assert event.to_bytes() == bytes.fromhex("0b8a00a0")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "telephone-event payload is 0 bytes, expected 4"),
        (b"\x05\x8a\x03", "telephone-event payload is 3 bytes, expected 4"),
        (bytes(8), "telephone-event payload is 8 bytes, expected 4"),
    ],
)
def test_parse_errors_say_why(payload: bytes, message: str) -> None:
    with pytest.raises(TelephoneEventError) as caught:
        TelephoneEvent.parse(payload)
    assert caught.value.reason == message
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"event": 256, "end": False, "volume": 0, "duration": 0}, "does not fit 8 bits"),
        ({"event": 1, "end": False, "volume": 64, "duration": 0}, "outside 0..63"),
        ({"event": 1, "end": False, "volume": 0, "duration": 65536}, "does not fit 16 bits"),
        ({"event": 1, "end": False, "volume": 0, "duration": -1}, "does not fit 16 bits"),
    ],
)
def test_invalid_events_are_refused(fields: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TelephoneEvent(**fields)  # type: ignore[arg-type]


@given(st.binary(min_size=4, max_size=4))
def test_any_four_bytes_parse_and_reserialize_without_the_reserved_bit(payload: bytes) -> None:
    event = TelephoneEvent.parse(payload)
    expected = bytes([payload[0], payload[1] & 0xBF, payload[2], payload[3]])
    assert event.to_bytes() == expected


def test_key_names() -> None:
    assert [event_for_digit(key) for key in DTMF_KEYS] == list(range(17))
    assert event_for_digit("*") == 10 and event_for_digit("#") == 11
    assert event_for_digit("d") == 15 and event_for_digit("!") == 16
    assert digit_for_event(16) == "!" and digit_for_event(32) is None
    for bad in ("E", "12", "", " "):
        with pytest.raises(ValueError, match="is not a DTMF key"):
            event_for_digit(bad)


# -- receiver -----------------------------------------------------------------------


def feed(
    receiver: DtmfReceiver,
    packets: Iterable[TelephoneEventPacket],
    *,
    start_ts: int = START_TS,
    start: float = 0.0,
    clock_rate: int = 8000,
) -> list[DtmfOutput]:
    outputs: list[DtmfOutput] = []
    for packet in packets:
        now = start + packet.send_offset / clock_rate
        outputs.extend(
            receiver.receive(start_ts + packet.timestamp_offset, packet.marker, packet.payload, now)
        )
    return outputs


def digits(outputs: Sequence[DtmfOutput]) -> list[DtmfDigit]:
    return [output for output in outputs if isinstance(output, DtmfDigit)]


def test_capture_fixture_reports_one_digit() -> None:
    receiver = DtmfReceiver()
    outputs: list[DtmfOutput] = []
    for line in (FIXTURES / "rfc4733_key5.txt").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        arrival, timestamp, marker, payload = line.split()
        raw = bytes.fromhex(payload)
        assert TelephoneEvent.parse(raw).to_bytes() == raw
        outputs.extend(receiver.receive(int(timestamp), marker == "1", raw, float(arrival)))
    assert outputs == [
        DtmfKeyDown(digit="5", rtp_timestamp=3_000_000_000),
        DtmfDigit(digit="5", duration_ms=100, rtp_timestamp=3_000_000_000, ended_by="end_bit"),
    ]
    assert receiver.state is ReceiverState.ENDED
    assert receiver.next_deadline() is None
    assert receiver.dropped == {"end after the event was reported": 2}


def test_sender_and_receiver_agree_on_every_key() -> None:
    receiver = DtmfReceiver()
    reported = []
    for index, key in enumerate(DTMF_KEYS):
        packets = telephone_event_packets(key, duration_ms=120)
        outputs = feed(receiver, packets, start_ts=START_TS + index * 4000, start=index * 0.5)
        assert outputs[0] == DtmfKeyDown(digit=key, rtp_timestamp=START_TS + index * 4000)
        reported.extend(digits(outputs))
    assert [(d.digit, d.duration_ms, d.ended_by) for d in reported] == [
        (key, 120, "end_bit") for key in DTMF_KEYS
    ]


def test_duplicated_packets_report_once() -> None:
    packets = telephone_event_packets("7", duration_ms=200)
    doubled = [packet for packet in packets for _ in range(2)]
    outputs = feed(DtmfReceiver(), doubled)
    assert len(digits(outputs)) == 1
    assert len([o for o in outputs if isinstance(o, DtmfKeyDown)]) == 1


def test_lost_start_packets_still_report_the_digit() -> None:
    packets = telephone_event_packets("3", duration_ms=160)
    outputs = feed(DtmfReceiver(), packets[2:])  # marker packet and the next one lost
    assert outputs[0] == DtmfKeyDown(digit="3", rtp_timestamp=START_TS)
    assert digits(outputs) == [
        DtmfDigit(digit="3", duration_ms=160, rtp_timestamp=START_TS, ended_by="end_bit")
    ]


def test_only_an_end_packet_arrives() -> None:
    packets = telephone_event_packets("9", duration_ms=100)
    outputs = feed(DtmfReceiver(), packets[-1:])
    assert [type(output) for output in outputs] == [DtmfKeyDown, DtmfDigit]
    assert digits(outputs)[0].duration_ms == 100


def test_lost_end_packets_end_the_digit_by_timeout() -> None:
    receiver = DtmfReceiver(end_timeout=0.25)
    packets = [p for p in telephone_event_packets("4", duration_ms=100) if p.payload[1] < 0x80]
    outputs = feed(receiver, packets)
    assert digits(outputs) == []
    last_arrival = packets[-1].send_offset / 8000
    assert receiver.next_deadline() == pytest.approx(last_arrival + 0.25)
    assert receiver.handle_timer(last_arrival + 0.2) == ()
    assert receiver.handle_timer(last_arrival + 0.25) == (
        DtmfDigit(digit="4", duration_ms=80, rtp_timestamp=START_TS, ended_by="timeout"),
    )
    assert receiver.next_deadline() is None
    # A straggling end packet after the timeout is not a second key press.
    end = telephone_event_packets("4", duration_ms=100)[-1]
    assert receiver.receive(START_TS, False, end.payload, last_arrival + 0.4) == ()
    assert receiver.handle_timer(10.0) == ()


def test_overdue_timer_is_honoured_before_the_next_packet() -> None:
    receiver = DtmfReceiver(end_timeout=0.25)
    first = telephone_event_packets("1", duration_ms=100)[:3]  # end packets lost
    feed(receiver, first)
    second = telephone_event_packets("1", duration_ms=100)
    outputs = feed(receiver, second, start_ts=START_TS + 8000, start=1.0)
    assert [(d.digit, d.ended_by) for d in digits(outputs)] == [
        ("1", "timeout"),
        ("1", "end_bit"),
    ]


def test_new_event_ends_the_previous_one_when_its_end_was_lost() -> None:
    receiver = DtmfReceiver(end_timeout=1.0)
    first = [p for p in telephone_event_packets("1", duration_ms=100) if p.payload[1] < 0x80]
    feed(receiver, first)
    outputs = feed(receiver, telephone_event_packets("2"), start_ts=START_TS + 1200, start=0.15)
    assert outputs[0] == DtmfDigit(
        digit="1", duration_ms=80, rtp_timestamp=START_TS, ended_by="new_event"
    )
    assert outputs[1] == DtmfKeyDown(digit="2", rtp_timestamp=START_TS + 1200)
    assert [d.digit for d in digits(outputs)] == ["1", "2"]


def test_same_key_twice_is_two_digits() -> None:
    receiver = DtmfReceiver()
    packets = telephone_event_packets("0", duration_ms=80)
    outputs = feed(receiver, packets) + feed(receiver, packets, start_ts=START_TS + 2400, start=0.3)
    assert [d.digit for d in digits(outputs)] == ["0", "0"]


def test_late_packets_of_an_older_event_are_dropped() -> None:
    receiver = DtmfReceiver()
    old = telephone_event_packets("5", duration_ms=100)
    feed(receiver, old[:2])
    new = telephone_event_packets("6", duration_ms=100)
    outputs = feed(receiver, new, start_ts=START_TS + 1600, start=0.2)
    # A reordered end packet of the first event arrives after the second one began.
    outputs += receiver.receive(START_TS, False, old[-1].payload, 0.45)
    assert [(d.digit, d.ended_by) for d in digits(outputs)] == [
        ("5", "new_event"),
        ("6", "end_bit"),
    ]
    assert receiver.dropped["older than the latest event"] == 1


def test_reordered_update_keeps_the_longest_duration() -> None:
    receiver = DtmfReceiver()
    packets = list(telephone_event_packets("8", duration_ms=100))
    packets[1], packets[2] = packets[2], packets[1]
    outputs = feed(receiver, packets)
    assert digits(outputs)[0].duration_ms == 100


def test_timestamps_wrap_around_32_bits() -> None:
    receiver = DtmfReceiver()
    near_end = (1 << 32) - 400
    outputs = feed(receiver, telephone_event_packets("1"), start_ts=near_end)
    outputs += feed(receiver, telephone_event_packets("2"), start_ts=near_end + 2000, start=0.3)
    assert [d.digit for d in digits(outputs)] == ["1", "2"]
    assert digits(outputs)[1].rtp_timestamp == (near_end + 2000) % (1 << 32)


def test_long_event_is_cut_into_segments_and_glued_back() -> None:
    packets = telephone_event_packets("#", duration_ms=20_000)  # 160000 units > 0xFFFF
    offsets = sorted({packet.timestamp_offset for packet in packets})
    assert offsets == [0, MAX_DURATION, 2 * MAX_DURATION]
    assert sum(packet.marker for packet in packets) == 1
    segment_ends = [
        p
        for p in packets
        if TelephoneEvent.parse(p.payload).duration == MAX_DURATION
        and not TelephoneEvent.parse(p.payload).end
    ]
    assert len(segment_ends) == 6  # two segment boundaries, each sent three times
    receiver = DtmfReceiver()
    outputs = feed(receiver, packets, start_ts=(1 << 32) - 70_000)
    assert len(digits(outputs)) == 1
    assert digits(outputs)[0].duration_ms == 20_000
    assert digits(outputs)[0].rtp_timestamp == (1 << 32) - 70_000


def test_duration_field_wrapping_in_place_is_followed() -> None:
    # A sender that lets the 16-bit duration wrap instead of starting a segment.
    receiver = DtmfReceiver()
    outputs: list[DtmfOutput] = []
    for tick in range(1, 501):  # 10 s in 20 ms updates
        units = tick * 160
        end = tick == 500
        payload = TelephoneEvent(event=2, end=end, volume=10, duration=units % 65536)
        outputs += receiver.receive(START_TS, tick == 1, payload.to_bytes(), tick * 0.02)
    assert [(d.digit, d.duration_ms) for d in digits(outputs)] == [("2", 10_000)]


def test_malformed_and_non_dtmf_payloads_are_counted_not_raised() -> None:
    receiver = DtmfReceiver()
    assert receiver.receive(1, True, b"\x05\x8a", 0.0) == ()
    fax_tone = TelephoneEvent(event=32, end=False, volume=10, duration=160).to_bytes()
    assert receiver.receive(1, True, fax_tone, 0.0) == ()
    assert receiver.state is ReceiverState.IDLE
    assert dict(receiver.dropped) == {
        "malformed: telephone-event payload is 2 bytes, expected 4": 1,
        "event 32 is not a DTMF key": 1,
    }


def test_event_code_change_under_one_timestamp_is_dropped() -> None:
    receiver = DtmfReceiver()
    first = TelephoneEvent(event=1, end=False, volume=10, duration=160).to_bytes()
    other = TelephoneEvent(event=2, end=True, volume=10, duration=320).to_bytes()
    receiver.receive(START_TS, True, first, 0.02)
    assert receiver.receive(START_TS, False, other, 0.04) == ()
    assert receiver.dropped == {"event code changed within one event": 1}
    assert receiver.state is ReceiverState.ACTIVE


def test_wideband_clock_rate() -> None:
    receiver = DtmfReceiver(clock_rate=16000)
    packets = telephone_event_packets("A", duration_ms=140, clock_rate=16000)
    outputs = feed(receiver, packets, clock_rate=16000)
    assert digits(outputs)[0].duration_ms == 140


def test_receiver_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="clock rate"):
        DtmfReceiver(clock_rate=0)
    with pytest.raises(ValueError, match="end timeout"):
        DtmfReceiver(end_timeout=0)


# -- sender -------------------------------------------------------------------------


def test_sender_packet_sequence_follows_rfc4733() -> None:
    packets = telephone_event_packets("5", duration_ms=100, volume=7)
    events = [TelephoneEvent.parse(packet.payload) for packet in packets]
    # Updates every 20 ms with the duration so far, the first marked (§2.5.1.2) ...
    assert [p.marker for p in packets] == [True] + [False] * 6
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    # ... the final packet three times, one tick apart (§2.5.1.4), all at one timestamp.
    assert [p.send_offset for p in packets] == [160, 320, 480, 640, 800, 960, 1120]
    assert {p.timestamp_offset for p in packets} == {0}
    assert {(e.event, e.volume) for e in events} == {(5, 7)}
    assert packets[-1].payload == packets[-2].payload == packets[-3].payload


def test_sender_rounds_a_short_press_up_to_one_packet() -> None:
    packets = telephone_event_packets("!", duration_ms=10)
    events = [TelephoneEvent.parse(packet.payload) for packet in packets]
    assert [(e.event, e.end, e.duration) for e in events] == [(16, True, 80)] * 3
    assert packets[0].marker


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"digit": "X"}, "'X' is not a DTMF key"),
        ({"digit": "1", "duration_ms": 0}, "duration must be positive"),
        ({"digit": "1", "ptime_ms": 0}, "interval must be positive"),
        ({"digit": "1", "volume": 70}, "outside 0..63"),
    ],
)
def test_sender_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        telephone_event_packets(**kwargs)  # type: ignore[arg-type]
