"""The HTTP/1.1 a webhook sender needs, with no I/O: a request's bytes, a response's framing.

A webhook POST needs little of HTTP: send one request on a kept-alive connection, learn the
response's status (and ``Retry-After``), skip its body, and know whether the connection can carry
the next request. ``encode_request`` writes the request (RFC 9112 §3 and §6.2);
``ResponseParser`` is fed the bytes that arrive and returns the response once it is complete,
framed as RFC 9112 §6.3 says: no body for 1xx, 204 and 304; ``Transfer-Encoding: chunked``
(§7.1); ``Content-Length`` (§6.2); otherwise everything up to the server's close. Bodies are
counted, never kept. Interim 1xx responses are skipped (RFC 9110 §15.2).

A message that breaks these rules raises ``HttpProtocolError``: the connection is then closed,
and the attempt counts as failed like any other.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

#: Largest response head (status line and header fields) accepted, in bytes.
MAX_HEAD_BYTES = 64 * 1024
#: Largest chunk-size line or trailer field accepted, in bytes.
MAX_LINE_BYTES = 8 * 1024

# status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 §4); some servers
# leave out the space before an empty reason phrase, which is read the same.
_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) (\d{3})(?: [^\r\n]*)?")
# chunk-size = 1*HEXDIG, then optional chunk-ext (RFC 9112 §7.1.1), ignored.
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?")
# field-name = token (RFC 9110 §5.1, §5.6.2).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A field value may not hold CR, LF or NUL (RFC 9110 §5.5).
_FORBIDDEN_IN_VALUE = re.compile(r"[\r\n\x00]")


class HttpProtocolError(ValueError):
    """The server's response broke HTTP/1.1; the connection cannot be used again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...]
    """Header fields in arrival order, names in lower case."""
    keep_alive: bool
    """The connection may carry another request."""

    def header(self, name: str) -> str | None:
        """The first field named ``name`` (lower case), if any."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


def encode_request(
    method: str, target: str, host: str, headers: Iterable[tuple[str, str]], body: bytes
) -> bytes:
    """A request with a ``Content-Length`` body (RFC 9112 §3, §6.2), header block and body."""
    lines = [f"{method} {target} HTTP/1.1\r\nhost: {host}\r\n"]
    for name, value in headers:
        if not _TOKEN.fullmatch(name) or _FORBIDDEN_IN_VALUE.search(value):
            raise ValueError(f"invalid header field {name!r}")
        lines.append(f"{name}: {value}\r\n")
    lines.append(f"content-length: {len(body)}\r\n\r\n")
    return "".join(lines).encode("latin-1") + body


class _Framing(enum.Enum):
    HEAD = "head"
    LENGTH = "length"
    CHUNK_SIZE = "chunk size"
    CHUNK_DATA = "chunk data"
    CHUNK_END = "chunk end"
    TRAILERS = "trailers"
    UNTIL_CLOSE = "until close"
    DONE = "done"


class ResponseParser:
    """One response on a connection: ``feed`` bytes as they arrive, ``feed_eof`` at close."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._state = _Framing.HEAD
        self._remaining = 0
        self._response: Response | None = None
        self.received_any = False
        """Whether any byte of a response arrived (a reused connection that fails before any
        did was closed by the server while idle, and the request may be sent again)."""

    @property
    def complete(self) -> bool:
        return self._state is _Framing.DONE

    def feed(self, data: bytes) -> Response | None:
        """Take ``data``; the response once it is complete, else None."""
        if data:
            self.received_any = True
        if self._state is _Framing.DONE:
            if data:
                raise HttpProtocolError("data after the response, with no request sent")
            return None
        self._buffer += data
        while self._step():
            if self.complete:
                response = self._response
                if self._buffer and response is not None:
                    # Bytes beyond the response: the connection is out of step, not reused.
                    self._buffer.clear()
                    response = replace(response, keep_alive=False)
                return response
        return None

    def feed_eof(self) -> Response | None:
        """The server closed the connection: the response if that completed it."""
        if self._state is _Framing.UNTIL_CLOSE:
            self._state = _Framing.DONE
            return self._response
        if self._state is _Framing.DONE:
            return None
        raise HttpProtocolError(f"connection closed in the response's {self._state.value}")

    def _step(self) -> bool:
        """Advance through what is buffered; False when more bytes are needed."""
        state = self._state
        if state is _Framing.HEAD:
            return self._head()
        if state is _Framing.LENGTH or state is _Framing.CHUNK_DATA:
            taken = min(self._remaining, len(self._buffer))
            del self._buffer[:taken]
            self._remaining -= taken
            if self._remaining:
                return False
            self._state = _Framing.DONE if state is _Framing.LENGTH else _Framing.CHUNK_END
            return True
        if state is _Framing.UNTIL_CLOSE:
            self._buffer.clear()
            return False
        line = self._line()
        if line is None:
            return False
        if state is _Framing.CHUNK_SIZE:
            match = _CHUNK_SIZE.fullmatch(line)
            if match is None:
                raise HttpProtocolError("bad chunk size line")
            self._remaining = int(match.group(1), 16)
            self._state = _Framing.CHUNK_DATA if self._remaining else _Framing.TRAILERS
        elif state is _Framing.CHUNK_END:
            if line:
                raise HttpProtocolError("chunk data longer than its size")
            self._state = _Framing.CHUNK_SIZE
        elif not line:  # the empty line that ends the trailer section (RFC 9112 §7.1.2)
            self._state = _Framing.DONE
        return True

    def _line(self) -> bytes | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > MAX_LINE_BYTES:
                raise HttpProtocolError("line too long in the response body framing")
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    def _head(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise HttpProtocolError(f"response head larger than {MAX_HEAD_BYTES} bytes")
            return False
        head = bytes(self._buffer[:end]).decode("latin-1")
        del self._buffer[: end + 4]
        status_line, _, fields = head.partition("\r\n")
        match = _STATUS_LINE.fullmatch(status_line.encode("latin-1"))
        if match is None:
            raise HttpProtocolError(f"bad status line {status_line[:80]!r}")
        major, minor, status = int(match.group(1)), int(match.group(2)), int(match.group(3))
        if major != 1:
            raise HttpProtocolError(f"HTTP/{major}.{minor} is not HTTP/1.x")
        headers = _header_fields(fields)
        if 100 <= status < 200:
            if status == 101:
                raise HttpProtocolError("101 Switching Protocols was not asked for")
            return True  # an interim response; the final one follows
        connection = {
            token.strip().lower()
            for name, value in headers
            if name == "connection"
            for token in value.split(",")
        }
        keep_alive = minor >= 1 and "close" not in connection
        self._response = Response(status=status, headers=headers, keep_alive=keep_alive)
        self._state = self._body_framing(status, headers)
        if self._state is _Framing.UNTIL_CLOSE:
            self._response = Response(status=status, headers=headers, keep_alive=False)
        elif self._state is _Framing.LENGTH and self._remaining == 0:
            self._state = _Framing.DONE
        return True

    def _body_framing(self, status: int, headers: tuple[tuple[str, str], ...]) -> _Framing:
        """RFC 9112 §6.3, in its order, for the response to a POST."""
        if status in (204, 304):
            return _Framing.DONE
        codings = [
            coding.strip().lower()
            for name, value in headers
            if name == "transfer-encoding"
            for coding in value.split(",")
        ]
        if codings:
            return _Framing.CHUNK_SIZE if codings[-1] == "chunked" else _Framing.UNTIL_CLOSE
        lengths = {value.strip() for name, value in headers if name == "content-length"}
        if not lengths:
            return _Framing.UNTIL_CLOSE
        if len(lengths) > 1:
            raise HttpProtocolError("conflicting Content-Length fields")
        text = lengths.pop()
        if not text.isascii() or not text.isdigit():
            raise HttpProtocolError(f"bad Content-Length {text[:20]!r}")
        self._remaining = int(text)
        return _Framing.LENGTH


def _header_fields(block: str) -> tuple[tuple[str, str], ...]:
    fields: list[tuple[str, str]] = []
    for line in block.split("\r\n") if block else ():
        if line[:1] in (" ", "\t"):
            # obs-fold: a recipient replaces it with a space (RFC 9112 §5.2).
            if not fields:
                raise HttpProtocolError("header continuation line with no header")
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            raise HttpProtocolError(f"bad header line {line[:80]!r}")
        fields.append((name.lower(), value.strip(" \t")))
    return tuple(fields)
