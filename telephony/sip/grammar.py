"""The grammar pieces SIP header values share (RFC 3261 §25.1): tokens, quoted strings,
comma-separated lists, generic parameters and host[:port].

Each function checks what the RFC's ABNF allows and raises `SipParseError` (answered 400)
otherwise. They run several times per message, so the common case (nothing quoted) is handed to
`str` methods that scan in C.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from telephony.sip.errors import SipParseError

__all__ = [
    "TOKEN_CHARS",
    "find_unquoted",
    "format_params",
    "is_token",
    "parse_params",
    "quote",
    "split_host_port",
    "split_list",
    "unquote",
]

# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")


def is_token(text: str) -> bool:
    # A set comparison runs in C: far cheaper per message than a per-character loop.
    return bool(text) and TOKEN_CHARS.issuperset(text)


def split_list(value: str) -> list[str]:
    """Split a list-valued header at commas that are not inside a quoted string or <...>.

    RFC 3261 §7.3.1: a comma inside a quoted-string or an angle-bracketed URI is not a separator.
    Empty elements are dropped.
    """
    if "," not in value:  # one element: most headers hold one value per line
        value = value.strip()
        return [value] if value else []
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
    text = text.strip()
    if not text:
        return params
    if text[0] != ";":
        raise SipParseError(f"expected ';' before parameters: {text[:40]!r}")
    for item in _param_items(text):
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
    return params


def _param_items(text: str) -> list[str]:
    """The `name[=value]` items of `text` (which starts with ';'), split at unquoted ';'."""
    if '"' not in text:
        return text[1:].split(";")  # nothing quoted: every ';' separates
    items: list[str] = []
    pos = 0
    while True:
        nxt = find_unquoted(text, ";", pos + 1)
        if nxt < 0:
            items.append(text[pos + 1 :])
            return items
        items.append(text[pos + 1 : nxt])
        pos = nxt


def format_params(params: Mapping[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


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
