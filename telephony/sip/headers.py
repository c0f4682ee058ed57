"""SIP header fields: the ordered multi-map, and the small grammar pieces every header shares.

RFC 3261 §7.3: header names are case-insensitive, may be written in compact form, and a header
whose grammar is a comma-separated list may appear once with several values or several times.
Values are kept exactly as received (after unfolding, §7.3.1) and split or parsed only when asked,
so a message that is merely relayed costs little.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from telephony.sip.errors import SipParseError

# RFC 3261 §7.3.3 compact forms, plus RFC 3515 (r), RFC 3892 (b), RFC 6665 (o, u),
# RFC 4028 (x), RFC 3841 (a, j, d), RFC 4474 (y, n).
_COMPACT = MappingProxyType(
    {
        "i": "call-id",
        "m": "contact",
        "e": "content-encoding",
        "l": "content-length",
        "c": "content-type",
        "f": "from",
        "s": "subject",
        "k": "supported",
        "t": "to",
        "v": "via",
        "r": "refer-to",
        "b": "referred-by",
        "o": "event",
        "u": "allow-events",
        "x": "session-expires",
        "a": "accept-contact",
        "j": "reject-contact",
        "d": "request-disposition",
        "y": "identity",
        "n": "identity-info",
    }
)

_CANONICAL_NAMES = tuple(
    (  # noqa: SIM905 - one word per header keeps the list readable
        "Accept Accept-Contact Accept-Encoding Accept-Language Alert-Info Allow Allow-Events "
        "Authentication-Info Authorization Call-ID Call-Info Contact Content-Disposition "
        "Content-Encoding Content-Language Content-Length Content-Type CSeq Date Error-Info "
        "Event Expires From History-Info Identity Identity-Info In-Reply-To Max-Forwards "
        "MIME-Version Min-Expires Min-SE Organization P-Asserted-Identity P-Preferred-Identity "
        "Path Priority Privacy Proxy-Authenticate Proxy-Authorization Proxy-Require RAck Reason "
        "Record-Route Refer-To Referred-By Reject-Contact Replaces Reply-To Request-Disposition "
        "Require Retry-After Route RSeq Server Service-Route Session-Expires Subject "
        "Subscription-State Supported Timestamp To Unsupported User-Agent Via Warning "
        "WWW-Authenticate"
    ).split()
)

# Lower-case key -> canonical spelling used when serialising.
_CANONICAL = MappingProxyType({name.lower(): name for name in _CANONICAL_NAMES})

# Headers whose ABNF is a comma-separated list (RFC 3261 §7.3.1, §25.1 and the extensions named
# above). The authentication headers are *not* lists: their commas separate auth-params.
_LIST_HEADERS = frozenset(
    (  # noqa: SIM905
        "accept accept-contact accept-encoding accept-language alert-info allow allow-events "
        "call-info contact content-encoding content-language error-info history-info "
        "in-reply-to p-asserted-identity p-preferred-identity path proxy-require reason "
        "record-route reject-contact request-disposition require route service-route "
        "supported unsupported via warning privacy"
    ).split()
)

# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")


# The key of every spelling the code itself uses (canonical, lower case, compact), looked up
# before lower-casing: a header is looked up some twenty times per message.
_KNOWN_KEYS = MappingProxyType(
    {
        **{name: name.lower() for name in _CANONICAL_NAMES},
        **{name.lower(): name.lower() for name in _CANONICAL_NAMES},
        **_COMPACT,
        **{short.upper(): key for short, key in _COMPACT.items()},
    }
)


def header_key(name: str) -> str:
    """The lookup key of a header name: lower case, compact form expanded (RFC 3261 §7.3.3)."""
    key = _KNOWN_KEYS.get(name)
    if key is not None:
        return key
    lower = name.lower()
    return _COMPACT.get(lower, lower)


def canonical_name(name: str) -> str:
    """The spelling used on the wire: `v` -> `Via`, `call-id` -> `Call-ID`; unknown kept as is."""
    lower = name.lower()
    return _CANONICAL.get(_COMPACT.get(lower, lower), name)


def is_token(text: str) -> bool:
    # A set comparison runs in C: far cheaper per message than a per-character loop.
    return bool(text) and TOKEN_CHARS.issuperset(text)


def split_list(value: str) -> list[str]:
    """Split a list-valued header at commas that are not inside a quoted string or <...>.

    RFC 3261 §7.3.1: a comma inside a quoted-string or an angle-bracketed URI is not a separator.
    Empty elements are dropped.
    """
    if '"' not in value and "<" not in value:
        return [part.strip() for part in value.split(",") if part.strip()]
    parts: list[str] = []
    start = 0
    in_quotes = False
    in_angle = False
    i = 0
    end = len(value)
    while i < end:
        ch = value[i]
        if in_quotes:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quotes = False
        elif ch == '"':
            in_quotes = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == "," and not in_angle:
            part = value[start:i].strip()
            if part:
                parts.append(part)
            start = i + 1
        i += 1
    part = value[start:].strip()
    if part:
        parts.append(part)
    return parts


def find_unquoted(text: str, chars: str, start: int = 0) -> int:
    """Index of the first of `chars` at or after `start` outside a quoted string, or -1."""
    quote_at = text.find('"', start)
    if quote_at < 0:
        # Most values quote nothing: let str.find scan in C.
        found = -1
        for ch in chars:
            at = text.find(ch, start)
            if at >= 0 and (found < 0 or at < found):
                found = at
        return found
    in_quotes = False
    i = start
    end = len(text)
    while i < end:
        ch = text[i]
        if in_quotes:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quotes = False
        elif ch == '"':
            in_quotes = True
        elif ch in chars:
            return i
        i += 1
    return -1


def unquote(text: str) -> str:
    """The content of a quoted-string with its quoted-pairs resolved (RFC 3261 §25.1)."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise SipParseError(f"not a quoted string: {text[:40]!r}")
    inner = text[1:-1]
    if "\\" not in inner:
        if '"' in inner:
            raise SipParseError("unescaped quote inside quoted string")
        return inner
    out: list[str] = []
    i = 0
    while i < len(inner):
        ch = inner[i]
        if ch == "\\":
            if i + 1 >= len(inner):
                raise SipParseError("quoted string ends inside an escape")
            out.append(inner[i + 1])
            i += 2
            continue
        if ch == '"':
            raise SipParseError("unescaped quote inside quoted string")
        out.append(ch)
        i += 1
    return "".join(out)


def quote(text: str) -> str:
    """A quoted-string for `text`, escaping backslash and double quote (RFC 3261 §25.1)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_params(text: str) -> dict[str, str | None]:
    """Parse `;name=value;flag` generic-params (RFC 3261 §25.1) into an ordered dict.

    Names are case-insensitive and returned in lower case; values keep their case and, when
    quoted, their quotes (so that serialising gives back what was received).
    """
    params: dict[str, str | None] = {}
    pos = 0
    text = text.strip()
    if not text:
        return params
    if text[0] != ";":
        raise SipParseError(f"expected ';' before parameters: {text[:40]!r}")
    while pos < len(text):
        nxt = find_unquoted(text, ";", pos + 1)
        item = text[pos + 1 : nxt if nxt >= 0 else len(text)]
        name, eq, value = item.partition("=")
        name = name.strip()
        if not is_token(name):
            raise SipParseError(f"bad parameter name {name[:40]!r}")
        if eq:
            value = value.strip()
            if not value or (value[0] == '"' and (len(value) < 2 or value[-1] != '"')):
                raise SipParseError(f"bad value for parameter {name!r}")
            params[name.lower()] = value
        else:
            params[name.lower()] = None
        if nxt < 0:
            break
        pos = nxt
    return params


def format_params(params: Mapping[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


class Headers:
    """Ordered multi-map of header fields; names case-insensitive, compact forms expanded.

    Values are stored as received on one header line each. `get_all` splits list-valued headers
    (RFC 3261 §7.3.1) into their elements.
    """

    __slots__ = ("_fields",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        # Each field is (lookup key, wire name, value).
        self._fields: list[tuple[str, str, str]] = []
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _from_parsed(cls, fields: list[tuple[str, str, str]]) -> Headers:
        headers = cls.__new__(cls)
        headers._fields = fields
        return headers

    def get(self, name: str) -> str | None:
        """The first value of `name` (for a list header, the first element), or None."""
        key = header_key(name)
        for fkey, _, value in self._fields:
            if fkey == key:
                if key in _LIST_HEADERS:
                    parts = split_list(value)
                    if parts:
                        return parts[0]
                    continue
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value of `name`, list headers split into elements, in message order."""
        key = header_key(name)
        if key in _LIST_HEADERS:
            out: list[str] = []
            for fkey, _, value in self._fields:
                if fkey == key:
                    out.extend(split_list(value))
            return out
        return [value for fkey, _, value in self._fields if fkey == key]

    def get_lines(self, name: str) -> list[str]:
        """Every header line's value for `name`, unsplit."""
        key = header_key(name)
        return [value for fkey, _, value in self._fields if fkey == key]

    def count(self, name: str) -> int:
        """How many header lines carry `name`."""
        key = header_key(name)
        return sum(1 for fkey, _, _ in self._fields if fkey == key)

    def key_counts(self) -> dict[str, int]:
        """Header lines per lookup key (see `header_key`), in one pass over the fields."""
        counts: dict[str, int] = {}
        for fkey, _, _ in self._fields:
            counts[fkey] = counts.get(fkey, 0) + 1
        return counts

    def add(self, name: str, value: str) -> None:
        """Append a header line."""
        self._fields.append(_make_field(name, value))

    def prepend(self, name: str, value: str) -> None:
        """Insert a header line before every other one (a proxy's Via, RFC 3261 §16.6 step 8)."""
        self._fields.insert(0, _make_field(name, value))

    def set(self, name: str, value: str) -> None:
        """Replace every line of `name` with one, at the position of the first (else at the end)."""
        new = _make_field(name, value)
        key = new[0]
        for index, (fkey, _, _) in enumerate(self._fields):
            if fkey == key:
                self._fields[index] = new
                self._fields = [f for i, f in enumerate(self._fields) if i <= index or f[0] != key]
                return
        self._fields.append(new)

    def remove(self, name: str) -> None:
        """Remove every line of `name` (no error when absent)."""
        key = header_key(name)
        self._fields = [f for f in self._fields if f[0] != key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = header_key(name)
        return any(f[0] == key for f in self._fields)

    def items(self) -> list[tuple[str, str]]:
        """(wire name, value) per header line, in order."""
        return [(wire, value) for _, wire, value in self._fields]

    def copy(self) -> Headers:
        return Headers._from_parsed(list(self._fields))

    def __len__(self) -> int:
        return len(self._fields)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._fields] == [(k, v) for k, _, v in other._fields]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"

    def serialize_into(self, out: list[str]) -> None:
        """Append `Name: value\\r\\n` lines to `out`."""
        for _, wire, value in self._fields:
            out.append(f"{wire}: {value}\r\n")


def _make_field(name: str, value: str) -> tuple[str, str, str]:
    # A CR or LF in a value would let a caller inject header lines: a local programming error.
    if "\r" in value or "\n" in value:
        raise ValueError(f"header value for {name!r} contains CR or LF")
    if not is_token(name):
        raise ValueError(f"header name {name!r} is not a token")
    return header_key(name), canonical_name(name), value.strip()


def parse_header_lines(lines: list[str]) -> Headers:
    """Build `Headers` from raw header lines, unfolding continuation lines (RFC 3261 §7.3.1).

    `message-header = field-name HCOLON field-value CRLF` with HCOLON = *( SP / HTAB ) ":" SWS.
    A line starting with SP or HT continues the previous field; the fold is replaced by one SP.
    """
    fields: list[tuple[str, str, str]] = []
    for line in lines:
        if not line:
            continue
        first = line[0]
        if first in {" ", "\t"}:
            if not fields:
                raise SipParseError("continuation line before the first header field")
            key, wire, value = fields[-1]
            more = line.strip(" \t")
            fields[-1] = (key, wire, f"{value} {more}" if value and more else value or more)
            continue
        colon = line.find(":")
        if colon <= 0:
            raise SipParseError(f"header line without a name and colon: {line[:40]!r}")
        name = line[:colon].rstrip(" \t")
        if not is_token(name):
            raise SipParseError(f"bad header name {name[:40]!r}")
        lower = name.lower()
        key = _COMPACT.get(lower, lower)
        fields.append((key, _CANONICAL.get(key, name), line[colon + 1 :].strip(" \t")))
    return Headers._from_parsed(fields)


@dataclass(frozen=True, slots=True)
class CSeq:
    """RFC 3261 §20.16: `CSeq = "CSeq" HCOLON 1*DIGIT LWS Method`."""

    number: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        parts = text.split()
        if len(parts) != 2:
            raise SipParseError(f"malformed CSeq {text[:40]!r}")
        number, method = parts
        # §8.1.1.5: the sequence number MUST be expressible as a 32-bit unsigned integer
        # (and be less than 2**31 when chosen by a UAC).
        if not number.isdigit() or not number.isascii() or int(number) >= 2**32:
            raise SipParseError(f"bad CSeq number {number[:20]!r}")
        if not is_token(method):
            raise SipParseError(f"bad CSeq method {method[:20]!r}")
        return cls(int(number), method)

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


@dataclass(frozen=True, slots=True)
class Via:
    """One Via element (RFC 3261 §20.42): `SIP/2.0/UDP host:port;branch=...`.

    `host` is kept as written, an IPv6 address with its brackets (the `IPv6reference` of §25.1).
    """

    transport: str
    host: str
    port: int | None = None
    params: Mapping[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @classmethod
    def parse(cls, text: str) -> Via:
        semi = text.find(";")
        head = text if semi < 0 else text[:semi]
        params = parse_params(text[semi:]) if semi >= 0 else {}
        # sent-protocol = protocol-name SLASH protocol-version SLASH transport; SLASH = SWS "/" SWS
        pieces = head.split("/", 2)
        if len(pieces) != 3:
            raise SipParseError(f"malformed Via {text[:60]!r}")
        name, version, rest = (p.strip() for p in pieces)
        rest_parts = rest.split(None, 1)
        if len(rest_parts) != 2 or not is_token(name) or not is_token(version):
            raise SipParseError(f"malformed Via {text[:60]!r}")
        transport, sent_by = rest_parts
        if not is_token(transport):
            raise SipParseError(f"bad Via transport {transport[:20]!r}")
        host, port = split_host_port("".join(sent_by.split()))
        return cls(
            transport=transport.upper(),
            host=host,
            port=port,
            params=params,
            protocol=f"{name}/{version}".upper(),
        )

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The rport value (RFC 3581 §4) when filled in; None when absent or empty."""
        value = self.params.get("rport")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def has_rport(self) -> bool:
        """True when the client asked for symmetric response routing (RFC 3581 §3)."""
        return "rport" in self.params

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def with_params(
        self, params: Mapping[str, str | None] | None = None, /, **kwargs: str | None
    ) -> Via:
        """A copy with parameters added or replaced (None makes a flag, e.g. `rport`)."""
        merged = dict(self.params)
        if params:
            merged.update({k.lower(): v for k, v in params.items()})
        merged.update({k.lower(): v for k, v in kwargs.items()})
        return Via(
            transport=self.transport,
            host=self.host,
            port=self.port,
            params=merged,
            protocol=self.protocol,
        )

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params)}"


# RFC 3261 §25.1 hostname / IPv4address characters.
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.")


def split_host_port(text: str) -> tuple[str, int | None]:
    """Split `host[:port]` where host may be an IPv6 reference `[...]` (RFC 3261 §25.1)."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise SipParseError(f"unterminated IPv6 reference {text[:60]!r}")
        host = text[: close + 1]
        rest = text[close + 1 :]
        if rest and not rest.startswith(":"):
            raise SipParseError(f"junk after IPv6 reference {text[:60]!r}")
        port_text = rest[1:] if rest else None
        if not _is_ipv6(host[1:-1]):
            raise SipParseError(f"bad IPv6 address {host[:60]!r}")
    else:
        host, colon, port_text_raw = text.partition(":")
        port_text = port_text_raw if colon else None
        if not host or not _HOST_CHARS.issuperset(host):
            raise SipParseError(f"bad host {text[:60]!r}")
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not port_text.isascii() or int(port_text) > 65535:
        raise SipParseError(f"bad port {port_text[:20]!r}")
    return host, int(port_text)


def _is_ipv6(text: str) -> bool:
    # RFC 3261 §25.1 IPv6address, checked via the standard library's strict parser.
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True
