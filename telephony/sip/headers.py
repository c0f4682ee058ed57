"""SIP header fields: the ordered multi-map of a message's headers and their names.

RFC 3261 §7.3: header names are case-insensitive, may be written in compact form, and a header
whose grammar is a comma-separated list may appear once with several values or several times.
Values are kept exactly as received (after unfolding, §7.3.1) and split or parsed only when asked,
so a message that is merely relayed costs little.

Every layer reads the same few headers of a message many times (Via, From, To, Call-ID, CSeq:
some twenty look-ups per message), so `Headers` finds a header's first line through an index
built on the first look-up, and keeps the typed value parsed from it (`parsed`) until that
header changes. The grammar the values share is in `telephony.sip.grammar`, the typed CSeq and
Via in `telephony.sip.header_values`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from types import MappingProxyType
from typing import TypeVar, cast

from telephony.sip.errors import SipParseError
from telephony.sip.grammar import is_token, split_list

__all__ = [
    "Headers",
    "canonical_name",
    "header_key",
    "is_list_header",
    "parse_header_lines",
]

T = TypeVar("T")

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

# Every spelling above -> (lookup key, wire name), for the parser: a header name the code knows
# needs neither lower-casing nor a token check.
_PARSED_NAMES = MappingProxyType(
    {spelling: (key, _CANONICAL.get(key, spelling)) for spelling, key in _KNOWN_KEYS.items()}
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


def is_list_header(name: str) -> bool:
    """True when the header's grammar is a comma-separated list (RFC 3261 §7.3.1)."""
    return header_key(name) in _LIST_HEADERS


class Headers:
    """Ordered multi-map of header fields; names case-insensitive, compact forms expanded.

    Values are stored as received on one header line each. `get_all` splits list-valued headers
    (RFC 3261 §7.3.1) into their elements.
    """

    __slots__ = ("_fields", "_first", "_parsed")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        # Each field is (lookup key, wire name, value).
        self._fields: list[tuple[str, str, str]] = []
        # Lookup key -> position of its first line; built on the first look-up, dropped by
        # every change.
        self._first: dict[str, int] | None = None
        # Lookup key -> the typed value `parsed` made of its first value.
        self._parsed: dict[str, object] = {}
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _from_parsed(cls, fields: list[tuple[str, str, str]]) -> Headers:
        headers = cls.__new__(cls)
        headers._fields = fields
        headers._first = None
        headers._parsed = {}
        return headers

    def _index(self) -> dict[str, int]:
        first: dict[str, int] = {}
        for position, (key, _, _) in enumerate(self._fields):
            first.setdefault(key, position)
        self._first = first
        return first

    def _changed(self, key: str) -> None:
        self._first = None
        self._parsed.pop(key, None)

    def get(self, name: str) -> str | None:
        """The first value of `name` (for a list header, the first element), or None."""
        key = header_key(name)
        position = (self._first or self._index()).get(key)
        if position is None:
            return None
        value = self._fields[position][2]
        if key not in _LIST_HEADERS:
            return value
        # A list header's first element; a line may hold none (an empty value).
        for fkey, _, value in self._fields[position:]:
            if fkey == key:
                parts = split_list(value)
                if parts:
                    return parts[0]
        return None

    def parsed(self, name: str, parse: Callable[[str], T]) -> T | None:
        """The first value of `name` made into a typed value by `parse` (None when absent).

        Kept until a line of `name` is added, replaced or removed, so each is parsed once per
        message however often the layers ask. One header name is always parsed by the same
        function (the message's views: Via, CSeq, From, To).
        """
        key = header_key(name)
        found = self._parsed.get(key)
        if found is not None:
            return cast(T, found)
        value = self.get(key)
        if value is None:
            return None
        view = parse(value)
        self._parsed[key] = view
        return view

    def share_parsed(self, source: Headers, names: Iterable[str]) -> None:
        """Take over what `source` has parsed of `names`, whose first values are the same here
        (a response's copies of its request's headers, RFC 3261 §8.2.6)."""
        for name in names:
            key = header_key(name)
            found = source._parsed.get(key)
            if found is not None:
                self._parsed[key] = found

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
        field = _make_field(name, value)
        self._fields.append(field)
        self._changed(field[0])

    def prepend(self, name: str, value: str) -> None:
        """Insert a header line before every other one (a proxy's Via, RFC 3261 §16.6 step 8)."""
        field = _make_field(name, value)
        self._fields.insert(0, field)
        self._changed(field[0])

    def set(self, name: str, value: str) -> None:
        """Replace every line of `name` with one, at the position of the first (else at the end)."""
        new = _make_field(name, value)
        key = new[0]
        self._changed(key)
        for index, (fkey, _, _) in enumerate(self._fields):
            if fkey == key:
                self._fields[index] = new
                self._fields = [f for i, f in enumerate(self._fields) if i <= index or f[0] != key]
                return
        self._fields.append(new)

    def remove(self, name: str) -> None:
        """Remove every line of `name` (no error when absent)."""
        key = header_key(name)
        self._changed(key)
        self._fields = [f for f in self._fields if f[0] != key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return header_key(name) in (self._first or self._index())

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
    names = _PARSED_NAMES.get(name)
    if names is None:
        if not is_token(name):
            raise ValueError(f"header name {name!r} is not a token")
        names = (header_key(name), canonical_name(name))
    return names[0], names[1], value.strip()


def parse_header_lines(lines: list[str]) -> Headers:
    """Build `Headers` from raw header lines, unfolding continuation lines (RFC 3261 §7.3.1).

    `message-header = field-name HCOLON field-value CRLF` with HCOLON = *( SP / HTAB ) ":" SWS.
    A line starting with SP or HT continues the previous field; the fold is replaced by one SP.
    """
    fields: list[tuple[str, str, str]] = []
    known = _PARSED_NAMES
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
        name = line[:colon]
        names = known.get(name)
        if names is None:
            name = name.rstrip(" \t")
            names = known.get(name)
            if names is None:
                if not is_token(name):
                    raise SipParseError(f"bad header name {name[:40]!r}")
                lower = name.lower()
                key = _COMPACT.get(lower, lower)
                names = (key, _CANONICAL.get(key, name))
        fields.append((names[0], names[1], line[colon + 1 :].strip(" \t")))
    return Headers._from_parsed(fields)
