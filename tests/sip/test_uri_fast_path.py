"""The one-match parse of common SIP URIs and name-addrs gives exactly what the general RFC 3261
§19.1.1 / §20.10 / §25.1 parse gives, and refuses nothing that one accepts or the reverse."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.sip.errors import SipParseError
from telephony.sip.uri import NameAddr, SipUri

# Characters that make up URIs and name-addrs, the troublesome ones included.
_PIECES = st.sampled_from(
    [
        *"sipSIPtel:@;=?&<>\"\\ \t%[]/.-_+~*'()!,`",
        "sip:",
        "sips:",
        "alice",
        "+1555",
        "@",
        "example.com",
        "192.0.2.1",
        ":5060",
        ":99999",
        ":0",
        ";transport=tcp",
        ";transport=",
        ";lr",
        ";tag=a1",
        "%41",
        "%4",
        "<",
        ">",
        '"Bob"',
        '"B\\"b"',
        " ",
        "\r\n",
        "é",
    ]
)
_TEXT = st.lists(_PIECES, max_size=12).map("".join)

_COMMON_URIS = st.builds(
    lambda scheme, user, host, port, transport: f"{scheme}:{user}@{host}{port}{transport}",
    st.sampled_from(["sip", "sips"]),
    st.from_regex(r"[A-Za-z0-9_.!~*'()+-]{1,12}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9.-]{1,20}", fullmatch=True),
    st.sampled_from(["", ":5060", ":1", ":65535", ":65536", ":99999", ":05060"]),
    st.sampled_from(["", ";transport=udp", ";transport=TCP", ";transport=x-1"]),
)


def outcome(parse: Callable[[str], object], text: str) -> object:
    try:
        return parse(text)
    except SipParseError as exc:
        return ("refused", exc.status)


@settings(max_examples=400)
@given(st.one_of(_TEXT, _COMMON_URIS))
def test_sip_uri_fast_path_agrees_with_the_general_parse(text: str) -> None:
    assert outcome(SipUri.parse, text) == outcome(SipUri._parse_full, text)


@settings(max_examples=400)
@given(
    st.one_of(
        _TEXT,
        st.builds(
            lambda name, uri, params: f"{name}<{uri}>{params}",
            st.sampled_from(
                [
                    "",
                    '"Caller" ',
                    '"" ',
                    '"A<b>" ',
                    '"x"',
                    "Bob ",
                    '"a\\"b" ',
                    "sipp ",
                    "Bob Smith ",
                    "Bob  Smith ",
                    "Bob\tSmith ",
                    " Bob ",
                    "B@b ",
                    "a.b-c!d%e*f_g+h`i'j~k",
                ]
            ),
            st.one_of(_COMMON_URIS, _TEXT),
            st.sampled_from(["", ";tag=25d4", ";TAG=x;lr", ";tag=", ";expires=60;q=0.5"]),
        ),
        # A bare addr-spec, with and without header parameters (§20.10).
        st.builds(
            lambda uri, params: f"{uri}{params}",
            _COMMON_URIS,
            st.sampled_from(["", ";tag=25d4", ";expires=60", " ", ",x", "?h=1"]),
        ),
    )
)
def test_name_addr_fast_path_agrees_with_the_general_parse(text: str) -> None:
    assert outcome(NameAddr.parse, text) == outcome(NameAddr._parse_full, text)


@pytest.mark.parametrize(
    "text",
    [
        "sip:+15551230000@192.0.2.1:5060",
        "sip:cxos@198.51.100.5:5060;transport=tcp",
        "sips:alice@atlanta.example.com",
    ],
)
def test_common_uris_round_trip(text: str) -> None:
    uri = SipUri.parse(text)
    assert str(uri) == text and uri == SipUri._parse_full(text)


def test_a_port_past_65535_is_still_refused() -> None:
    with pytest.raises(SipParseError):
        SipUri.parse("sip:alice@example.com:65536")
