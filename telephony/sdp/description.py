"""SDP session descriptions (RFC 4566): the description types, errors, parser and serializer.

Sans-IO: bytes in, values out. The parser keeps attributes in order so that a description
survives a parse/serialize round trip. The offer/answer model (RFC 3264) built on these types
lives in `telephony.sdp.negotiation`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import ClassVar

__all__ = [
    "PCMA",
    "PCMU",
    "Attribute",
    "Codec",
    "Connection",
    "Direction",
    "MediaDescription",
    "Origin",
    "RtpMap",
    "SdpError",
    "SdpNegotiationError",
    "SessionDescription",
    "parse_sdp",
]


class SdpError(ValueError):
    """A session description is malformed or unusable. `status` is the SIP response to send for it
    when it came in a request (400 for a malformed body), `line` the 1-based line that failed."""

    status: ClassVar[int] = 400
    reason_phrase: ClassVar[str] = "Bad Request"

    def __init__(self, detail: str, *, line: int | None = None) -> None:
        super().__init__(detail if line is None else f"SDP line {line}: {detail}")
        self.detail = detail
        self.line = line


class SdpNegotiationError(SdpError):
    """The offer is well formed but nothing in it can be accepted: the UA answers 488 (RFC 3261
    §13.3.1.1 / RFC 3264 §6)."""

    status = 488
    reason_phrase = "Not Acceptable Here"


class Direction(StrEnum):
    """Media direction attributes (RFC 3264 §5.1), from the point of view of who writes them."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def from_flags(cls, *, send: bool, receive: bool) -> Direction:
        if send:
            return cls.SENDRECV if receive else cls.SENDONLY
        return cls.RECVONLY if receive else cls.INACTIVE


@dataclass(frozen=True, slots=True, kw_only=True)
class Origin:
    """The o= line (RFC 4566 §5.2); `session_version` goes up by one on each changed description."""

    username: str = "-"
    session_id: str
    session_version: int
    net_type: str = "IN"
    addr_type: str = "IP4"
    address: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Connection:
    """A c= line (RFC 4566 §5.7). `address` keeps any /ttl suffix of a multicast address."""

    net_type: str = "IN"
    addr_type: str = "IP4"
    address: str

    @classmethod
    def for_address(cls, address: str) -> Connection:
        return cls(addr_type="IP6" if ":" in address else "IP4", address=address)

    @property
    def unspecified(self) -> bool:
        """RFC 3264 §8.4: c=0.0.0.0 (the RFC 2543 way to hold) means "do not send to me"."""
        return self.address in ("0.0.0.0", "::")


@dataclass(frozen=True, slots=True)
class Attribute:
    """An a= line: `a=name` (property, value None) or `a=name:value` (RFC 4566 §5.13)."""

    name: str
    value: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpMap:
    """a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>] (RFC 4566 §6)."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Codec:
    """An audio format as negotiated: name, the payload type in use on this session, clock rate."""

    name: str
    payload_type: int
    clock_rate: int = 8000

    def matches(self, rtpmap: RtpMap) -> bool:
        return rtpmap.encoding.lower() == self.name.lower() and rtpmap.clock_rate == self.clock_rate


PCMU = Codec(name="PCMU", payload_type=0)
PCMA = Codec(name="PCMA", payload_type=8)
# RFC 3551 §6 static payload types that may appear without an a=rtpmap line.
_STATIC_PAYLOAD_TYPES = {
    0: RtpMap(payload_type=0, encoding="PCMU", clock_rate=8000),
    3: RtpMap(payload_type=3, encoding="GSM", clock_rate=8000),
    4: RtpMap(payload_type=4, encoding="G723", clock_rate=8000),
    8: RtpMap(payload_type=8, encoding="PCMA", clock_rate=8000),
    9: RtpMap(payload_type=9, encoding="G722", clock_rate=8000),
    13: RtpMap(payload_type=13, encoding="CN", clock_rate=8000),
    18: RtpMap(payload_type=18, encoding="G729", clock_rate=8000),
}
_DIRECTIONS = frozenset(d.value for d in Direction)


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaDescription:
    """One m= section (RFC 4566 §5.14) with its i=, c=, b= and a= lines."""

    media: str
    port: int
    port_count: int | None = None
    proto: str = "RTP/AVP"
    formats: tuple[str, ...]
    information: str | None = None
    connection: Connection | None = None
    bandwidths: tuple[str, ...] = ()
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()

    def attribute(self, name: str) -> str | None:
        """Value of the first a=name line; "" for a property attribute; None when absent."""
        for attribute in self.attributes:
            if attribute.name == name:
                return "" if attribute.value is None else attribute.value
        return None

    def direction(self, session_default: Direction = Direction.SENDRECV) -> Direction:
        for attribute in reversed(self.attributes):
            if attribute.value is None and attribute.name in _DIRECTIONS:
                return Direction(attribute.name)
        return session_default

    def rtpmap(self, payload_type: str) -> RtpMap | None:
        """The encoding of a format: its a=rtpmap, else the RFC 3551 static assignment."""
        prefix = payload_type + " "
        for attribute in self.attributes:
            if (
                attribute.name == "rtpmap"
                and attribute.value
                and attribute.value.startswith(prefix)
            ):
                return _parse_rtpmap(attribute.value)
        if payload_type.isdigit():
            return _STATIC_PAYLOAD_TYPES.get(int(payload_type))
        return None

    def fmtp(self, payload_type: str) -> str | None:
        prefix = payload_type + " "
        for attribute in self.attributes:
            if attribute.name == "fmtp" and attribute.value and attribute.value.startswith(prefix):
                return attribute.value[len(prefix) :].strip()
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionDescription:
    """A whole session description. `extra_lines` keeps u=, e=, p=, r=, z=, k= lines verbatim."""

    origin: Origin
    session_name: str = "-"
    information: str | None = None
    connection: Connection | None = None
    bandwidths: tuple[str, ...] = ()
    timing: tuple[int, int] = (0, 0)
    extra_lines: tuple[tuple[str, str], ...] = ()
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = field(default=())

    @property
    def direction(self) -> Direction:
        """Session-level direction, the default for every media section (RFC 3264 §5.1)."""
        for attribute in reversed(self.attributes):
            if attribute.value is None and attribute.name in _DIRECTIONS:
                return Direction(attribute.name)
        return Direction.SENDRECV

    def connection_for(self, media: MediaDescription) -> Connection | None:
        """RFC 4566 §5.7: a media-level c= overrides the session-level one."""
        return media.connection or self.connection

    def to_bytes(self) -> bytes:
        return str(self).encode("utf-8")

    def __str__(self) -> str:
        # RFC 4566 §5 fixes the order: v o s i u e p c b t r z k a, then each m i c b k a.
        lines = [
            "v=0",
            f"o={_origin_text(self.origin)}",
            f"s={self.session_name}",
        ]
        if self.information is not None:
            lines.append(f"i={self.information}")
        lines += [f"{kind}={value}" for kind, value in self.extra_lines if kind in "uep"]
        if self.connection is not None:
            lines.append(f"c={_connection_text(self.connection)}")
        lines += [f"b={value}" for value in self.bandwidths]
        lines.append(f"t={self.timing[0]} {self.timing[1]}")
        lines += [f"{kind}={value}" for kind, value in self.extra_lines if kind in "rzk"]
        lines += [_attribute_text(attribute) for attribute in self.attributes]
        for media in self.media:
            port = (
                str(media.port) if media.port_count is None else f"{media.port}/{media.port_count}"
            )
            lines.append(f"m={media.media} {port} {media.proto} {' '.join(media.formats)}")
            if media.information is not None:
                lines.append(f"i={media.information}")
            if media.connection is not None:
                lines.append(f"c={_connection_text(media.connection)}")
            lines += [f"b={value}" for value in media.bandwidths]
            if media.key is not None:
                lines.append(f"k={media.key}")
            lines += [_attribute_text(attribute) for attribute in media.attributes]
        return "\r\n".join(lines) + "\r\n"


def _origin_text(origin: Origin) -> str:
    return (
        f"{origin.username} {origin.session_id} {origin.session_version} "
        f"{origin.net_type} {origin.addr_type} {origin.address}"
    )


def _connection_text(connection: Connection) -> str:
    return f"{connection.net_type} {connection.addr_type} {connection.address}"


def _attribute_text(attribute: Attribute) -> str:
    return (
        f"a={attribute.name}"
        if attribute.value is None
        else f"a={attribute.name}:{attribute.value}"
    )


# --- parsing ---------------------------------------------------------------------------------

# RFC 4566 §5: <type>=<value>, type one case-significant letter, no whitespace around "=".
_LINE = re.compile(r"([a-z])=(.*)")
# RFC 4566 §9: token (attribute names, proto parts, media)
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
_SESSION_TYPES = frozenset("vosiuepcbtrzka")
_MEDIA_TYPES = frozenset("icbka")


def parse_sdp(data: bytes | str) -> SessionDescription:
    """Parse a session description. Raises `SdpError` saying which line is wrong and why."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SdpError(f"body is not UTF-8 (byte {exc.start})") from None
    # Blank lines carry nothing; several stacks end the body with one or two of them.
    lines = [(n, raw.rstrip("\r")) for n, raw in enumerate(data.split("\n"), 1) if raw.strip()]
    if not lines:
        raise SdpError("empty session description")
    if lines[0][1] != "v=0":
        raise SdpError(f"must start with v=0, not {lines[0][1][:40]!r}", line=lines[0][0])
    session = _Section()
    media: list[_Section] = []
    for number, line in lines[1:]:
        match = _LINE.fullmatch(line)
        if match is None:
            raise SdpError(f"not a <type>=<value> line: {line[:40]!r}", line=number)
        kind, value = match.group(1), match.group(2)
        if kind == "m":
            media.append(_Section(m=_parse_media_line(value, number)))
        elif media:
            if kind not in _MEDIA_TYPES:
                raise SdpError(f"{kind}= is not allowed inside a media description", line=number)
            media[-1].add(kind, value, number)
        elif kind not in _SESSION_TYPES:
            # RFC 4566 §5: a description with a type letter we do not understand is ignored whole.
            raise SdpError(f"unknown line type {kind}=", line=number)
        else:
            session.add(kind, value, number)
    if session.origin is None or session.name is None or session.timing is None:
        raise SdpError("missing mandatory o=, s= or t= line")
    return SessionDescription(
        origin=session.origin,
        session_name=session.name,
        information=session.information,
        connection=session.connection,
        bandwidths=tuple(session.bandwidths),
        timing=session.timing,
        extra_lines=tuple(session.extra),
        attributes=tuple(session.attributes),
        media=tuple(section.build() for section in media),
    )


#: The line types that may appear once per section, and the `_Section` field each one fills.
_SINGLE_LINE_SLOTS = MappingProxyType(
    {"o": "origin", "s": "name", "i": "information", "c": "connection", "t": "timing"}
)


@dataclass(slots=True)
class _Section:
    """Lines collected for the session part or one media part while parsing."""

    m: tuple[str, int, int | None, str, tuple[str, ...]] | None = None
    origin: Origin | None = None
    name: str | None = None
    information: str | None = None
    connection: Connection | None = None
    timing: tuple[int, int] | None = None
    key: str | None = None
    bandwidths: list[str] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    extra: list[tuple[str, str]] = field(default_factory=list)

    def add(self, kind: str, value: str, line: int) -> None:
        slot = _SINGLE_LINE_SLOTS
        if kind == "v" or (kind in slot and getattr(self, slot[kind]) is not None):
            where = "media description" if self.m else "session level"
            raise SdpError(f"second {kind}= line at {where}", line=line)
        if kind == "k" and self.m is not None:
            if self.key is not None:
                raise SdpError("second k= line in a media description", line=line)
            self.key = value
        elif kind == "a":
            self.attributes.append(_parse_attribute(value, line))
        elif kind == "b":
            self.bandwidths.append(_check_bandwidth(value, line))
        elif kind == "o":
            self.origin = _parse_origin(value, line)
        elif kind == "s":
            self.name = value
        elif kind == "i":
            self.information = value
        elif kind == "c":
            self.connection = _parse_connection(value, line)
        elif kind == "t":
            self.timing = _parse_timing(value, line)
        else:
            self.extra.append((kind, value))

    def build(self) -> MediaDescription:
        assert self.m is not None
        media, port, port_count, proto, formats = self.m
        return MediaDescription(
            media=media,
            port=port,
            port_count=port_count,
            proto=proto,
            formats=formats,
            information=self.information,
            connection=self.connection,
            bandwidths=tuple(self.bandwidths),
            key=self.key,
            attributes=tuple(self.attributes),
        )


def _parse_origin(value: str, line: int) -> Origin:
    parts = value.split()
    if len(parts) != 6:
        raise SdpError(f"o= needs 6 fields, found {len(parts)}", line=line)
    username, session_id, version, net_type, addr_type, address = parts
    if not session_id.isdigit() or not version.isdigit():
        raise SdpError("o= session id and version must be numbers", line=line)
    return Origin(
        username=username,
        session_id=session_id,
        session_version=int(version),
        net_type=net_type,
        addr_type=addr_type,
        address=address,
    )


def _parse_connection(value: str, line: int) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise SdpError(f"c= needs 3 fields, found {len(parts)}", line=line)
    net_type, addr_type, address = parts
    if net_type == "IN" and addr_type not in ("IP4", "IP6"):
        raise SdpError(f"c= address type {addr_type!r} is neither IP4 nor IP6", line=line)
    return Connection(net_type=net_type, addr_type=addr_type, address=address)


def _parse_timing(value: str, line: int) -> tuple[int, int]:
    parts = value.split()
    if len(parts) != 2 or not all(part.isdigit() for part in parts):
        raise SdpError("t= needs <start> <stop> as numbers", line=line)
    return int(parts[0]), int(parts[1])


def _check_bandwidth(value: str, line: int) -> str:
    kind, _, amount = value.partition(":")
    if not _TOKEN.fullmatch(kind) or not amount.isdigit():
        raise SdpError(f"b= must be <type>:<number>, not {value[:40]!r}", line=line)
    return value


def _parse_attribute(value: str, line: int) -> Attribute:
    name, colon, attribute_value = value.partition(":")
    if not _TOKEN.fullmatch(name):
        raise SdpError(f"a= attribute name {name[:40]!r} is not a token", line=line)
    return Attribute(name, attribute_value if colon else None)


def _parse_media_line(value: str, line: int) -> tuple[str, int, int | None, str, tuple[str, ...]]:
    parts = value.split()
    if len(parts) < 4:
        raise SdpError("m= needs <media> <port> <proto> and at least one format", line=line)
    media, port_text, proto, *formats = parts
    port_text, slash, count_text = port_text.partition("/")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise SdpError(f"m= port {port_text[:20]!r} is not a port number", line=line)
    if slash and not count_text.isdigit():
        raise SdpError(f"m= number of ports {count_text[:20]!r} is not a number", line=line)
    return media, int(port_text), int(count_text) if slash else None, proto, tuple(formats)


_RTPMAP = re.compile(r"(\d{1,3}) +([^/\s]+)/(\d+)(?:/(\d+))?\s*")


def _parse_rtpmap(value: str) -> RtpMap | None:
    # a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]
    match = _RTPMAP.fullmatch(value)
    if match is None:
        return None
    return RtpMap(
        payload_type=int(match.group(1)),
        encoding=match.group(2),
        clock_rate=int(match.group(3)),
        channels=int(match.group(4) or 1),
    )
