"""SIP URIs and name-addr values (RFC 3261 §19.1, §20.10, §25.1; RFC 5118)."""

from __future__ import annotations

import pytest

from telephony.sip.errors import SipParseError
from telephony.sip.uri import NameAddr, SipUri


def test_full_sip_uri() -> None:
    uri = SipUri.parse(
        "sips:alice:secret@atlanta.example.com:5061;transport=tcp;lr?subject=project"
    )
    assert uri.scheme == "sips"
    assert (uri.user, uri.password) == ("alice", "secret")
    assert (uri.host, uri.port) == ("atlanta.example.com", 5061)
    assert uri.params == {"transport": "tcp", "lr": None}
    assert uri.headers == {"subject": "project"}
    assert str(uri) == "sips:alice:secret@atlanta.example.com:5061;transport=tcp;lr?subject=project"


def test_escaped_user_is_unescaped() -> None:
    uri = SipUri.parse("sip:sips%3Auser%40example.com@example.net")
    assert uri.user == "sips:user@example.com"
    assert uri.host == "example.net"
    assert SipUri.parse(str(uri)) == uri


def test_ipv6_host() -> None:
    uri = SipUri.parse("sip:[2001:db8::10]:5070")
    assert (uri.host, uri.port) == ("[2001:db8::10]", 5070)
    assert str(uri) == "sip:[2001:db8::10]:5070"


def test_tel_uri() -> None:
    uri = SipUri.parse("tel:+1-201-555-0123;phone-context=example.com")
    assert (uri.scheme, uri.user, uri.host) == ("tel", "+1-201-555-0123", "")
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com"


def test_unsupported_scheme_is_416() -> None:
    with pytest.raises(SipParseError) as info:
        SipUri.parse("http://example.com/")
    assert info.value.status == 416


@pytest.mark.parametrize(
    "text",
    ["sip:", "sip:user@", "sip:a@b@c", "sip:host:99999", "sip:ho st", "sip:[::1", "sip:x%4@h"],
)
def test_malformed_uris(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        SipUri.parse(text)
    assert info.value.status == 400


def test_name_addr_with_quoted_display_name() -> None:
    addr = NameAddr.parse('"Alice \\"Al\\" Smith" <sip:alice@atlanta.example.com;lr>;tag=88sja8x')
    assert addr.display_name == 'Alice "Al" Smith'
    assert addr.uri.params == {"lr": None}
    assert addr.tag == "88sja8x"
    assert NameAddr.parse(str(addr)) == addr


def test_addr_spec_params_belong_to_header() -> None:
    addr = NameAddr.parse("sip:bob@biloxi.example.com;tag=abc")
    assert addr.display_name is None
    assert addr.uri.params == {}
    assert addr.tag == "abc"


def test_token_display_name_and_with_tag() -> None:
    addr = NameAddr.parse("Bob  Smith <sip:bob@biloxi.example.com>")
    assert addr.display_name == "Bob Smith"
    tagged = addr.with_tag("t1")
    assert str(tagged) == "Bob Smith <sip:bob@biloxi.example.com>;tag=t1"
    assert addr.tag is None


def test_name_addr_keeps_unknown_scheme_opaque() -> None:
    addr = NameAddr.parse("<http://example.com/x>")
    assert addr.uri.scheme == "http"
    assert not addr.uri.is_sip
    assert str(addr.uri) == "http://example.com/x"
