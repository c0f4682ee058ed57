"""SIP, SIPS and tel URIs (RFC 3261 §19.1, §25.1; RFC 3966) and name-addr values (§20.10)."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import quote as _pct_quote
from urllib.parse import unquote as _pct_unquote

from telephony.sip.errors import SipParseError
from telephony.sip.grammar import (
    find_unquoted,
    format_params,
    is_token,
    parse_params,
    quote,
    split_host_port,
    unquote,
)

_ALNUM = string.ascii_letters + string.digits
# RFC 3261 §25.1 character classes.
_UNRESERVED = frozenset(_ALNUM + "-_.!~*'()")
_USER_CHARS = _UNRESERVED | frozenset("%&=+$,;?/")
_PASSWORD_CHARS = _UNRESERVED | frozenset("%&=+$,")
_PARAM_CHARS = _UNRESERVED | frozenset("%[]/:&+$")
_HEADER_CHARS = _UNRESERVED | frozenset("%[]/?:+$")
_HEX = frozenset(string.hexdigits)
_SCHEME_CHARS = frozenset(_ALNUM + "+-.")

# What `__str__` leaves unescaped (Python's quote() always keeps alphanumerics and "_.-~").
_USER_SAFE = "!*'()&=+$,;?/"
_PASSWORD_SAFE = "!*'()&=+$,"
_PARAM_SAFE = "!*'()[]/:&+$"
_HEADER_SAFE = "!*'()[]/?:+$"

# The form nearly every message carries, `sip:user@host[:port][;transport=x]`, with nothing to
# unescape: parsed by one match. It accepts a subset of what the §19.1.1 / §25.1 path below
# accepts and gives the same value (user from `unreserved`, host from the hostname / IPv4address
# characters, a 1-5 digit port); anything else takes that path, which knows every error.
_COMMON_SIP = re.compile(
    r"(sips?):([A-Za-z0-9_.!~*'()+-]+)@([A-Za-z0-9.-]+)(?::([0-9]{1,5}))?"
    r"(?:;transport=([A-Za-z0-9-]+))?"
)

# The common name-addr, `[Display Name] <URI>[;name=value...]` with a quoted display name
# without escapes or one of tokens single-spaced (§25.1 `*(token LWS)`), and token parameters:
# the same value as the general path gives (§20.10).
_TOKEN = r"[A-Za-z0-9.!%*_+`'~-]+"
_COMMON_NAME_ADDR = re.compile(
    rf'(?:"([^"\\\r\n]*)" ?|({_TOKEN}(?: {_TOKEN})*) ?)?<([^<>"\s]+)>'
    rf"((?:;{_TOKEN}(?:={_TOKEN})?)*)"
)

SIP_SCHEMES = frozenset(("sip", "sips"))
SUPPORTED_SCHEMES = frozenset(("sip", "sips", "tel"))


def _unescape(text: str, allowed: frozenset[str], what: str) -> str:
    """Check `text` against a §25.1 character class and resolve its %HH escapes."""
    if not allowed.issuperset(text):
        bad = next(ch for ch in text if ch not in allowed)
        raise SipParseError(f"character {bad!r} not allowed in URI {what}")
    if "%" not in text:
        return text
    pos = text.find("%")
    while pos >= 0:
        if pos + 2 >= len(text):
            raise SipParseError(f"truncated escape in URI {what}")
        if text[pos + 1] not in _HEX or text[pos + 2] not in _HEX:
            raise SipParseError(f"bad escape in URI {what}")
        pos = text.find("%", pos + 3)
    return _pct_unquote(text, encoding="utf-8", errors="surrogateescape")


def _escape(text: str, safe: str) -> str:
    return _pct_quote(text, safe=safe, encoding="utf-8", errors="surrogateescape")


@dataclass(frozen=True, slots=True)
class SipUri:
    """A SIP/SIPS URI (RFC 3261 §19.1.1), a tel URI (RFC 3966), or another absolute URI.

    `user`, `password`, parameter and header values are stored unescaped (%HH resolved) and
    escaped again by `__str__`. `host` is written as in the URI, an IPv6 address in brackets
    (RFC 5118 §4). For a tel URI the number is in `user` and `host` is empty. For any other
    scheme (only accepted by `parse_any`) the text after the colon is in `opaque`.
    """

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: Mapping[str, str | None] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    opaque: str | None = None

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a sip:, sips: or tel: URI; other schemes raise SipParseError 416 (§8.2.2.1)."""
        common = _COMMON_SIP.fullmatch(text)
        if common is not None:
            scheme, user, host, port, transport = common.groups()
            if port is None or int(port) <= 65535:
                return cls(
                    scheme=scheme,
                    user=user,
                    host=host,
                    port=None if port is None else int(port),
                    params={} if transport is None else {"transport": transport},
                    headers={},
                )
        return cls._parse_full(text)

    @classmethod
    def _parse_full(cls, text: str) -> SipUri:
        """Every form of §19.1.1 / §25.1 and RFC 3966, with an exact error for each flaw."""
        scheme, colon, rest = text.strip().partition(":")
        scheme = scheme.lower()
        if not colon or not scheme or not _SCHEME_CHARS.issuperset(scheme):
            raise SipParseError(f"not a URI: {text[:60]!r}")
        if scheme in SIP_SCHEMES:
            return cls._parse_sip(scheme, rest, text)
        if scheme == "tel":
            return cls._parse_tel(rest, text)
        raise SipParseError(f"unsupported URI scheme {scheme[:20]!r}", status=416)

    @classmethod
    def parse_any(cls, text: str) -> SipUri:
        """Like `parse`, but an absoluteURI of any other scheme is kept opaque (RFC 3261 §25.1)."""
        try:
            return cls.parse(text)
        except SipParseError as exc:
            if exc.status != 416:
                raise
        scheme, _, rest = text.strip().partition(":")
        if not rest or any(ch in rest for ch in ' \t<>"'):
            raise SipParseError(f"malformed URI {text[:60]!r}")
        return cls(scheme=scheme.lower(), opaque=rest)

    @classmethod
    def _parse_sip(cls, scheme: str, rest: str, text: str) -> SipUri:
        user: str | None = None
        password: str | None = None
        at = rest.find("@")
        if at >= 0:
            if rest.find("@", at + 1) >= 0:
                raise SipParseError(f"more than one '@' in URI {text[:60]!r}")
            userinfo = rest[:at]
            rest = rest[at + 1 :]
            raw_user, colon, raw_password = userinfo.partition(":")
            if not raw_user:
                raise SipParseError(f"empty user part in URI {text[:60]!r}")
            user = _unescape(raw_user, _USER_CHARS, "user")
            if colon:
                password = _unescape(raw_password, _PASSWORD_CHARS, "password")
        end = len(rest)
        for sep in ";?":
            pos = rest.find(sep)
            if 0 <= pos < end:
                end = pos
        host, port = split_host_port(rest[:end])
        params: dict[str, str | None] = {}
        headers: dict[str, str] = {}
        tail = rest[end:]
        qmark = tail.find("?")
        param_text = tail if qmark < 0 else tail[:qmark]
        if param_text:
            for item in param_text[1:].split(";"):
                name, eq, value = item.partition("=")
                name = _unescape(name, _PARAM_CHARS, "parameter")
                if not name:
                    raise SipParseError(f"empty URI parameter in {text[:60]!r}")
                params[name.lower()] = _unescape(value, _PARAM_CHARS, "parameter") if eq else None
        if qmark >= 0:
            for item in tail[qmark + 1 :].split("&"):
                name, eq, value = item.partition("=")
                if not name or not eq:
                    raise SipParseError(f"malformed URI header in {text[:60]!r}")
                headers[_unescape(name, _HEADER_CHARS, "header")] = _unescape(
                    value, _HEADER_CHARS, "header"
                )
        return cls(
            scheme=scheme,
            user=user,
            password=password,
            host=host,
            port=port,
            params=params,
            headers=headers,
        )

    @classmethod
    def _parse_tel(cls, rest: str, text: str) -> SipUri:
        # RFC 3966 §3: telephone-subscriber = global-number / local-number, then ;par.
        number, semi, param_text = rest.partition(";")
        if not number or not all(ch in _ALNUM or ch in "+-.()*#" for ch in number):
            raise SipParseError(f"bad tel URI {text[:60]!r}")
        params: dict[str, str | None] = {}
        if semi:
            for item in param_text.split(";"):
                name, eq, value = item.partition("=")
                if not name:
                    raise SipParseError(f"empty tel URI parameter in {text[:60]!r}")
                params[_unescape(name, _PARAM_CHARS, "parameter").lower()] = (
                    _unescape(value, _PARAM_CHARS, "parameter") if eq else None
                )
        return cls(scheme="tel", user=number, params=params)

    @property
    def is_sip(self) -> bool:
        return self.scheme in SIP_SCHEMES

    @property
    def transport(self) -> str | None:
        value = self.params.get("transport")
        return value.lower() if value else None

    @property
    def host_port(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def with_params(self, **kwargs: str | None) -> SipUri:
        merged = dict(self.params)
        merged.update({k.lower(): v for k, v in kwargs.items()})
        return replace(self, params=merged)

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        out = [self.scheme, ":"]
        if self.scheme == "tel":
            out.append(self.user or "")
        else:
            if self.user is not None:
                out.append(_escape(self.user, _USER_SAFE))
                if self.password is not None:
                    out.append(":" + _escape(self.password, _PASSWORD_SAFE))
                out.append("@")
            out.append(self.host_port)
        for name, value in self.params.items():
            out.append(";" + _escape(name, _PARAM_SAFE))
            if value is not None:
                out.append("=" + _escape(value, _PARAM_SAFE))
        if self.headers:
            out.append("?")
            out.append(
                "&".join(
                    f"{_escape(k, _HEADER_SAFE)}={_escape(v, _HEADER_SAFE)}"
                    for k, v in self.headers.items()
                )
            )
        return "".join(out)


@dataclass(frozen=True, slots=True)
class NameAddr:
    """The value of From, To, Contact, Route, Record-Route, Refer-To... (RFC 3261 §20.10).

    `display_name` is None when absent, unquoted (escapes resolved) when it was a quoted string.
    `params` are the header parameters (tag, expires, q ...), not the URI's.
    """

    uri: SipUri
    display_name: str | None = None
    params: Mapping[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        common = _COMMON_NAME_ADDR.fullmatch(text)
        if common is not None:
            quoted_name, token_name, uri_text, param_text = common.groups()
            display_name = token_name if quoted_name is None else quoted_name
            params: dict[str, str | None] = {}
            if param_text:
                for item in param_text[1:].split(";"):
                    name, eq, value = item.partition("=")
                    params[name.lower()] = value if eq else None
            return cls(uri=SipUri.parse_any(uri_text), display_name=display_name, params=params)
        if ";" not in text and _COMMON_SIP.fullmatch(text):
            # A bare addr-spec (a Contact's usual form): no header parameters (§20.10).
            return cls(uri=SipUri.parse(text))
        return cls._parse_full(text)

    @classmethod
    def _parse_full(cls, text: str) -> NameAddr:
        text = text.strip()
        langle = find_unquoted(text, "<")
        if langle < 0:
            # addr-spec form: the URI cannot contain ';', so the first one starts the header
            # parameters (§20.10).
            if text.startswith('"'):
                raise SipParseError(f"display name without <URI> in {text[:60]!r}")
            semi = text.find(";")
            uri_text = (text if semi < 0 else text[:semi]).rstrip(" \t")
            if not uri_text or any(ch in uri_text for ch in " \t,?"):
                raise SipParseError(f"malformed address {text[:60]!r}")
            params = parse_params(text[semi:]) if semi >= 0 else {}
            return cls(uri=SipUri.parse_any(uri_text), params=params)
        rangle = text.find(">", langle)
        if rangle < 0:
            raise SipParseError(f"unterminated <URI> in {text[:60]!r}")
        display_name = _parse_display_name(text[:langle].strip())
        uri_text = text[langle + 1 : rangle]
        if not uri_text or uri_text != uri_text.strip():
            raise SipParseError(f"whitespace or empty URI inside <> in {text[:60]!r}")
        params = parse_params(text[rangle + 1 :])
        return cls(uri=SipUri.parse_any(uri_text), display_name=display_name, params=params)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def with_tag(self, tag: str) -> NameAddr:
        merged = dict(self.params)
        merged["tag"] = tag
        return replace(self, params=merged)

    def __str__(self) -> str:
        uri = f"<{self.uri}>{format_params(self.params)}"
        if self.display_name is None:
            return uri
        words = self.display_name.split(" ")
        if self.display_name and all(is_token(word) for word in words):
            return f"{self.display_name} {uri}"
        return f"{quote(self.display_name)} {uri}"


def _parse_display_name(text: str) -> str | None:
    """display-name = *(token LWS) / quoted-string (RFC 3261 §25.1)."""
    if not text:
        return None
    if text.startswith('"'):
        return unquote(text)
    words = text.split()
    if not all(is_token(word) for word in words):
        raise SipParseError(f"bad display name {text[:40]!r}")
    return " ".join(words)
