"""RTP data packets (RFC 3550 §5.1) and sequence/timestamp arithmetic (RFC 3550 §A.1).

`parse` turns one datagram into an `RtpPacket` or raises `RtpParseError`, whose `reason` says
which validity rule failed; it never raises anything else, whatever the bytes.
`RtpPacket.serialize` is its inverse. Both run once per packet (tens of thousands per second per
node), so they use precompiled `struct.Struct` objects and a fast path for the common header:
version 2 with no padding, no extension and no contributing sources.

Outgoing media usually needs only the fixed 12-octet header in front of an encoded frame:
`build_header` returns it, `pack_header_into` writes it into a buffer the sender reuses.

Sequence numbers wrap at 2**16 and timestamps at 2**32. The helpers at the end compare them
modulo their width, taking the shorter way round the circle (RFC 3550 §A.1).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Final

RTP_VERSION: Final = 2
HEADER_SIZE: Final = 12
MAX_CSRC: Final = 15
SEQUENCE_MOD: Final = 1 << 16
TIMESTAMP_MOD: Final = 1 << 32

# V=2, P=0, X=0, CC=0 in the first octet: the header every ordinary voice packet carries.
_PLAIN_FIRST_OCTET: Final = 0x80
_PADDING_BIT: Final = 0x20
_EXTENSION_BIT: Final = 0x10
_CSRC_COUNT_MASK: Final = 0x0F
_MARKER_BIT: Final = 0x80
_PAYLOAD_TYPE_MASK: Final = 0x7F

# RFC 3550 §5.1 fixed header: V/P/X/CC, M/PT, sequence number, timestamp, SSRC.
_FIXED_HEADER: Final = struct.Struct("!BBHII")
# RFC 3550 §5.3.1 extension header: profile-defined 16 bits, length in 32-bit words.
_EXTENSION_HEADER: Final = struct.Struct("!HH")
# One precompiled Struct per possible CSRC count (0..15) so a CSRC list costs one unpack call.
_CSRC_LISTS: Final = tuple(struct.Struct(f"!{count}I") for count in range(MAX_CSRC + 1))


class RtpParseReason(StrEnum):
    """Which RFC 3550 §5.1/§A.1 validity rule a datagram broke."""

    TRUNCATED_HEADER = "truncated_header"
    """Shorter than the 12-octet fixed header."""
    BAD_VERSION = "bad_version"
    """Version field is not 2."""
    CSRC_OVERFLOW = "csrc_overflow"
    """The CSRC count announces more identifiers than the datagram holds."""
    EXTENSION_OVERFLOW = "extension_overflow"
    """The X bit is set but the extension header or its announced length runs past the end."""
    PADDING_OVERFLOW = "padding_overflow"
    """The padding count is larger than what follows the header."""
    ZERO_PADDING = "zero_padding"
    """The P bit is set but the padding count octet is 0 (it counts itself, so at least 1)."""


class RtpParseError(ValueError):
    """A datagram is not a valid RTP packet; `reason` says which rule it broke.

    This is a remote error: the transport drops the datagram and counts it as malformed.
    """

    def __init__(self, reason: RtpParseReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderExtension:
    """The single header extension of RFC 3550 §5.3.1 (profile-defined identifier and words)."""

    profile: int
    """The 16 bits "defined by profile", e.g. 0xBEDE for RFC 8285 one-byte elements."""
    data: bytes = b""
    """The extension body; a whole number of 32-bit words."""

    def __post_init__(self) -> None:
        if not 0 <= self.profile <= 0xFFFF:
            raise ValueError(f"extension profile {self.profile} is not a 16-bit value")
        if len(self.data) % 4 or len(self.data) > 0xFFFF * 4:
            raise ValueError(
                f"extension data of {len(self.data)} octets is not a whole number of 32-bit words"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpPacket:
    """One RTP data packet (RFC 3550 §5.1). The version is always 2."""

    version: ClassVar[int] = RTP_VERSION

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: HeaderExtension | None = None
    padding: int = 0
    """Padding octets after the payload, including the final count octet; 0 means the P bit is
    clear. Serialisation writes zero octets followed by the count (RFC 3550 §5.1)."""

    def __post_init__(self) -> None:
        # One chained test on the common path; the detailed messages only when something is off.
        if (
            0 <= self.payload_type <= _PAYLOAD_TYPE_MASK
            and 0 <= self.sequence < SEQUENCE_MOD
            and 0 <= self.timestamp < TIMESTAMP_MOD
            and 0 <= self.ssrc < TIMESTAMP_MOD
            and 0 <= self.padding <= 0xFF
            and len(self.csrc) <= MAX_CSRC
        ):
            if self.csrc and not all(0 <= source < TIMESTAMP_MOD for source in self.csrc):
                raise ValueError(f"CSRC list {self.csrc} holds a value that is not 32-bit")
            return
        raise ValueError(
            "RTP header field out of range: "
            f"payload_type={self.payload_type} (0..127), sequence={self.sequence} (0..65535), "
            f"timestamp={self.timestamp} and ssrc={self.ssrc} (32-bit), padding={self.padding} "
            f"(0..255), {len(self.csrc)} CSRCs (at most {MAX_CSRC})"
        )

    def serialize(self) -> bytes:
        """The packet as it goes on the wire."""
        csrc = self.csrc
        extension = self.extension
        padding = self.padding
        second = self.payload_type | _MARKER_BIT if self.marker else self.payload_type
        if not csrc and extension is None and not padding:
            return (
                _FIXED_HEADER.pack(
                    _PLAIN_FIRST_OCTET, second, self.sequence, self.timestamp, self.ssrc
                )
                + self.payload
            )
        first = _PLAIN_FIRST_OCTET | len(csrc)
        if padding:
            first |= _PADDING_BIT
        if extension is not None:
            first |= _EXTENSION_BIT
        parts = [
            _FIXED_HEADER.pack(first, second, self.sequence, self.timestamp, self.ssrc),
            _CSRC_LISTS[len(csrc)].pack(*csrc),
        ]
        if extension is not None:
            parts.append(_EXTENSION_HEADER.pack(extension.profile, len(extension.data) // 4))
            parts.append(extension.data)
        parts.append(self.payload)
        if padding:
            parts.append(bytes(padding - 1))
            parts.append(bytes((padding,)))
        return b"".join(parts)


def _slot_setter(name: str) -> Any:
    """The slot descriptor's setter for one `RtpPacket` field (used by the parse fast path)."""
    return RtpPacket.__dict__[name].__set__


_new_object: Final = object.__new__
_set_payload_type: Final = _slot_setter("payload_type")
_set_marker: Final = _slot_setter("marker")
_set_sequence: Final = _slot_setter("sequence")
_set_timestamp: Final = _slot_setter("timestamp")
_set_ssrc: Final = _slot_setter("ssrc")
_set_payload: Final = _slot_setter("payload")
_set_csrc: Final = _slot_setter("csrc")
_set_extension: Final = _slot_setter("extension")
_set_padding: Final = _slot_setter("padding")


def parse(data: bytes) -> RtpPacket:
    """Parse one RTP datagram (RFC 3550 §5.1), checking the rules of §A.1.

    Raises `RtpParseError` (and nothing else) when the datagram is not valid RTP. Payload-type
    and source checks are the receiver's business, not the parser's.
    """
    size = len(data)
    if size < HEADER_SIZE:
        raise RtpParseError(
            RtpParseReason.TRUNCATED_HEADER,
            f"{size} octets, the fixed header needs {HEADER_SIZE}",
        )
    first, second, sequence, timestamp, ssrc = _FIXED_HEADER.unpack_from(data)
    if first == _PLAIN_FIRST_OCTET:
        # Fast path. Every field comes from a fixed-width header field, so it is in range by
        # construction and the frozen-dataclass __init__ (one object.__setattr__ per field plus
        # __post_init__, about two thirds of the parse time) is bypassed.
        packet: RtpPacket = _new_object(RtpPacket)
        _set_payload_type(packet, second & _PAYLOAD_TYPE_MASK)
        _set_marker(packet, second > _PAYLOAD_TYPE_MASK)
        _set_sequence(packet, sequence)
        _set_timestamp(packet, timestamp)
        _set_ssrc(packet, ssrc)
        _set_payload(packet, data[HEADER_SIZE:])
        _set_csrc(packet, ())
        _set_extension(packet, None)
        _set_padding(packet, 0)
        return packet
    return _parse_general(data, (first, second, sequence, timestamp, ssrc))


def _parse_general(data: bytes, header: tuple[int, int, int, int, int]) -> RtpPacket:
    """The slow path of `parse`: any of padding, extension or CSRC list present."""
    first, second, sequence, timestamp, ssrc = header
    if first >> 6 != RTP_VERSION:
        raise RtpParseError(RtpParseReason.BAD_VERSION, f"version {first >> 6}, expected 2")
    size = len(data)
    csrc_count = first & _CSRC_COUNT_MASK
    offset = HEADER_SIZE + 4 * csrc_count
    if offset > size:
        raise RtpParseError(
            RtpParseReason.CSRC_OVERFLOW,
            f"CSRC count {csrc_count} needs {offset} octets of header, datagram has {size}",
        )
    csrc: tuple[int, ...] = _CSRC_LISTS[csrc_count].unpack_from(data, HEADER_SIZE)

    extension = None
    if first & _EXTENSION_BIT:
        if offset + _EXTENSION_HEADER.size > size:
            raise RtpParseError(
                RtpParseReason.EXTENSION_OVERFLOW,
                f"X bit set, {size - offset} octets remain for the 4-octet extension header",
            )
        profile, words = _EXTENSION_HEADER.unpack_from(data, offset)
        start = offset + _EXTENSION_HEADER.size
        offset = start + 4 * words
        if offset > size:
            raise RtpParseError(
                RtpParseReason.EXTENSION_OVERFLOW,
                f"extension announces {words} words, only {size - start} octets remain",
            )
        extension = HeaderExtension(profile=profile, data=data[start:offset])

    end = size
    padding = 0
    if first & _PADDING_BIT:
        # RFC 3550 §5.1: the last octet counts the padding octets, itself included.
        padding = data[-1]
        if padding == 0:
            raise RtpParseError(RtpParseReason.ZERO_PADDING, "P bit set, padding count is 0")
        if padding > size - offset:
            raise RtpParseError(
                RtpParseReason.PADDING_OVERFLOW,
                f"padding count {padding} exceeds the {size - offset} octets after the header",
            )
        end = size - padding

    return RtpPacket(
        payload_type=second & _PAYLOAD_TYPE_MASK,
        marker=second > _PAYLOAD_TYPE_MASK,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        csrc=csrc,
        extension=extension,
        padding=padding,
        payload=data[offset:end],
    )


def build_header(
    payload_type: int, marker: bool, sequence: int, timestamp: int, ssrc: int
) -> bytes:
    """The 12-octet fixed header of an outgoing packet (no CSRC, extension or padding).

    `sequence` and `timestamp` are reduced modulo 2**16 and 2**32, so a sender may keep plain
    counters and let them wrap here (RFC 3550 §5.1).
    """
    return _FIXED_HEADER.pack(
        _PLAIN_FIRST_OCTET,
        payload_type | _MARKER_BIT if marker else payload_type,
        sequence & 0xFFFF,
        timestamp & 0xFFFFFFFF,
        ssrc,
    )


def pack_header_into(
    buffer: bytearray | memoryview,
    *,
    payload_type: int,
    marker: bool,
    sequence: int,
    timestamp: int,
    ssrc: int,
) -> None:
    """Write the fixed header at the start of `buffer`, for senders that reuse one buffer per leg.

    The payload goes at `buffer[HEADER_SIZE:]`; nothing is allocated per packet.
    """
    _FIXED_HEADER.pack_into(
        buffer,
        0,
        _PLAIN_FIRST_OCTET,
        payload_type | _MARKER_BIT if marker else payload_type,
        sequence & 0xFFFF,
        timestamp & 0xFFFFFFFF,
        ssrc,
    )


# --- Modular arithmetic on sequence numbers and timestamps (RFC 3550 §A.1) -----------------------


def seq_diff(a: int, b: int) -> int:
    """Signed distance from sequence number `b` to `a`, in -32768..32767, across wraparound."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def seq_newer(a: int, b: int) -> bool:
    """Whether sequence number `a` comes after `b`, taking the shorter way round 2**16."""
    return 0 < ((a - b) & 0xFFFF) < 0x8000


def extend_sequence(sequence: int, reference: int) -> int:
    """The extended (unwrapped) sequence number nearest to the extended `reference`.

    Extended numbers count wrap cycles in the bits above the low 16 (RFC 3550 §A.1), so
    `extend_sequence(2, 65534)` is 65538.
    """
    return reference + seq_diff(sequence, reference)


def ts_diff(a: int, b: int) -> int:
    """Signed distance from timestamp `b` to `a`, across 32-bit wraparound."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def ts_newer(a: int, b: int) -> bool:
    """Whether timestamp `a` comes after `b`, taking the shorter way round 2**32."""
    return 0 < ((a - b) & 0xFFFFFFFF) < 0x80000000


def extend_timestamp(timestamp: int, reference: int) -> int:
    """The unwrapped timestamp nearest to the unwrapped `reference`."""
    return reference + ts_diff(timestamp, reference)
