"""Parsing and serialising whole SIP messages (RFC 3261 §7, §8.2.6, §18.3)."""

from __future__ import annotations

import pytest

from telephony.sip.errors import SipParseError
from telephony.sip.message import (
    CSeq,
    SipRequest,
    SipResponse,
    Via,
    build_response,
    parse_message,
)

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 10\r\n"
    b"\r\n"
    b"v=0\r\no=- x"
)

OK = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def test_request_fields() -> None:
    msg = parse_message(INVITE)
    assert isinstance(msg, SipRequest)
    assert msg.method == "INVITE"
    assert msg.uri == "sip:bob@biloxi.example.com"
    assert msg.version == "SIP/2.0"
    assert msg.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert msg.cseq == CSeq(314159, "INVITE")
    assert msg.max_forwards == 70
    assert msg.content_type == "application/sdp"
    assert msg.body == b"v=0\r\no=- x"
    assert msg.top_via.branch == "z9hG4bK776asdhds"
    assert msg.top_via.host == "pc33.atlanta.example.com"
    assert msg.from_.tag == "1928301774"
    assert msg.from_.display_name == "Alice"
    assert msg.to.tag is None
    assert msg.to.uri.user == "bob"


def test_response_fields() -> None:
    msg = parse_message(OK)
    assert isinstance(msg, SipResponse)
    assert (msg.status, msg.reason) == (200, "OK")
    assert msg.to.tag == "a6c85cf"
    assert msg.top_via.received == "192.0.2.1"
    assert msg.body == b""


def test_round_trip_is_byte_exact_for_canonical_messages() -> None:
    assert parse_message(INVITE).to_bytes() == INVITE
    assert parse_message(OK).to_bytes() == OK


def test_to_bytes_sets_content_length_from_body() -> None:
    msg = parse_message(INVITE)
    msg.body = b"hello"
    out = parse_message(msg.to_bytes())
    assert out.headers.get("Content-Length") == "5"
    assert out.body == b"hello"


def test_to_bytes_adds_missing_content_length() -> None:
    msg = parse_message(INVITE.replace(b"Content-Length: 10\r\n", b""))
    assert b"Content-Length: 10\r\n" in msg.to_bytes()


def test_build_response_copies_dialog_headers_and_adds_to_tag() -> None:
    request = parse_message(INVITE)
    assert isinstance(request, SipRequest)
    response = build_response(request, 180, to_tag="abc", headers=[("Contact", "<sip:b@h>")])
    assert (response.status, response.reason) == (180, "Ringing")
    assert response.headers.get_all("Via") == request.headers.get_all("Via")
    assert response.to.tag == "abc"
    assert response.from_ == request.from_
    assert response.call_id == request.call_id
    assert response.cseq == request.cseq
    assert response.headers.get("Contact") == "<sip:b@h>"
    again = parse_message(response.to_bytes())
    assert isinstance(again, SipResponse)
    assert again.to.tag == "abc"


def test_build_response_keeps_existing_to_tag() -> None:
    request = parse_message(
        INVITE.replace(b"biloxi.example.com>\r\n", b"biloxi.example.com>;tag=x\r\n")
    )
    assert isinstance(request, SipRequest)
    assert build_response(request, 200, to_tag="new").to.tag == "x"


def test_via_list_and_with_params() -> None:
    msg = parse_message(
        INVITE.replace(
            b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n",
            b"Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bK1;rport, SIP/2.0/TCP [2001:db8::1]:5061"
            b";branch=z9hG4bK2\r\n",
        )
    )
    vias = msg.via
    assert [v.transport for v in vias] == ["UDP", "TCP"]
    assert vias[1].host == "[2001:db8::1]"
    assert vias[1].port == 5061
    assert vias[0].has_rport and vias[0].rport is None
    filled = vias[0].with_params(received="192.0.2.9", rport="5062")
    assert str(filled) == "SIP/2.0/UDP p1.example.com;branch=z9hG4bK1;rport=5062;received=192.0.2.9"
    assert Via.parse(str(filled)) == filled


@pytest.mark.parametrize(
    ("mutation", "status"),
    [
        ((b"SIP/2.0\r\nVia", b"SIP/3.0\r\nVia"), 505),
        ((b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE"), 400),
        ((b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n", b""), 400),
        ((b"Content-Length: 10", b"Content-Length: 11"), 400),
        ((b"Max-Forwards: 70", b"Max-Forwards: seventy"), 400),
    ],
)
def test_malformed_requests(mutation: tuple[bytes, bytes], status: int) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(INVITE.replace(*mutation))
    assert info.value.status == status
    assert info.value.request is not None


def test_datagram_body_longer_than_content_length_is_truncated() -> None:
    msg = parse_message(INVITE + b"garbage")
    assert msg.body == b"v=0\r\no=- x"


def test_oversize_message_gets_513() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(INVITE, max_message_size=100)
    assert info.value.status == 513
    assert info.value.reason_phrase == "Message Too Large"


def test_missing_max_forwards_is_accepted() -> None:
    msg = parse_message(INVITE.replace(b"Max-Forwards: 70\r\n", b""))
    assert msg.max_forwards is None


def test_unknown_method_parses() -> None:
    msg = parse_message(INVITE.replace(b"INVITE", b"NEWMETHOD"))
    assert isinstance(msg, SipRequest)
    assert msg.method == "NEWMETHOD"
