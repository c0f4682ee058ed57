"""The header multi-map (RFC 3261 §7.3)."""

from __future__ import annotations

import pytest

from telephony.sip.grammar import split_list
from telephony.sip.headers import Headers


def test_names_are_case_insensitive_and_compact_forms_expand() -> None:
    headers = Headers([("v", "SIP/2.0/UDP a"), ("call-id", "x"), ("VIA", "SIP/2.0/UDP b")])
    assert headers.items() == [("Via", "SIP/2.0/UDP a"), ("Call-ID", "x"), ("Via", "SIP/2.0/UDP b")]
    assert headers.get("i") == "x"
    assert headers.get_all("Via") == ["SIP/2.0/UDP a", "SIP/2.0/UDP b"]
    assert "CALL-ID" in headers
    assert "Contact" not in headers


def test_list_headers_split_outside_quotes_and_brackets() -> None:
    headers = Headers([("Contact", '"Doe, John" <sip:j@h;x=a,b>;q=0.5, <sip:k@h>')])
    assert headers.get_all("m") == ['"Doe, John" <sip:j@h;x=a,b>;q=0.5', "<sip:k@h>"]
    assert headers.get("Contact") == '"Doe, John" <sip:j@h;x=a,b>;q=0.5'


def test_auth_headers_are_not_split() -> None:
    value = 'Digest realm="a", nonce="b", uri="sip:x"'
    headers = Headers([("WWW-Authenticate", value)])
    assert headers.get_all("WWW-Authenticate") == [value]


def test_set_replaces_in_place_and_remove() -> None:
    headers = Headers([("X-A", "1"), ("X-B", "2"), ("x-a", "3")])
    headers.set("x-a", "9")
    assert headers.items() == [("x-a", "9"), ("X-B", "2")]
    headers.remove("x-b")
    assert headers.items() == [("x-a", "9")]
    headers.prepend("Via", "SIP/2.0/UDP p")
    assert headers.items()[0] == ("Via", "SIP/2.0/UDP p")


def test_copy_is_independent() -> None:
    headers = Headers([("X-A", "1")])
    other = headers.copy()
    other.add("X-A", "2")
    assert headers.get_all("X-A") == ["1"]
    assert other.get_all("X-A") == ["1", "2"]


def test_header_injection_is_refused() -> None:
    with pytest.raises(ValueError):
        Headers().add("Subject", "x\r\nVia: evil")


def test_split_list_escaped_quote() -> None:
    assert split_list('"a\\", b", c') == ['"a\\", b"', "c"]
