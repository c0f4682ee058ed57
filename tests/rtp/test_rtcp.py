"""RTCP compound packets (RFC 3550 §6): SR, RR, SDES, BYE, skipping unknown types, exact errors."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telephony.rtp.rtcp import (
    Goodbye,
    ReceiverReport,
    ReportBlock,
    RtcpCompound,
    RtcpParseError,
    RtcpParseReason,
    SdesChunk,
    SdesItem,
    SdesItemType,
    SenderReport,
    SourceDescription,
    looks_like_rtcp,
    parse_compound,
    serialize_compound,
)

FIXTURES = Path(__file__).parent / "fixtures"
OUR_SSRC = 0x5EC0CA11
PEER_SSRC = 0x0B0E0B0E


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_sender_report_with_cname() -> None:
    data = fixture("rtcp_sr_sdes.bin")
    compound = parse_compound(data)
    sr, sdes = compound.packets
    assert sr == SenderReport(
        ssrc=OUR_SSRC,
        ntp_timestamp=0xE8A1B2C3D4E5F607,
        rtp_timestamp=0x12345678,
        packet_count=1500,
        octet_count=240000,
        reports=(
            ReportBlock(
                ssrc=PEER_SSRC,
                fraction_lost=12,
                cumulative_lost=3,
                highest_sequence=0x0001FFF0,
                jitter=57,
                last_sr=0x83AA7E80,
                delay_since_last_sr=0x00028000,
            ),
        ),
    )
    assert isinstance(sdes, SourceDescription)
    assert sdes.chunks[0].ssrc == OUR_SSRC
    assert sdes.chunks[0].cname == "cxos@192.0.2.10"
    assert compound.skipped_types == ()
    assert compound.serialize() == data


def test_receiver_report_sdes_and_bye() -> None:
    data = fixture("rtcp_rr_sdes_bye.bin")
    compound = parse_compound(data)
    rr, sdes, bye = compound.packets
    assert rr == ReceiverReport(ssrc=OUR_SSRC)
    assert isinstance(sdes, SourceDescription)
    assert bye == Goodbye(sources=(OUR_SSRC,), reason="call ended")
    assert serialize_compound(compound.packets) == data


def test_unknown_packet_types_are_skipped_by_length() -> None:
    compound = parse_compound(fixture("rtcp_rr_app_sdes.bin"))
    assert [type(p) for p in compound.packets] == [ReceiverReport, SourceDescription]
    assert compound.skipped_types == (204,)
    reparsed = parse_compound(compound.serialize())
    assert reparsed.packets == compound.packets
    assert reparsed.skipped_types == ()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("bad_rtcp_truncated_header.bin", RtcpParseReason.TRUNCATED_HEADER),
        ("bad_rtcp_version.bin", RtcpParseReason.BAD_VERSION),
        ("bad_rtcp_length.bin", RtcpParseReason.BAD_LENGTH),
        ("bad_rtcp_first_not_report.bin", RtcpParseReason.FIRST_NOT_REPORT),
        ("bad_rtcp_report_overflow.bin", RtcpParseReason.REPORT_OVERFLOW),
        ("bad_rtcp_sdes_unterminated.bin", RtcpParseReason.SDES_OVERFLOW),
        ("bad_rtcp_bye_overflow.bin", RtcpParseReason.BYE_OVERFLOW),
        ("bad_rtcp_padding_not_last.bin", RtcpParseReason.PADDING_NOT_LAST),
    ],
)
def test_malformed_fixture_fails_with_exact_reason(name: str, reason: RtcpParseReason) -> None:
    with pytest.raises(RtcpParseError) as caught:
        parse_compound(fixture(name))
    assert caught.value.reason is reason


def test_error_reports_where_the_bad_packet_starts() -> None:
    with pytest.raises(RtcpParseError) as caught:
        parse_compound(fixture("bad_rtcp_length.bin"))
    assert caught.value.offset == 8  # after the 8-octet RR
    assert "bad_length at octet 8" in str(caught.value)


def test_empty_datagram() -> None:
    with pytest.raises(RtcpParseError) as caught:
        parse_compound(b"")
    assert caught.value.reason is RtcpParseReason.EMPTY


def test_compound_not_starting_with_a_report_is_accepted_on_request() -> None:
    compound = parse_compound(fixture("bad_rtcp_first_not_report.bin"), require_report_first=False)
    assert [type(p) for p in compound.packets] == [SourceDescription, ReceiverReport]


def test_padding_on_the_last_packet_is_removed() -> None:
    rr = ReceiverReport(ssrc=OUR_SSRC).serialize()
    bye_body = struct.pack("!I", OUR_SSRC) + bytes((0, 0, 0, 4))
    padded_bye = struct.pack("!BBH", 0xA1, 203, 2) + bye_body
    compound = parse_compound(rr + padded_bye)
    assert compound.packets[1] == Goodbye(sources=(OUR_SSRC,))


@pytest.mark.parametrize("count", [0, 9])
def test_bad_padding_count(count: int) -> None:
    rr = ReceiverReport(ssrc=OUR_SSRC).serialize()
    padded = struct.pack("!BBH", 0xA1, 203, 1) + struct.pack("!I", OUR_SSRC)[:3] + bytes((count,))
    with pytest.raises(RtcpParseError) as caught:
        parse_compound(rr + padded)
    assert caught.value.reason is RtcpParseReason.BAD_PADDING


def test_sender_report_shorter_than_sender_info() -> None:
    with pytest.raises(RtcpParseError) as caught:
        parse_compound(struct.pack("!BBH", 0x80, 200, 1) + bytes(4))
    assert caught.value.reason is RtcpParseReason.TRUNCATED_BODY


def test_negative_cumulative_loss_round_trips() -> None:
    # Duplicates can make the cumulative count negative; the field is signed 24-bit (§6.4.1).
    block = ReportBlock(
        ssrc=1, fraction_lost=0, cumulative_lost=-3, highest_sequence=70000, jitter=12
    )
    report = ReceiverReport(ssrc=2, reports=(block,))
    assert parse_compound(report.serialize()).packets == (report,)
    assert block.serialize()[4:8] == bytes((0x00, 0xFF, 0xFF, 0xFD))


def test_sdes_chunk_padding_always_ends_with_a_null_item() -> None:
    # 4 (SSRC) + 2 + 2 octets of item: the terminating null needs a whole extra word.
    chunk = SdesChunk(ssrc=1, items=(SdesItem(item_type=SdesItemType.CNAME, value="ab"),))
    assert chunk.serialize() == struct.pack("!I", 1) + b"\x01\x02ab" + bytes(4)


def test_sdes_with_several_items_and_chunks() -> None:
    sdes = SourceDescription(
        chunks=(
            SdesChunk(
                ssrc=1,
                items=(
                    SdesItem(item_type=SdesItemType.CNAME, value="agent-7@cc.example"),
                    SdesItem(item_type=SdesItemType.TOOL, value="CXOS"),
                ),
            ),
            SdesChunk(ssrc=2, items=(SdesItem(item_type=SdesItemType.NAME, value="Zoë"),)),
        )
    )
    compound = RtcpCompound(packets=(ReceiverReport(ssrc=1), sdes))
    assert parse_compound(compound.serialize()).packets == compound.packets
    assert sdes.chunks[1].cname is None


def test_invalid_utf8_text_survives_a_round_trip() -> None:
    rr = ReceiverReport(ssrc=1).serialize()
    bye = struct.pack("!BBHI", 0x81, 203, 2, 1) + b"\x02\xff\xfe\x00"
    parsed = parse_compound(rr + bye)
    assert parsed.serialize() == rr + bye


@pytest.mark.parametrize(
    "build",
    [
        lambda: ReportBlock(
            ssrc=1, fraction_lost=256, cumulative_lost=0, highest_sequence=0, jitter=0
        ),
        lambda: ReportBlock(
            ssrc=1, fraction_lost=0, cumulative_lost=0x800000, highest_sequence=0, jitter=0
        ),
        lambda: ReceiverReport(
            ssrc=1,
            reports=tuple(
                ReportBlock(
                    ssrc=i, fraction_lost=0, cumulative_lost=0, highest_sequence=0, jitter=0
                )
                for i in range(32)
            ),
        ),
        lambda: ReceiverReport(ssrc=1, profile_extension=b"abc"),
        lambda: Goodbye(sources=(1,), reason="x" * 256),
        lambda: SdesItem(item_type=0, value="end is not an item"),
        lambda: SenderReport(
            ssrc=1, ntp_timestamp=1 << 64, rtp_timestamp=0, packet_count=0, octet_count=0
        ),
    ],
)
def test_values_that_do_not_fit_the_wire_format_are_refused(build: object) -> None:
    with pytest.raises(ValueError):
        build()  # type: ignore[operator]


def test_rtcp_demultiplexing_by_packet_type() -> None:
    assert looks_like_rtcp(fixture("rtcp_sr_sdes.bin"))
    assert not looks_like_rtcp(fixture("rtp_pcmu.bin"))
    assert not looks_like_rtcp(fixture("rtp_telephone_event.bin"))
    assert not looks_like_rtcp(b"\x80")


# --- property tests -------------------------------------------------------------------------------

u32 = st.integers(0, 2**32 - 1)
text = st.text(max_size=40)
blocks = st.builds(
    ReportBlock,
    ssrc=u32,
    fraction_lost=st.integers(0, 255),
    cumulative_lost=st.integers(-0x800000, 0x7FFFFF),
    highest_sequence=u32,
    jitter=u32,
    last_sr=u32,
    delay_since_last_sr=u32,
)
block_lists = st.lists(blocks, max_size=3).map(tuple)
extensions = st.binary(max_size=8).map(lambda b: b + bytes(-len(b) % 4))
reports = st.one_of(
    st.builds(
        SenderReport,
        ssrc=u32,
        ntp_timestamp=st.integers(0, 2**64 - 1),
        rtp_timestamp=u32,
        packet_count=u32,
        octet_count=u32,
        reports=block_lists,
        profile_extension=extensions,
    ),
    st.builds(ReceiverReport, ssrc=u32, reports=block_lists, profile_extension=extensions),
)
items = st.builds(SdesItem, item_type=st.integers(1, 255), value=text)
chunks = st.builds(SdesChunk, ssrc=u32, items=st.lists(items, max_size=3).map(tuple))
others = st.one_of(
    st.builds(SourceDescription, chunks=st.lists(chunks, max_size=3).map(tuple)),
    st.builds(Goodbye, sources=st.lists(u32, max_size=4).map(tuple), reason=st.none() | text),
)


@given(reports, st.lists(others, max_size=3))
def test_serialize_then_parse_gives_the_same_packets(first: object, rest: list[object]) -> None:
    packets = (first, *rest)
    data = serialize_compound(packets)  # type: ignore[arg-type]
    assert len(data) % 4 == 0
    assert parse_compound(data).packets == packets


@given(st.binary(max_size=120))
def test_parse_raises_only_parse_errors_on_any_bytes(data: bytes) -> None:
    try:
        compound = parse_compound(data, require_report_first=False)
    except RtcpParseError:
        return
    assert parse_compound(compound.serialize(), require_report_first=False) == RtcpCompound(
        packets=compound.packets
    )


@given(st.data())
def test_corrupting_a_valid_compound_raises_only_parse_errors(data: st.DataObject) -> None:
    original = bytearray(
        fixture(data.draw(st.sampled_from(["rtcp_sr_sdes.bin", "rtcp_rr_sdes_bye.bin"])))
    )
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(original) - 1))
        original[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(original)))
    try:
        compound = parse_compound(bytes(original[:cut]))
    except RtcpParseError:
        return
    assert parse_compound(compound.serialize()).packets == compound.packets
