"""RTCP compound packets (RFC 3550 §6): sender and receiver reports, SDES and BYE.

`parse_compound` checks a datagram against the validity rules of RFC 3550 §A.2 and returns the
packets it understands. Packet types it does not know (APP, feedback, XR, ...) are skipped by their
length field, as §6.1 asks, and listed in `RtcpCompound.skipped_types`; a length that does not add
up is an error. Every failure is an `RtcpParseError` carrying a `reason`; nothing else is raised,
whatever the bytes.

Text in SDES items and BYE reasons is UTF-8 (§6.5). Octets that are not valid UTF-8 are kept as
surrogate escapes, so a parsed packet serialises back to the octets it came from.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Final

RTCP_VERSION: Final = 2
MAX_COUNT: Final = 31
"""A 5-bit count field: at most 31 report blocks, SDES chunks or BYE sources per packet."""

# RFC 3550 §6.4.1/§6.4.2 and §6.5/§6.6 packet types.
SENDER_REPORT_TYPE: Final = 200
RECEIVER_REPORT_TYPE: Final = 201
SDES_TYPE: Final = 202
BYE_TYPE: Final = 203

_PADDING_BIT: Final = 0x20
_COUNT_MASK: Final = 0x1F
_TEXT_ENCODING: Final = "utf-8"
_TEXT_ERRORS: Final = "surrogateescape"

# Common header: V/P/count, packet type, length in 32-bit words minus one (§6.4.1).
_HEADER: Final = struct.Struct("!BBH")
# SR sender info: SSRC, NTP timestamp, RTP timestamp, packet count, octet count (§6.4.1).
_SENDER_INFO: Final = struct.Struct("!IQIII")
# Report block: SSRC, fraction lost + cumulative lost, extended highest sequence, jitter, LSR,
# DLSR (§6.4.1).
_REPORT_BLOCK: Final = struct.Struct("!IIIIII")
_WORD: Final = struct.Struct("!I")


class RtcpParseReason(StrEnum):
    """Which RFC 3550 §6/§A.2 rule an RTCP datagram broke."""

    EMPTY = "empty"
    TRUNCATED_HEADER = "truncated_header"
    """Fewer than 4 octets left where a packet header should start."""
    BAD_VERSION = "bad_version"
    BAD_LENGTH = "bad_length"
    """A length field points past the end of the datagram."""
    PADDING_NOT_LAST = "padding_not_last"
    """Only the last packet of a compound may carry padding (§A.2)."""
    BAD_PADDING = "bad_padding"
    """Padding count of 0, or larger than the packet body."""
    FIRST_NOT_REPORT = "first_not_report"
    """A compound packet must start with an SR or RR (§6.1)."""
    TRUNCATED_BODY = "truncated_body"
    """An SR or RR too short for its sender SSRC / sender info."""
    REPORT_OVERFLOW = "report_overflow"
    """The report count announces more blocks than the packet holds."""
    SDES_OVERFLOW = "sdes_overflow"
    """An SDES chunk or item runs past the end of the packet."""
    BYE_OVERFLOW = "bye_overflow"
    """The BYE source count or reason length runs past the end of the packet."""


class RtcpParseError(ValueError):
    """An RTCP datagram is malformed; `reason` says why, `offset` where (octets from the start)."""

    def __init__(self, reason: RtcpParseReason, detail: str, *, offset: int = 0) -> None:
        super().__init__(f"{reason.value} at octet {offset}: {detail}")
        self.reason = reason
        self.detail = detail
        self.offset = offset


class SdesItemType(IntEnum):
    """SDES item types of RFC 3550 §6.5 (0 ends an item list and is not an item)."""

    CNAME = 1
    NAME = 2
    EMAIL = 3
    PHONE = 4
    LOC = 5
    TOOL = 6
    NOTE = 7
    PRIV = 8


def _check_u32(name: str, value: int) -> None:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{name}={value} is not a 32-bit unsigned value")


def _check_count(name: str, items: tuple[object, ...]) -> None:
    if len(items) > MAX_COUNT:
        raise ValueError(f"{len(items)} {name} do not fit a 5-bit count (at most {MAX_COUNT})")


def _encode_text(text: str) -> bytes:
    return text.encode(_TEXT_ENCODING, _TEXT_ERRORS)


def _decode_text(raw: bytes) -> str:
    return raw.decode(_TEXT_ENCODING, _TEXT_ERRORS)


def _header(count: int, packet_type: int, body_size: int) -> bytes:
    # body_size is always a whole number of words here; length excludes the header word (§6.4.1).
    return _HEADER.pack(0x80 | count, packet_type, body_size // 4)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportBlock:
    """Reception statistics about one source (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int
    """Fraction of packets lost since the previous report, as a fixed-point number over 256."""
    cumulative_lost: int
    """Packets lost since reception began; signed 24-bit (duplicates can make it negative)."""
    highest_sequence: int
    """Extended highest sequence number received (cycles in the top 16 bits)."""
    jitter: int
    """Interarrival jitter in timestamp units (§6.4.1, §A.8)."""
    last_sr: int = 0
    """Middle 32 bits of the NTP timestamp of the last SR from this source; 0 if none."""
    delay_since_last_sr: int = 0
    """Delay since that SR was received, in units of 1/65536 s; 0 if none."""

    def __post_init__(self) -> None:
        for name in ("ssrc", "highest_sequence", "jitter", "last_sr", "delay_since_last_sr"):
            _check_u32(name, getattr(self, name))
        if not 0 <= self.fraction_lost <= 0xFF:
            raise ValueError(f"fraction_lost={self.fraction_lost} is not in 0..255")
        if not -0x800000 <= self.cumulative_lost <= 0x7FFFFF:
            raise ValueError(f"cumulative_lost={self.cumulative_lost} is not a signed 24-bit value")

    def serialize(self) -> bytes:
        return _REPORT_BLOCK.pack(
            self.ssrc,
            self.fraction_lost << 24 | self.cumulative_lost & 0xFFFFFF,
            self.highest_sequence,
            self.jitter,
            self.last_sr,
            self.delay_since_last_sr,
        )


def _check_extension(extension: bytes) -> None:
    if len(extension) % 4:
        raise ValueError(f"profile extension of {len(extension)} octets is not whole words")


@dataclass(frozen=True, slots=True, kw_only=True)
class SenderReport:
    """SR: sender info plus reception reports (RFC 3550 §6.4.1)."""

    ssrc: int
    ntp_timestamp: int
    """64-bit NTP wallclock time at which this report was sent (see `ntp_from_unix`)."""
    rtp_timestamp: int
    """The same instant in the media clock of this source."""
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    profile_extension: bytes = b""

    def __post_init__(self) -> None:
        for name in ("ssrc", "rtp_timestamp", "packet_count", "octet_count"):
            _check_u32(name, getattr(self, name))
        if not 0 <= self.ntp_timestamp < 1 << 64:
            raise ValueError(f"ntp_timestamp={self.ntp_timestamp} is not a 64-bit value")
        _check_count("report blocks", self.reports)
        _check_extension(self.profile_extension)

    def serialize(self) -> bytes:
        body = b"".join(
            (
                _SENDER_INFO.pack(
                    self.ssrc,
                    self.ntp_timestamp,
                    self.rtp_timestamp,
                    self.packet_count,
                    self.octet_count,
                ),
                *(block.serialize() for block in self.reports),
                self.profile_extension,
            )
        )
        return _header(len(self.reports), SENDER_REPORT_TYPE, len(body)) + body


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiverReport:
    """RR: reception reports from a participant that is not sending (RFC 3550 §6.4.2)."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    profile_extension: bytes = b""

    def __post_init__(self) -> None:
        _check_u32("ssrc", self.ssrc)
        _check_count("report blocks", self.reports)
        _check_extension(self.profile_extension)

    def serialize(self) -> bytes:
        body = b"".join(
            (
                _WORD.pack(self.ssrc),
                *(block.serialize() for block in self.reports),
                self.profile_extension,
            )
        )
        return _header(len(self.reports), RECEIVER_REPORT_TYPE, len(body)) + body


@dataclass(frozen=True, slots=True, kw_only=True)
class SdesItem:
    """One SDES item (RFC 3550 §6.5): a type and up to 255 octets of UTF-8 text."""

    item_type: int
    value: str

    def __post_init__(self) -> None:
        if not 1 <= self.item_type <= 0xFF:
            raise ValueError(f"SDES item type {self.item_type} is not in 1..255")
        if len(_encode_text(self.value)) > 0xFF:
            raise ValueError("SDES item value is longer than 255 octets")


@dataclass(frozen=True, slots=True, kw_only=True)
class SdesChunk:
    """The items describing one source (RFC 3550 §6.5)."""

    ssrc: int
    items: tuple[SdesItem, ...] = ()

    def __post_init__(self) -> None:
        _check_u32("ssrc", self.ssrc)

    @property
    def cname(self) -> str | None:
        """The CNAME item (§6.5.1), which every compound packet carries for the sender."""
        for item in self.items:
            if item.item_type == SdesItemType.CNAME:
                return item.value
        return None

    def serialize(self) -> bytes:
        parts = [_WORD.pack(self.ssrc)]
        size = 4
        for item in self.items:
            raw = _encode_text(item.value)
            parts.append(bytes((item.item_type, len(raw))) + raw)
            size += 2 + len(raw)
        # §6.5: the list ends with a null octet, then null octets up to the next 32-bit boundary.
        parts.append(bytes(4 - size % 4))
        return b"".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceDescription:
    """SDES packet (RFC 3550 §6.5)."""

    chunks: tuple[SdesChunk, ...] = ()

    def __post_init__(self) -> None:
        _check_count("SDES chunks", self.chunks)

    def serialize(self) -> bytes:
        body = b"".join(chunk.serialize() for chunk in self.chunks)
        return _header(len(self.chunks), SDES_TYPE, len(body)) + body


@dataclass(frozen=True, slots=True, kw_only=True)
class Goodbye:
    """BYE packet (RFC 3550 §6.6): these sources are leaving, optionally saying why."""

    sources: tuple[int, ...]
    reason: str | None = None

    def __post_init__(self) -> None:
        _check_count("BYE sources", self.sources)
        for source in self.sources:
            _check_u32("source", source)
        if self.reason is not None and len(_encode_text(self.reason)) > 0xFF:
            raise ValueError("BYE reason is longer than 255 octets")

    def serialize(self) -> bytes:
        body = b"".join(_WORD.pack(source) for source in self.sources)
        if self.reason is not None:
            raw = _encode_text(self.reason)
            text = bytes((len(raw),)) + raw
            body += text + bytes(-len(text) % 4)
        return _header(len(self.sources), BYE_TYPE, len(body)) + body


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Goodbye


@dataclass(frozen=True, slots=True, kw_only=True)
class RtcpCompound:
    """The packets of one RTCP datagram, in order (RFC 3550 §6.1)."""

    packets: tuple[RtcpPacket, ...]
    skipped_types: tuple[int, ...] = ()
    """Packet types present in the datagram but not understood, skipped by their length."""

    def serialize(self) -> bytes:
        return serialize_compound(self.packets)


def serialize_compound(packets: Iterable[RtcpPacket]) -> bytes:
    """Concatenate packets into one compound datagram. The caller orders them as §6.1 asks:
    SR or RR first, then SDES with a CNAME, BYE last."""
    return b"".join(packet.serialize() for packet in packets)


def looks_like_rtcp(data: bytes) -> bool:
    """Whether a datagram on a multiplexed RTP/RTCP port is RTCP (RFC 5761 §4): its second octet
    is in 192..223, which RTP reaches only with payload types 64-95, which a multiplexing
    sender must not use."""
    return len(data) >= 2 and 192 <= data[1] <= 223


def parse_compound(data: bytes, *, require_report_first: bool = True) -> RtcpCompound:
    """Parse and validate one RTCP datagram (RFC 3550 §6.1, §A.2).

    `require_report_first=False` accepts compounds not starting with an SR or RR, as reduced-size
    RTCP (RFC 5506) sends them.
    """
    size = len(data)
    if size == 0:
        raise RtcpParseError(RtcpParseReason.EMPTY, "empty datagram")
    packets: list[RtcpPacket] = []
    skipped: list[int] = []
    offset = 0
    while offset < size:
        if size - offset < _HEADER.size:
            raise RtcpParseError(
                RtcpParseReason.TRUNCATED_HEADER,
                f"{size - offset} trailing octets cannot hold a packet header",
                offset=offset,
            )
        first, packet_type, length = _HEADER.unpack_from(data, offset)
        if first >> 6 != RTCP_VERSION:
            raise RtcpParseError(
                RtcpParseReason.BAD_VERSION, f"version {first >> 6}, expected 2", offset=offset
            )
        end = offset + 4 * (length + 1)
        if end > size:
            raise RtcpParseError(
                RtcpParseReason.BAD_LENGTH,
                f"length field announces {end - offset} octets, {size - offset} remain",
                offset=offset,
            )
        body_end = end
        if first & _PADDING_BIT:
            if end != size:
                raise RtcpParseError(
                    RtcpParseReason.PADDING_NOT_LAST,
                    "P bit set on a packet that is not the last of the compound",
                    offset=offset,
                )
            padding = data[end - 1]
            if padding == 0 or padding > end - offset - _HEADER.size:
                raise RtcpParseError(
                    RtcpParseReason.BAD_PADDING,
                    f"padding count {padding} for a body of {end - offset - _HEADER.size} octets",
                    offset=offset,
                )
            body_end = end - padding
        if (
            offset == 0
            and require_report_first
            and packet_type not in (SENDER_REPORT_TYPE, RECEIVER_REPORT_TYPE)
        ):
            raise RtcpParseError(
                RtcpParseReason.FIRST_NOT_REPORT,
                f"compound starts with packet type {packet_type}, not SR (200) or RR (201)",
            )
        count = first & _COUNT_MASK
        start = offset + _HEADER.size
        if packet_type == SENDER_REPORT_TYPE:
            packets.append(_parse_sender_report(data, start, body_end, count))
        elif packet_type == RECEIVER_REPORT_TYPE:
            packets.append(_parse_receiver_report(data, start, body_end, count))
        elif packet_type == SDES_TYPE:
            packets.append(_parse_sdes(data, start, body_end, count))
        elif packet_type == BYE_TYPE:
            packets.append(_parse_bye(data, start, body_end, count))
        else:
            skipped.append(packet_type)
        offset = end
    return RtcpCompound(packets=tuple(packets), skipped_types=tuple(skipped))


def _parse_report_blocks(
    data: bytes, start: int, end: int, count: int
) -> tuple[tuple[ReportBlock, ...], bytes]:
    blocks_end = start + count * _REPORT_BLOCK.size
    if blocks_end > end:
        raise RtcpParseError(
            RtcpParseReason.REPORT_OVERFLOW,
            f"report count {count} needs {count * _REPORT_BLOCK.size} octets, {end - start} remain",
            offset=start,
        )
    blocks = []
    for position in range(start, blocks_end, _REPORT_BLOCK.size):
        ssrc, loss, highest, jitter, last_sr, delay = _REPORT_BLOCK.unpack_from(data, position)
        cumulative = loss & 0xFFFFFF
        if cumulative & 0x800000:  # two's complement sign of the 24-bit field
            cumulative -= 0x1000000
        blocks.append(
            ReportBlock(
                ssrc=ssrc,
                fraction_lost=loss >> 24,
                cumulative_lost=cumulative,
                highest_sequence=highest,
                jitter=jitter,
                last_sr=last_sr,
                delay_since_last_sr=delay,
            )
        )
    # Anything after the blocks is a profile-specific extension (§6.4.1), made of whole words; a
    # padding count that is not a multiple of 4 leaves a stray partial word, which is dropped.
    extension_end = blocks_end + (end - blocks_end) // 4 * 4
    return tuple(blocks), data[blocks_end:extension_end]


def _parse_sender_report(data: bytes, start: int, end: int, count: int) -> SenderReport:
    if end - start < _SENDER_INFO.size:
        raise RtcpParseError(
            RtcpParseReason.TRUNCATED_BODY,
            f"SR body of {end - start} octets, sender info needs {_SENDER_INFO.size}",
            offset=start,
        )
    ssrc, ntp, rtp_timestamp, packets, octets = _SENDER_INFO.unpack_from(data, start)
    blocks, extension = _parse_report_blocks(data, start + _SENDER_INFO.size, end, count)
    return SenderReport(
        ssrc=ssrc,
        ntp_timestamp=ntp,
        rtp_timestamp=rtp_timestamp,
        packet_count=packets,
        octet_count=octets,
        reports=blocks,
        profile_extension=extension,
    )


def _parse_receiver_report(data: bytes, start: int, end: int, count: int) -> ReceiverReport:
    if end - start < _WORD.size:
        raise RtcpParseError(
            RtcpParseReason.TRUNCATED_BODY, "RR body too short for the sender SSRC", offset=start
        )
    (ssrc,) = _WORD.unpack_from(data, start)
    blocks, extension = _parse_report_blocks(data, start + _WORD.size, end, count)
    return ReceiverReport(ssrc=ssrc, reports=blocks, profile_extension=extension)


def _parse_sdes(data: bytes, start: int, end: int, count: int) -> SourceDescription:
    chunks: list[SdesChunk] = []
    position = start
    for _ in range(count):
        if position + _WORD.size > end:
            raise _sdes_overflow(f"no room for the SSRC of chunk {len(chunks) + 1}", position)
        (ssrc,) = _WORD.unpack_from(data, position)
        position += _WORD.size
        items = []
        while position < end and data[position]:
            value_start = position + 2
            if value_start > end or value_start + data[position + 1] > end:
                raise _sdes_overflow(f"item of type {data[position]} runs past the end", position)
            value_end = value_start + data[position + 1]
            value = _decode_text(data[value_start:value_end])
            items.append(SdesItem(item_type=data[position], value=value))
            position = value_end
        # §6.5: a null octet ends the list, then null octets up to the next 32-bit boundary.
        # Packet starts are word-aligned in the datagram, so aligning the absolute offset works.
        position = (position + 4) & ~3
        if position > end:
            raise _sdes_overflow(f"item list of SSRC {ssrc:#010x} is not terminated", position)
        chunks.append(SdesChunk(ssrc=ssrc, items=tuple(items)))
    return SourceDescription(chunks=tuple(chunks))


def _sdes_overflow(detail: str, offset: int) -> RtcpParseError:
    return RtcpParseError(RtcpParseReason.SDES_OVERFLOW, detail, offset=offset)


def _parse_bye(data: bytes, start: int, end: int, count: int) -> Goodbye:
    sources_end = start + count * _WORD.size
    if sources_end > end:
        raise RtcpParseError(
            RtcpParseReason.BYE_OVERFLOW,
            f"BYE count {count} needs {count * _WORD.size} octets, {end - start} remain",
            offset=start,
        )
    sources = struct.unpack_from(f"!{count}I", data, start)
    reason = None
    if sources_end < end:
        reason_end = sources_end + 1 + data[sources_end]
        if reason_end > end:
            raise RtcpParseError(
                RtcpParseReason.BYE_OVERFLOW,
                f"BYE reason of {data[sources_end]} octets runs past the end of the packet",
                offset=sources_end,
            )
        reason = _decode_text(data[sources_end + 1 : reason_end])
    return Goodbye(sources=sources, reason=reason)
