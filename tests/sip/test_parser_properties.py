"""Property tests: the parser only ever raises its own error, and round trips are stable."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telephony.sip.errors import SipParseError
from telephony.sip.message import StreamFramer, parse_message

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sip"
CORPUS = tuple(sorted(p.read_bytes() for p in FIXTURES.glob("rfc*/*.dat")))
VALID = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'To: "Bob" <sip:bob@biloxi.example.com>\r\n'
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)
SEEDS = (VALID, *CORPUS)
# Bytes that matter to the grammar, so mutations hit interesting paths.
SPECIAL = st.sampled_from(
    [
        b"\r\n",
        b" ",
        b"\t",
        b":",
        b";",
        b",",
        b'"',
        b"\\",
        b"<",
        b">",
        b"[",
        b"]",
        b"%",
        b"\x00",
        b"\xff",
        b"=",
        b"@",
        b"/",
        b"\r\n ",
        b"0",
        b"99999999999999999999",
    ]
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        pos = draw(st.integers(min_value=0, max_value=len(data)))
        action = draw(st.integers(min_value=0, max_value=2))
        if action == 0:
            data[pos:pos] = draw(SPECIAL | st.binary(min_size=1, max_size=4))
        elif action == 1:
            del data[pos : pos + draw(st.integers(min_value=1, max_value=8))]
        else:
            data[pos : pos + 1] = draw(SPECIAL)
    return bytes(data)


def _parse_or_error(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except SipParseError as exc:
        assert 400 <= exc.status <= 699
        assert exc.detail
        return
    # Whatever parses can be serialised and parsed again to the same message.
    again = parse_message(msg.to_bytes())
    assert again.to_bytes() == msg.to_bytes()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_raise_only_sip_parse_error(data: bytes) -> None:
    _parse_or_error(data)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_messages_raise_only_sip_parse_error(data: bytes) -> None:
    _parse_or_error(data)


@settings(max_examples=200, deadline=None)
@given(mutated(), st.lists(st.integers(min_value=1, max_value=64), max_size=8))
def test_framer_raises_only_sip_parse_error(data: bytes, cuts: list[int]) -> None:
    framer = StreamFramer()
    pos = 0
    try:
        for size in [*cuts, len(data)]:
            for frame in framer.feed(data[pos : pos + size]):
                _parse_or_error(frame)
            pos += size
    except SipParseError as exc:
        assert exc.status in (400, 513)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(SEEDS))
def test_round_trip_is_stable_for_valid_messages(data: bytes) -> None:
    try:
        first = parse_message(data)
    except SipParseError:
        return
    once = first.to_bytes()
    twice = parse_message(once).to_bytes()
    assert once == twice
