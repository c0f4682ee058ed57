"""SDP parsing and RFC 3264 offer/answer against offers shaped like real phones and trunks send."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telephony.sdp import (
    PCMA,
    PCMU,
    Attribute,
    Codec,
    Connection,
    Direction,
    SdpError,
    SdpNegotiationError,
    SdpSession,
    answer_offer,
    make_offer,
    parse_sdp,
    process_answer,
)


def crlf(text: str) -> bytes:
    return text.strip("\n").replace("\n", "\r\n").encode() + b"\r\n"


# baresip 1.0.0 with `audio_codecs PCMU,PCMA` calling in.
BARESIP_OFFER = crlf("""
v=0
o=- 1731532434 1731532434 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
a=tool:baresip 1.0.0
m=audio 10010 RTP/AVP 0 8 101
b=AS:80
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
a=label:1
a=ssrc:1588447350 cname:b6f1c0de-2b1e-4d7e-9c7e-3a1f3c9d4e55
a=rtcp-rsize
a=ptime:20
""")

# SIPp's built-in `uac` scenario: one static payload type, no telephone-event.
SIPP_OFFER = crlf("""
v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
""")

# A carrier trunk offering G.729 first, several codecs, comfort noise and DTMF 0-16.
TRUNK_OFFER = crlf("""
v=0
o=root 1592781029 1592781029 IN IP4 203.0.113.10
s=Media Gateway
c=IN IP4 203.0.113.10
t=0 0
m=audio 18732 RTP/AVP 18 8 0 9 101 13
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:9 G722/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=rtpmap:13 CN/8000
a=ptime:30
a=maxptime:150
a=sendrecv
""")

# A desktop softphone on IPv6 offering wideband codecs, DTMF at three rates, and video.
SOFTPHONE_V6_OFFER = crlf("""
v=0
o=agent7 3617 1421 IN IP6 2001:db8::25
s=Talk
c=IN IP6 2001:db8::25
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
m=audio 7078 RTP/AVP 96 97 0 8 101 99 100
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
m=video 9078 RTP/AVP 96 97
a=rtpmap:96 VP8/90000
a=rtpmap:97 H264/90000
a=fmtp:97 profile-level-id=42801F
""")


def session(session_id: int = 4242, address: str = "192.0.2.1") -> SdpSession:
    return SdpSession(session_id=session_id, address=address, username="cxos")


# --- parsing and serialising -----------------------------------------------------------------


@pytest.mark.parametrize(
    "fixture", [BARESIP_OFFER, SIPP_OFFER, TRUNK_OFFER, SOFTPHONE_V6_OFFER], ids=str
)
def test_real_offers_round_trip_byte_for_byte(fixture: bytes) -> None:
    assert parse_sdp(fixture).to_bytes() == fixture


def test_parse_reads_every_field_of_baresip_offer() -> None:
    sdp = parse_sdp(BARESIP_OFFER)
    assert sdp.origin.session_id == "1731532434"
    assert sdp.origin.session_version == 1731532434
    assert sdp.origin.address == "127.0.0.1"
    assert sdp.connection == Connection(address="127.0.0.1")
    assert sdp.timing == (0, 0)
    assert sdp.attributes == (Attribute("tool", "baresip 1.0.0"),)
    (audio,) = sdp.media
    assert (audio.media, audio.port, audio.proto, audio.formats) == (
        "audio",
        10010,
        "RTP/AVP",
        ("0", "8", "101"),
    )
    assert audio.bandwidths == ("AS:80",)
    assert audio.rtpmap("101") is not None
    assert audio.fmtp("101") == "0-15"
    assert audio.attribute("ptime") == "20"
    assert audio.attribute("rtcp-rsize") == ""
    assert audio.direction() is Direction.SENDRECV


def test_static_payload_type_without_rtpmap_is_known() -> None:
    sdp = parse_sdp(
        crlf("""
v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 4000 RTP/AVP 8
""")
    )
    rtpmap = sdp.media[0].rtpmap("8")
    assert rtpmap is not None and (rtpmap.encoding, rtpmap.clock_rate) == ("PCMA", 8000)


def test_lf_only_line_endings_are_accepted() -> None:
    assert parse_sdp(SIPP_OFFER.replace(b"\r\n", b"\n")) == parse_sdp(SIPP_OFFER)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty session description"),
        (b"v=1\r\n", "SDP line 1: must start with v=0, not 'v=1'"),
        (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nx=1\r\n", "SDP line 5: unknown line type x="),
        (
            b"v=0\r\no = - 1 1 IN IP4 h\r\n",
            "SDP line 2: not a <type>=<value> line: 'o = - 1 1 IN IP4 h'",
        ),
        (b"v=0\r\no=- 1 1 IN IP4\r\n", "SDP line 2: o= needs 6 fields, found 5"),
        (b"v=0\r\no=- a 1 IN IP4 h\r\n", "SDP line 2: o= session id and version must be numbers"),
        (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\n", "missing mandatory o=, s= or t= line"),
        (
            b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0\r\n",
            "SDP line 4: t= needs <start> <stop> as numbers",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IPX h\r\n",
            "SDP line 4: c= address type 'IPX' is neither IP4 nor IP6",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio 70000 RTP/AVP 0\r\n",
            "SDP line 5: m= port '70000' is not a port number",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP\r\n",
            "SDP line 5: m= needs <media> <port> <proto> and at least one format",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nt=0 0\r\n",
            "SDP line 6: t= is not allowed inside a media description",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\ns=-\r\n",
            "SDP line 4: second s= line at session level",
        ),
        (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=\xff\r\n", "body is not UTF-8 (byte 25)"),
        (
            b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nb=AS\r\n",
            "SDP line 5: b= must be <type>:<number>, not 'AS'",
        ),
    ],
)
def test_malformed_descriptions_say_where_and_why(body: bytes, message: str) -> None:
    with pytest.raises(SdpError) as caught:
        parse_sdp(body)
    assert str(caught.value) == message
    assert caught.value.status == 400


@given(st.binary(max_size=300))
def test_parser_only_raises_its_own_error(data: bytes) -> None:
    with contextlib.suppress(SdpError):
        parse_sdp(data)


@given(st.text(alphabet="vosctma=0123456789 IN IP4\r\n:/-", max_size=200))
def test_parser_only_raises_its_own_error_on_sdp_like_text(text: str) -> None:
    with contextlib.suppress(SdpError):
        parse_sdp(text)


# --- answering offers ------------------------------------------------------------------------


def test_answer_to_baresip_checked_field_by_field() -> None:
    answer, negotiated = answer_offer(
        parse_sdp(BARESIP_OFFER), "192.0.2.1", 30000, session=session()
    )
    assert answer.to_bytes() == crlf("""
v=0
o=cxos 4242 0 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 30000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
""")
    assert negotiated.codec == PCMU
    assert negotiated.telephone_event == 101
    assert (negotiated.remote_address, negotiated.remote_port) == ("127.0.0.1", 10010)
    assert negotiated.ptime == 20
    assert negotiated.direction is Direction.SENDRECV
    assert negotiated.media_index == 0
    assert not negotiated.remote_hold


def test_answer_to_sipp_has_no_telephone_event() -> None:
    answer, negotiated = answer_offer(parse_sdp(SIPP_OFFER), "192.0.2.1", 30002, session=session())
    assert answer.media[0].formats == ("0",)
    assert negotiated.telephone_event is None
    assert negotiated.codec == PCMU


def test_trunk_answer_follows_offer_order_and_keeps_dtmf_and_ptime() -> None:
    answer, negotiated = answer_offer(parse_sdp(TRUNK_OFFER), "192.0.2.1", 30004, session=session())
    (audio,) = answer.media
    # G.729 is first but unsupported; PCMA comes before PCMU in the trunk's list. Comfort
    # noise, offered, is taken too (RFC 3389 §5).
    assert audio.formats == ("8", "101", "13")
    assert negotiated.comfort_noise
    assert audio.fmtp("101") == "0-16"
    assert negotiated.codec == PCMA
    assert negotiated.ptime == 30  # the trunk asked to receive 30 ms packets
    assert (negotiated.remote_address, negotiated.remote_port) == ("203.0.113.10", 18732)


def test_prefer_local_picks_our_first_codec() -> None:
    _, negotiated = answer_offer(
        parse_sdp(TRUNK_OFFER), "192.0.2.1", 30004, session=session(), prefer="local"
    )
    assert negotiated.codec == PCMU


def test_ipv6_softphone_gets_pcmu_and_8khz_dtmf_and_video_rejected_in_place() -> None:
    answer, negotiated = answer_offer(
        parse_sdp(SOFTPHONE_V6_OFFER), "2001:db8::1", 30006, session=session(address="2001:db8::1")
    )
    assert answer.origin.addr_type == "IP6"
    assert answer.connection == Connection(addr_type="IP6", address="2001:db8::1")
    audio, video = answer.media
    assert audio.formats == ("0", "100")  # offerer's telephone-event number at 8 kHz
    assert audio.rtpmap("100") is not None
    assert audio.fmtp("100") == "0-15"  # no fmtp offered: RFC 4733 default
    assert (video.media, video.port, video.formats, video.attributes) == (
        "video",
        0,
        ("96", "97"),
        (),
    )
    assert negotiated.remote_address == "2001:db8::25"
    assert negotiated.telephone_event == 100


def test_dynamic_payload_type_for_g711_is_kept() -> None:
    offer = parse_sdp(
        crlf("""
v=0
o=- 5 5 IN IP4 198.51.100.7
s=-
t=0 0
m=audio 5004 RTP/AVP 112
c=IN IP4 198.51.100.7
a=rtpmap:112 pcma/8000
""")
    )
    answer, negotiated = answer_offer(offer, "192.0.2.1", 30008, session=session())
    assert negotiated.codec == Codec(name="PCMA", payload_type=112)
    assert answer.media[0].formats == ("112",)
    assert negotiated.remote_address == "198.51.100.7"  # media-level c=


def test_second_audio_stream_and_already_rejected_stream_get_port_zero() -> None:
    offer = parse_sdp(
        crlf("""
v=0
o=- 5 5 IN IP4 198.51.100.7
s=-
c=IN IP4 198.51.100.7
t=0 0
m=audio 0 RTP/AVP 0
m=audio 5004 RTP/AVP 0
m=audio 5006 RTP/AVP 8
""")
    )
    answer, negotiated = answer_offer(offer, "192.0.2.1", 30008, session=session())
    assert [m.port for m in answer.media] == [0, 30008, 0]
    assert negotiated.media_index == 1


@pytest.mark.parametrize(
    ("offered", "answered", "ours"),
    [
        ("sendrecv", "sendrecv", Direction.SENDRECV),
        ("sendonly", "recvonly", Direction.RECVONLY),
        ("recvonly", "sendonly", Direction.SENDONLY),
        ("inactive", "inactive", Direction.INACTIVE),
    ],
)
def test_direction_is_answered_per_rfc3264(offered: str, answered: str, ours: Direction) -> None:
    offer = parse_sdp(SIPP_OFFER + f"a={offered}\r\n".encode())
    answer, negotiated = answer_offer(offer, "192.0.2.1", 30010, session=session())
    assert answer.media[0].direction() is Direction(answered)
    assert negotiated.direction is ours
    assert negotiated.remote_hold is (offered in ("sendonly", "inactive"))


def test_session_level_direction_applies_to_media() -> None:
    offer = parse_sdp(SIPP_OFFER.replace(b"t=0 0\r\n", b"t=0 0\r\na=sendonly\r\n"))
    answer, _ = answer_offer(offer, "192.0.2.1", 30010, session=session())
    assert answer.media[0].direction() is Direction.RECVONLY


def test_hold_by_zero_connection_address_means_we_do_not_send() -> None:
    offer = parse_sdp(SIPP_OFFER.replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 0.0.0.0"))
    answer, negotiated = answer_offer(offer, "192.0.2.1", 30012, session=session())
    assert answer.media[0].direction() is Direction.RECVONLY
    assert negotiated.remote_hold


def test_we_put_the_peer_on_hold_with_sendonly() -> None:
    answer, negotiated = answer_offer(
        parse_sdp(BARESIP_OFFER),
        "192.0.2.1",
        30000,
        session=session(),
        direction=Direction.SENDONLY,
    )
    assert answer.media[0].direction() is Direction.SENDONLY
    assert negotiated.direction is Direction.SENDONLY


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            TRUNK_OFFER.replace(
                b"m=audio 18732 RTP/AVP 18 8 0 9 101 13", b"m=audio 18732 RTP/AVP 18 9 101"
            ),
            "nothing in common: audio stream 0 offers no supported codec "
            "(G729/8000, G722/8000, telephone-event/8000)",
        ),
        (
            SIPP_OFFER.replace(b"RTP/AVP", b"RTP/SAVP"),
            "nothing in common: audio stream 0 uses RTP/SAVP",
        ),
        (
            SIPP_OFFER.replace(b"m=audio", b"m=image").replace(b"RTP/AVP 0", b"udptl t38"),
            "nothing in common: no audio stream offered",
        ),
        (
            SIPP_OFFER.replace(b"audio 6000", b"audio 0"),
            "nothing in common: no audio stream offered",
        ),
    ],
)
def test_nothing_in_common_is_a_488(body: bytes, detail: str) -> None:
    with pytest.raises(SdpNegotiationError) as caught:
        answer_offer(parse_sdp(body), "192.0.2.1", 30000, session=session())
    assert caught.value.status == 488
    assert caught.value.reason_phrase == "Not Acceptable Here"
    assert str(caught.value) == detail


def test_offer_without_any_connection_line_is_not_acceptable() -> None:
    body = SIPP_OFFER.replace(b"c=IN IP4 127.0.0.1\r\n", b"")
    with pytest.raises(SdpNegotiationError) as caught:
        answer_offer(parse_sdp(body), "192.0.2.1", 30000, session=session())
    assert str(caught.value) == "nothing in common: audio stream 0 has no c= line"


def test_process_answer_without_connection_line_is_an_error() -> None:
    offer = make_offer("192.0.2.1", 31000, session=session())
    body = SIPP_OFFER.replace(b"c=IN IP4 127.0.0.1\r\n", b"")
    with pytest.raises(SdpError, match="media stream 0 has no c= line at media or session level"):
        process_answer(offer, parse_sdp(body))


def test_version_goes_up_only_when_the_answer_changes() -> None:
    ours = session()
    offer = parse_sdp(BARESIP_OFFER)
    first, _ = answer_offer(offer, "192.0.2.1", 30000, session=ours)
    refresh, _ = answer_offer(offer, "192.0.2.1", 30000, session=ours)  # session refresh
    hold, _ = answer_offer(
        parse_sdp(BARESIP_OFFER.replace(b"a=sendrecv", b"a=sendonly")),
        "192.0.2.1",
        30000,
        session=ours,
    )
    resume, _ = answer_offer(offer, "192.0.2.1", 30000, session=ours)
    versions = [d.origin.session_version for d in (first, refresh, hold, resume)]
    assert versions == [0, 0, 1, 2]
    assert {d.origin.session_id for d in (first, hold, resume)} == {"4242"}


# --- offers we make, answers we read ---------------------------------------------------------


def test_make_offer_to_an_agent() -> None:
    offer = make_offer("192.0.2.1", 31000, session=session())
    assert offer.to_bytes() == crlf("""
v=0
o=cxos 4242 0 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 31000 RTP/AVP 0 8 101 13
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=rtpmap:13 CN/8000
a=ptime:20
a=sendrecv
""")


def test_hold_reoffer_increments_version() -> None:
    ours = session()
    make_offer("192.0.2.1", 31000, session=ours)
    hold = make_offer("192.0.2.1", 31000, session=ours, direction=Direction.SENDONLY)
    assert hold.origin.session_version == 1
    assert hold.media[0].direction() is Direction.SENDONLY


def test_offer_answered_by_our_own_answerer_agrees_on_both_sides() -> None:
    offer = make_offer("192.0.2.1", 31000, session=session(), telephone_event=96)
    answer, their_view = answer_offer(
        parse_sdp(offer.to_bytes()), "198.51.100.9", 40000, session=session(99, "198.51.100.9")
    )
    our_view = process_answer(offer, parse_sdp(answer.to_bytes()))
    assert our_view.codec == their_view.codec == PCMU
    assert our_view.telephone_event == their_view.telephone_event == 96
    assert (our_view.remote_address, our_view.remote_port) == ("198.51.100.9", 40000)
    assert (their_view.remote_address, their_view.remote_port) == ("192.0.2.1", 31000)
    assert our_view.direction is Direction.SENDRECV


def test_process_answer_from_a_phone_preferring_pcma_and_recvonly() -> None:
    offer = make_offer("192.0.2.1", 31000, session=session())
    answer = parse_sdp(
        crlf("""
v=0
o=- 77 78 IN IP4 10.1.2.3
s=-
c=IN IP4 10.1.2.3
t=0 0
m=audio 16384 RTP/AVP 8 0
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=ptime:40
a=recvonly
""")
    )
    negotiated = process_answer(offer, answer)
    assert negotiated.codec == PCMA
    assert negotiated.telephone_event is None
    assert negotiated.ptime == 40
    assert negotiated.direction is Direction.SENDONLY


def test_process_answer_rejects_wrong_stream_count_and_rejection() -> None:
    offer = make_offer("192.0.2.1", 31000, session=session())
    two = parse_sdp(SIPP_OFFER + b"m=video 0 RTP/AVP 96\r\n")
    with pytest.raises(SdpError, match=r"answer has 2 m= lines, offer had 1 \(RFC 3264 §6\)"):
        process_answer(offer, two)
    with pytest.raises(SdpNegotiationError, match="rejected every audio stream"):
        process_answer(offer, parse_sdp(SIPP_OFFER.replace(b"audio 6000", b"audio 0")))
    g729 = SIPP_OFFER.replace(b"RTP/AVP 0", b"RTP/AVP 18").replace(b"0 PCMU", b"18 G729")
    with pytest.raises(SdpNegotiationError, match="answer stream 0 has no codec we offered"):
        process_answer(offer, parse_sdp(g729))
