"""RTP packet parsing and serialisation (RFC 3550 §5.1) and modular sequence arithmetic (§A.1)."""

from __future__ import annotations

import dataclasses
import runpy
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telephony.rtp.packet import (
    HeaderExtension,
    RtpPacket,
    RtpParseError,
    RtpParseReason,
    build_header,
    extend_sequence,
    extend_timestamp,
    pack_header_into,
    parse,
    seq_diff,
    seq_newer,
    ts_diff,
    ts_newer,
)

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_fixture_files_match_their_generator() -> None:
    generator = runpy.run_path(str(FIXTURES / "make_fixtures.py"))
    for name, data in generator["build_fixtures"]().items():
        assert fixture(name) == data, name


@pytest.mark.parametrize(
    "name",
    [
        "rtp_pcmu.bin",
        "rtp_pcmu_marker.bin",
        "rtp_pcma_csrc.bin",
        "rtp_extension.bin",
        "rtp_padding.bin",
        "rtp_telephone_event.bin",
        "rtp_wrap.bin",
    ],
)
def test_fixture_round_trips_octet_for_octet(name: str) -> None:
    data = fixture(name)
    assert parse(data).serialize() == data


def test_plain_pcmu_packet_fields() -> None:
    packet = parse(fixture("rtp_pcmu.bin"))
    assert packet.version == 2
    assert packet.payload_type == 0
    assert packet.marker is False
    assert packet.sequence == 0x1234
    assert packet.timestamp == 0x00010000
    assert packet.ssrc == 0x5EC0CA11
    assert packet.csrc == ()
    assert packet.extension is None
    assert packet.padding == 0
    assert len(packet.payload) == 160


def test_marker_bit_is_separate_from_payload_type() -> None:
    packet = parse(fixture("rtp_pcmu_marker.bin"))
    assert packet.marker is True
    assert packet.payload_type == 0


def test_csrc_list() -> None:
    packet = parse(fixture("rtp_pcma_csrc.bin"))
    assert packet.payload_type == 8
    assert packet.csrc == (0x11111111, 0x22222222)
    assert len(packet.payload) == 160


def test_header_extension_is_split_from_payload() -> None:
    packet = parse(fixture("rtp_extension.bin"))
    assert packet.extension == HeaderExtension(profile=0xBEDE, data=bytes((0x10, 0x8A, 0, 0)))
    assert len(packet.payload) == 160


def test_padding_is_removed_from_payload_and_counted() -> None:
    packet = parse(fixture("rtp_padding.bin"))
    assert packet.padding == 4
    assert len(packet.payload) == 20


def test_telephone_event_payload_is_untouched() -> None:
    packet = parse(fixture("rtp_telephone_event.bin"))
    assert packet.payload_type == 101
    assert packet.payload == bytes((5, 0x8A, 0x03, 0x20))


def test_extreme_field_values() -> None:
    packet = parse(fixture("rtp_wrap.bin"))
    assert (packet.sequence, packet.timestamp, packet.ssrc) == (0xFFFF, 0xFFFFFF60, 0xFFFFFFFF)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("bad_rtp_truncated.bin", RtpParseReason.TRUNCATED_HEADER),
        ("bad_rtp_version.bin", RtpParseReason.BAD_VERSION),
        ("bad_rtp_csrc_overflow.bin", RtpParseReason.CSRC_OVERFLOW),
        ("bad_rtp_extension_header.bin", RtpParseReason.EXTENSION_OVERFLOW),
        ("bad_rtp_extension_overflow.bin", RtpParseReason.EXTENSION_OVERFLOW),
        ("bad_rtp_padding_overflow.bin", RtpParseReason.PADDING_OVERFLOW),
        ("bad_rtp_zero_padding.bin", RtpParseReason.ZERO_PADDING),
    ],
)
def test_malformed_fixture_fails_with_exact_reason(name: str, reason: RtpParseReason) -> None:
    with pytest.raises(RtpParseError) as caught:
        parse(fixture(name))
    assert caught.value.reason is reason
    assert str(caught.value).startswith(reason.value)


def test_parse_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="truncated_header"):
        parse(b"\x80\x00")


def test_padding_flag_with_header_only_overflows() -> None:
    # The count octet would have to be part of the header itself.
    with pytest.raises(RtpParseError) as caught:
        parse(bytes((0xA0, 0)) + bytes(9) + b"\x01")
    assert caught.value.reason is RtpParseReason.PADDING_OVERFLOW


def test_padding_that_fills_everything_after_the_header_is_valid() -> None:
    data = bytes((0xA0, 0)) + bytes(10) + bytes((0, 0, 0, 4))
    packet = parse(data)
    assert (packet.payload, packet.padding) == (b"", 4)


def test_fast_path_packet_is_an_ordinary_frozen_value() -> None:
    packet = parse(fixture("rtp_pcmu.bin"))
    constructed = RtpPacket(
        payload_type=0,
        sequence=0x1234,
        timestamp=0x00010000,
        ssrc=0x5EC0CA11,
        payload=packet.payload,
    )
    assert packet == constructed
    assert hash(packet) == hash(constructed)
    with pytest.raises(dataclasses.FrozenInstanceError):
        packet.sequence = 1  # type: ignore[misc]
    assert dataclasses.replace(packet, sequence=9).sequence == 9


@pytest.mark.parametrize(
    "fields",
    [
        {"payload_type": 128},
        {"sequence": 65536},
        {"sequence": -1},
        {"timestamp": 1 << 32},
        {"ssrc": -1},
        {"padding": 256},
        {"csrc": tuple(range(16))},
        {"csrc": (1 << 32,)},
    ],
)
def test_out_of_range_fields_are_refused(fields: dict[str, object]) -> None:
    values: dict[str, object] = {"payload_type": 0, "sequence": 0, "timestamp": 0, "ssrc": 0}
    values.update(fields)
    with pytest.raises(ValueError):
        RtpPacket(**values)  # type: ignore[arg-type]


def test_extension_must_be_whole_words() -> None:
    with pytest.raises(ValueError, match="32-bit words"):
        HeaderExtension(profile=0xBEDE, data=b"\x01\x02")


def test_build_header_matches_serialize_and_wraps_counters() -> None:
    packet = RtpPacket(payload_type=8, marker=True, sequence=0, timestamp=5, ssrc=77, payload=b"x")
    assert build_header(8, True, 65536, (1 << 32) + 5, 77) + b"x" == packet.serialize()


def test_pack_header_into_reuses_a_buffer() -> None:
    buffer = bytearray(12 + 3)
    buffer[12:] = b"abc"
    pack_header_into(buffer, payload_type=0, marker=False, sequence=70000, timestamp=9, ssrc=1)
    packet = parse(bytes(buffer))
    assert (packet.sequence, packet.timestamp, packet.ssrc) == (70000 - 65536, 9, 1)
    assert packet.payload == b"abc"


# --- modular arithmetic ---------------------------------------------------------------------------


def test_sequence_arithmetic_across_wraparound() -> None:
    assert seq_diff(2, 65534) == 4
    assert seq_diff(65534, 2) == -4
    assert seq_newer(0, 65535)
    assert not seq_newer(65535, 0)
    assert not seq_newer(7, 7)
    assert extend_sequence(2, 65534) == 65538
    assert extend_sequence(65535, 65538) == 65535
    assert extend_sequence(10, 3 * 65536 + 20) == 3 * 65536 + 10


def test_timestamp_arithmetic_across_wraparound() -> None:
    assert ts_diff(0x60, 0xFFFFFF60) == 0x100
    assert ts_diff(0xFFFFFF60, 0x60) == -0x100
    assert ts_newer(0, 0xFFFFFF60)
    assert not ts_newer(0xFFFFFF60, 0)
    assert extend_timestamp(0x60, 0xFFFFFF60) == (1 << 32) + 0x60


@given(st.integers(0, 65535), st.integers(-32767, 32767))
def test_seq_diff_inverts_modular_addition(base: int, step: int) -> None:
    later = (base + step) & 0xFFFF
    assert seq_diff(later, base) == step
    assert seq_newer(later, base) == (step > 0)


# --- property tests -------------------------------------------------------------------------------

words = st.binary(max_size=16).map(lambda b: b + bytes(-len(b) % 4))
packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 65535),
    timestamp=st.integers(0, 2**32 - 1),
    ssrc=st.integers(0, 2**32 - 1),
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 2**32 - 1), max_size=15).map(tuple),
    extension=st.none() | st.builds(HeaderExtension, profile=st.integers(0, 0xFFFF), data=words),
    padding=st.integers(0, 255),
)


@given(packets)
def test_serialize_then_parse_gives_the_same_packet(packet: RtpPacket) -> None:
    assert parse(packet.serialize()) == packet


@given(st.binary(max_size=80))
def test_parse_raises_only_parse_errors_on_any_bytes(data: bytes) -> None:
    try:
        packet = parse(data)
    except RtpParseError:
        return
    assert parse(packet.serialize()) == packet


@given(st.integers(0x80, 0xBF), st.binary(max_size=80))
def test_parse_of_version_2_garbage_is_stable(first: int, rest: bytes) -> None:
    # Version-2 first octets reach every branch (padding, extension, CSRC count).
    data = bytes((first,)) + rest
    try:
        packet = parse(data)
    except RtpParseError as error:
        assert error.reason is not RtpParseReason.BAD_VERSION
        return
    assert len(packet.serialize()) == len(data)
