"""Cutting a TCP stream into SIP messages by Content-Length (RFC 3261 §18.3)."""

from __future__ import annotations

import pytest

from telephony.sip.errors import SipParseError
from telephony.sip.message import StreamFramer, parse_message

MESSAGE = (
    b"OPTIONS sip:carol@chicago.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP pc33.atlanta.example.com;branch=z9hG4bKhjhs8ass877\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:carol@chicago.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710\r\n"
    b"CSeq: 63104 OPTIONS\r\n"
    b"l: 4\r\n"
    b"\r\n"
    b"body"
)


def test_two_messages_in_one_segment() -> None:
    framer = StreamFramer()
    assert framer.feed(MESSAGE + MESSAGE) == [MESSAGE, MESSAGE]
    assert framer.buffered == 0


def test_message_split_byte_by_byte() -> None:
    framer = StreamFramer()
    out: list[bytes] = []
    for i in range(len(MESSAGE)):
        out += framer.feed(MESSAGE[i : i + 1])
    assert out == [MESSAGE]
    assert parse_message(out[0]).body == b"body"


def test_crlf_keepalives_are_skipped() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == []
    assert framer.feed(b"\r\n" + MESSAGE + b"\r\n\r\n") == [MESSAGE]
    assert framer.keepalives == 3
    assert framer.buffered == 0


def test_missing_content_length_is_an_error_on_streams() -> None:
    framer = StreamFramer()
    with pytest.raises(SipParseError) as info:
        framer.feed(MESSAGE.replace(b"l: 4\r\n", b""))
    assert info.value.status == 400


def test_bad_content_length() -> None:
    with pytest.raises(SipParseError):
        StreamFramer().feed(MESSAGE.replace(b"l: 4", b"l: four"))


def test_oversized_message_gets_513() -> None:
    framer = StreamFramer(max_message_size=300)
    with pytest.raises(SipParseError) as info:
        framer.feed(MESSAGE.replace(b"l: 4", b"l: 4000"))
    assert info.value.status == 513


def test_endless_header_section_is_bounded() -> None:
    framer = StreamFramer(max_message_size=1000)
    with pytest.raises(SipParseError) as info:
        for _ in range(100):
            framer.feed(b"X-Junk: " + b"a" * 50 + b"\r\n")
    assert info.value.status == 513
    assert framer.buffered <= 1100
