"""SIP requests and responses: parsing, serialising, response building and stream framing.

RFC 3261 §7 (message format), §8.2.6 (building responses), §18.3 (framing). The parser is
sans-IO: bytes in, a message or a `SipParseError` out. It checks what every layer above relies on
(start line, header syntax, the mandatory headers of §8.1.1, Content-Length) and leaves the other
header values as received; they are parsed on access through the properties.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from telephony.sip.errors import SipParseError, reason_phrase_for
from telephony.sip.grammar import is_token
from telephony.sip.header_values import CSeq, Via
from telephony.sip.headers import Headers, header_key, parse_header_lines
from telephony.sip.uri import SIP_SCHEMES, NameAddr, SipUri

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "MAX_DATAGRAM",
    "CSeq",
    "Headers",
    "SipMessage",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "StreamFramer",
    "Via",
    "build_response",
    "parse_message",
]

MAX_DATAGRAM = 65535
# The `max_message_size` setting's default: larger messages are answered 513 (RFC 3261 §21.5.14).
DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024

SIP_VERSION = "SIP/2.0"

# Headers that may appear at most once (their grammar is not a list, RFC 3261 §7.3.1), with
# their lookup keys.
_SINGLE_HEADERS = tuple(
    (name, header_key(name))
    for name in ("From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Length")
)
# RFC 3261 §8.1.1 mandatory headers. Max-Forwards is left out: a UAS or proxy that gets a request
# without one passes the check (§16.3 step 3) and RFC 2543 peers omit it.
_MANDATORY_HEADERS = tuple(
    (name, header_key(name)) for name in ("Via", "From", "To", "Call-ID", "CSeq")
)
# Methods of RFC 3261 and its common extensions. An unknown method whose CSeq names another
# method is answered 501 rather than 400 (RFC 4475 §3.1.2.18).
KNOWN_METHODS = frozenset(
    (
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
        "INFO",
        "REFER",
        "MESSAGE",
        "UPDATE",
    )
)


_View = TypeVar("_View", CSeq, Via, NameAddr)


class _HeaderAccess:
    """Typed views of the headers every SIP message carries.

    A view is parsed on first access and kept by the headers until that header changes (the
    views are immutable, the headers are not): every layer reads To, From, Via and CSeq several
    times per message, so parsing each once is a large part of the per-call cost.
    """

    __slots__ = ()
    headers: Headers

    @property
    def call_id(self) -> str:
        return self._required("Call-ID")

    @property
    def cseq(self) -> CSeq:
        return self._view("CSeq", CSeq.parse)

    @property
    def via(self) -> list[Via]:
        return [Via.parse(value) for value in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        return self._view("Via", Via.parse)

    @property
    def from_(self) -> NameAddr:
        return self._view("From", NameAddr.parse)

    @property
    def to(self) -> NameAddr:
        return self._view("To", NameAddr.parse)

    def _view(self, name: str, parse: Callable[[str], _View]) -> _View:
        view = self.headers.parsed(name, parse)
        if view is None:
            raise SipParseError(f"missing {name} header")
        return view

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.get("Max-Forwards")
        if value is None:
            return None
        return _parse_max_forwards(value)

    @property
    def content_type(self) -> str | None:
        return self.headers.get("Content-Type")

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name} header")
        return value


@dataclass(slots=True)
class SipRequest(_HeaderAccess):
    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    def to_bytes(self) -> bytes:
        """The wire form; Content-Length is set from `body` (RFC 3261 §20.14)."""
        return _serialize(f"{self.method} {self.uri} {self.version}\r\n", self.headers, self.body)


@dataclass(slots=True)
class SipResponse(_HeaderAccess):
    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    def to_bytes(self) -> bytes:
        return _serialize(
            f"{self.version} {self.status} {self.reason}\r\n", self.headers, self.body
        )


SipMessage = SipRequest | SipResponse


def _serialize(start_line: str, headers: Headers, body: bytes) -> bytes:
    out = [start_line]
    length = str(len(body))
    wrote_length = False
    for name, value in headers.items():
        if name == "Content-Length":
            if wrote_length:
                continue
            value = length
            wrote_length = True
        out.append(f"{name}: {value}\r\n")
    if not wrote_length:
        out.append(f"Content-Length: {length}\r\n")
    out.append("\r\n")
    return "".join(out).encode("utf-8", "surrogateescape") + body


def _parse_max_forwards(value: str) -> int:
    # §20.22: Max-Forwards = 1*DIGIT, an integer 0-255.
    if not value.isdigit() or not value.isascii() or int(value) > 255:
        raise SipParseError(f"bad Max-Forwards {value[:20]!r}")
    return int(value)


def parse_message(
    data: bytes, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
) -> SipRequest | SipResponse:
    """Parse one SIP message from a datagram (or a frame cut by `StreamFramer`).

    Raises only `SipParseError`, whose `status` says how to answer: 513 when `data` is larger
    than `max_message_size`, 505 for a SIP version other than 2.0, 400 otherwise. A body longer
    than Content-Length is truncated, a shorter one is an error (RFC 3261 §18.3).
    """
    if len(data) > max_message_size:
        raise SipParseError(f"message of {len(data)} bytes exceeds {max_message_size}", status=513)
    start = 0
    # §7.5: CRLFs before the start line are ignored.
    while data.startswith(b"\r\n", start):
        start += 2
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        if data.endswith(b"\r\n", start):
            end = len(data) - 2
        else:
            raise SipParseError("no empty line after the header fields")
    head = data[start:end].decode("utf-8", "surrogateescape")
    body = data[end + 4 :]
    lines = head.split("\r\n")
    # A NUL may legally appear as a quoted-pair (RFC 3261 §25.1), a bare CR or LF never: every
    # CR and LF left is one of the CRLFs the head was split at.
    breaks = len(lines) - 1
    if head.count("\r") != breaks or head.count("\n") != breaks:
        raise SipParseError("bare CR or LF in the header section")
    start_line = lines[0]
    headers = parse_header_lines(lines[1:])

    message: SipRequest | SipResponse
    if start_line[:4].upper() == "SIP/":
        message = _parse_status_line(start_line, headers)
    else:
        message = _parse_request_line(start_line, headers)

    try:
        body = _check_headers(message, body)
    except SipParseError as exc:
        if isinstance(message, SipRequest) and exc.request is None:
            exc.request = message
        raise
    message.body = body
    return message


def _parse_version(text: str, *, request: SipRequest | None = None) -> str:
    # §7.1: SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT; §8.2.2? and §21.5.20 -> 505 otherwise.
    proto, slash, number = text.partition("/")
    major, dot, minor = number.partition(".")
    if proto.upper() != "SIP" or not slash or not dot:
        raise SipParseError(f"malformed SIP version {text[:20]!r}")
    if not (major.isdigit() and minor.isdigit() and major.isascii() and minor.isascii()):
        raise SipParseError(f"malformed SIP version {text[:20]!r}")
    if int(major) != 2 or int(minor) != 0:
        raise SipParseError(f"unsupported SIP version {text[:20]!r}", status=505, request=request)
    return SIP_VERSION


def _parse_request_line(line: str, headers: Headers) -> SipRequest:
    # §7.1: Request-Line = Method SP Request-URI SP SIP-Version CRLF (single spaces).
    parts = line.split(" ")
    if len(parts) != 3:
        raise SipParseError(f"malformed request line {line[:80]!r}")
    method, uri, version = parts
    if not is_token(method):
        raise SipParseError(f"bad method {method[:20]!r}")
    scheme, colon, _ = uri.partition(":")
    if not colon or not scheme or not scheme[0].isalpha() or "\t" in uri:
        raise SipParseError(f"bad Request-URI {uri[:80]!r}")
    request = SipRequest(method=method, uri=uri, headers=headers)
    request.version = _parse_version(version, request=request)
    return request


def _parse_status_line(line: str, headers: Headers) -> SipResponse:
    # §7.2: Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if len(code) != 3 or not code.isdigit() or not code.isascii() or not "1" <= code[0] <= "6":
        raise SipParseError(f"bad status code {code[:20]!r}")
    return SipResponse(
        status=int(code), reason=reason, headers=headers, version=_parse_version(version)
    )


def _check_headers(message: SipRequest | SipResponse, body: bytes) -> bytes:
    headers = message.headers
    counts = headers.key_counts()
    for name, key in _MANDATORY_HEADERS:
        if key not in counts:
            raise SipParseError(f"missing mandatory {name} header")
    for name, key in _SINGLE_HEADERS:
        if counts.get(key, 0) > 1:
            raise SipParseError(f"more than one {name} header")
    message.top_via  # noqa: B018 - parsed for its validation
    if not message.call_id:
        raise SipParseError("empty Call-ID")
    cseq = message.cseq
    if isinstance(message, SipRequest):
        # §8.2.2 / §17.2.3 rely on the CSeq method matching the request method.
        if cseq.method != message.method:
            raise SipParseError(
                f"CSeq method {cseq.method!r} does not match request method {message.method!r}",
                status=400 if message.method in KNOWN_METHODS else 501,
            )
        message.max_forwards  # noqa: B018 - parsed for its validation
        _check_request_uri(message.uri)
        for contact in headers.get_all("Contact"):
            if contact != "*":
                NameAddr.parse(contact)
    # From and To identify the dialog (§12); a malformed one makes the message unusable.
    message.from_  # noqa: B018 - parsed for its validation
    message.to  # noqa: B018 - parsed for its validation
    length_text = headers.get("Content-Length")
    if length_text is not None:
        if not length_text.isdigit() or not length_text.isascii():
            raise SipParseError(f"bad Content-Length {length_text[:20]!r}")
        length = int(length_text)
        if length > len(body):
            raise SipParseError(
                f"body of {len(body)} bytes is shorter than Content-Length {length}"
            )
        if length < len(body):
            # §18.3: bytes beyond Content-Length in a datagram are discarded.
            body = body[:length]
    return body


def _check_request_uri(uri: str) -> None:
    # A SIP or SIPS Request-URI must parse and must not carry headers (§19.1.1 table 1:
    # "headers" are not allowed in a Request-URI). Other schemes are the UA's call: 416.
    scheme = uri[: uri.find(":")].lower()
    if scheme in SIP_SCHEMES:
        parsed = SipUri.parse(uri)
        if parsed.headers:
            raise SipParseError("headers are not allowed in a Request-URI")


def build_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
) -> SipResponse:
    """A response to `request` per RFC 3261 §8.2.6.

    Copies every Via (in order), From, To, Call-ID and CSeq; adds `to_tag` to To when To has no
    tag yet (§8.2.6.2); copies Timestamp into a 100 (§8.2.6.1). `headers` are appended. The
    Record-Route copy for dialog-creating responses (§12.1.1) is the caller's job.
    """
    out = Headers()
    src = request.headers
    for value in src.get_lines("Via"):
        out.add("Via", value)
    tagged: NameAddr | None = None
    for name in ("From", "To", "Call-ID", "CSeq"):
        copied = src.get(name)
        if copied is None:
            continue
        if name == "To" and to_tag is not None and (to := request.to).tag is None:
            copied = f"{copied};tag={to_tag}"
            tagged = to.with_tag(to_tag)
        out.add(name, copied)
    if status == 100:
        timestamp = src.get("Timestamp")
        if timestamp is not None:
            out.add("Timestamp", timestamp)
    for name, value in headers:
        out.add(name, value)
    response = SipResponse(
        status=status,
        reason=reason if reason is not None else reason_phrase_for(status),
        headers=out,
    )
    # The copied headers read the same as the request's: share the views parsed already, so
    # that the transaction layer does not parse them again.
    out.share_parsed(src, ("Via", "From", "CSeq") if tagged is not None else _SHARED_VIEWS)
    if tagged is not None:
        out.parsed("To", lambda _: tagged)  # the To just written, parsed already
    return response


#: The headers a response copies from its request whose views it can share (RFC 3261 §8.2.6).
_SHARED_VIEWS = ("Via", "From", "To", "CSeq")


class StreamFramer:
    """Cuts a TCP/TLS byte stream into whole SIP messages (RFC 3261 §18.3).

    Each message is delimited by its Content-Length, which is mandatory on streams. CRLFs
    between messages (RFC 5626 §4.4.1 keep-alives) are skipped. The buffer holds at most one
    message of `max_message_size` bytes; beyond that, `feed` raises SipParseError 513. After any
    error the stream cannot be re-synchronised and the connection should be closed.
    """

    __slots__ = ("_buffer", "_max_message_size", "keepalives")

    def __init__(self, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self._buffer = bytearray()
        self._max_message_size = max_message_size
        # Count of CRLF keep-alive sequences seen (RFC 5626 §4.4.1 "ping" is CRLFCRLF).
        self.keepalives = 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes from the stream; return every message now complete, in order."""
        self._buffer += data
        messages: list[bytes] = []
        buffer = self._buffer
        while True:
            skip = 0
            while buffer.startswith(b"\r\n", skip):
                skip += 2
            if skip:
                self.keepalives += 1
                del buffer[:skip]
            if not buffer:
                break
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > self._max_message_size:
                    raise SipParseError(
                        f"header section over {self._max_message_size} bytes", status=513
                    )
                break
            length = _stream_content_length(bytes(buffer[:end]))
            total = end + 4 + length
            if total > self._max_message_size:
                raise SipParseError(
                    f"message of {total} bytes exceeds {self._max_message_size}", status=513
                )
            if len(buffer) < total:
                break
            messages.append(bytes(buffer[:total]))
            del buffer[:total]
        return messages


def _stream_content_length(head: bytes) -> int:
    value: bytes | None = None
    for line in head.split(b"\r\n")[1:]:
        name, colon, rest = line.partition(b":")
        if not colon or line[:1] in (b" ", b"\t"):
            continue
        key = name.rstrip(b" \t").lower()
        if key in (b"content-length", b"l"):
            if value is not None:
                raise SipParseError("more than one Content-Length header")
            value = rest.strip(b" \t")
    if value is None:
        raise SipParseError("Content-Length is mandatory on a stream transport (RFC 3261 §18.3)")
    if not value.isdigit():
        raise SipParseError(f"bad Content-Length {value[:20]!r}")
    return int(value)
