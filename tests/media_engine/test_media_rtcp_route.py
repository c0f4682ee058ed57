"""Where our RTCP goes: the peer's a=rtcp port (RFC 3605) or its RTP port + 1, then the source of
its own RTCP; never its SIP port or its RTP port, and nowhere while a NAT-latched peer has not
shown its RTCP address. Checked on 127.0.0.1 sockets through the runner, and on the leg."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from telephony.media.engine import EngineSettings
from telephony.media.playout import silence
from telephony.media.runner import MediaRunner
from telephony.media.settings import LegSettings
from telephony.rtp.g711 import Law
from telephony.rtp.rtcp import ReceiverReport, SenderReport, parse_compound
from telephony.sdp import SdpSession, answer_offer, make_offer, parse_sdp, process_answer
from tests.media_engine.media_helpers import RtpPeer, new_leg
from tests.media_engine.udp_peer import UdpPeer, free_rtp_port

pytestmark = pytest.mark.timeout(30)

HOST = "127.0.0.1"


@pytest.fixture
async def runner() -> AsyncIterator[MediaRunner]:
    # Reports every 50 ms on average, so a test sees several in a fraction of a second.
    runner = MediaRunner(settings=EngineSettings(leg=LegSettings(rtcp_interval=0.05)))
    yield runner
    await runner.close()


async def peer_at(port: int) -> UdpPeer:
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_datagram_endpoint(UdpPeer, local_addr=(HOST, port))
    return peer


async def open_leg(runner: MediaRunner, **kwargs: object) -> int:
    port = free_rtp_port()
    await runner.open_leg(
        "c1",
        local=(HOST, port),
        law=Law.ULAW,
        payload_type=0,
        event_payload_type=101,
        **kwargs,  # type: ignore[arg-type]
    )
    return port


def is_report(data: bytes) -> bool:
    report = parse_compound(data).packets[0]
    return isinstance(report, SenderReport | ReceiverReport)


async def test_rtcp_goes_to_the_a_rtcp_port_and_never_to_the_sip_port(
    runner: MediaRunner,
) -> None:
    base = free_rtp_port()
    rtp, sip, rtcp = await peer_at(base), await peer_at(base + 1), await UdpPeer.open()
    try:
        await open_leg(runner, remote=(HOST, base), rtcp=rtcp.address, signalling=(HOST, base + 1))
        await rtcp.wait_for(3)
        assert all(is_report(data) for _, data in rtcp.arrivals)
        assert sip.arrivals == [] and rtp.arrivals == []
    finally:
        for peer in (rtp, sip, rtcp):
            peer.close()


async def test_a_nat_latched_peer_gets_rtcp_only_where_its_own_rtcp_comes_from(
    runner: MediaRunner,
) -> None:
    # The peer's SDP names a port it does not send from (a NAT in between); it sends RTP from
    # `base`, and its SIP socket sits at `base + 1`, where RTP source + 1 would point.
    base = free_rtp_port()
    rtp, sip, rtcp = await peer_at(base), await peer_at(base + 1), await UdpPeer.open()
    unused = free_rtp_port()
    try:
        port = await open_leg(runner, remote=(HOST, unused), signalling=(HOST, 5060))
        phone = RtpPeer()
        for _ in range(3):  # latched after three packets in sequence (LegSettings.latch_packets)
            rtp.send(phone.audio(), (HOST, port))
        await asyncio.sleep(0)
        runner.engine.play("c1", (silence(Law.ULAW, 1.0),))
        runner.arm()
        await rtp.wait_for(15)  # 300 ms of prompt back at the latched source: six intervals
        assert sip.arrivals == []
        # Its RTCP shows where RTCP goes; ours follows there.
        ours = ReceiverReport(ssrc=phone.ssrc).serialize()
        rtcp.send(ours, (HOST, port + 1))
        await rtcp.wait_for(2)
        assert all(is_report(data) for _, data in rtcp.arrivals)
        assert sip.arrivals == []
        assert runner.engine.leg("c1").counters.rtcp_received == 1
    finally:
        for peer in (rtp, sip, rtcp):
            peer.close()


def test_rtp_port_plus_one_by_default_and_nothing_if_that_is_the_sip_port() -> None:
    assert new_leg(remote=("192.0.2.5", 4000)).rtcp_destination == ("192.0.2.5", 4001)
    odd = new_leg(remote=("192.0.2.5", 5059), signalling=("192.0.2.5", 5060))
    assert odd.rtcp_destination is None


def test_rtcp_from_the_peers_rtp_port_does_not_move_ours_there() -> None:
    leg = new_leg(remote=("192.0.2.5", 4000))
    report = ReceiverReport(ssrc=9).serialize()
    leg.receive_rtcp(report, ("192.0.2.5", 4000), 1.0, 0.0)  # sent from its RTP socket
    assert leg.rtcp_destination == ("192.0.2.5", 4001)
    leg.receive_rtcp(report, ("192.0.2.5", 4011), 2.0, 0.0)
    assert leg.rtcp_destination == ("192.0.2.5", 4011)


def test_a_rtcp_in_the_answer_and_rtcp_mux_is_not_taken_up() -> None:
    offer = make_offer("192.0.2.1", 31000, session=SdpSession(session_id=1, address="192.0.2.1"))
    assert offer.media[0].attribute("rtcp-mux") is None
    answer = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0\r\na=rtcp:4711 IN IP4 198.51.100.7\r\n"
    )
    assert process_answer(offer, answer).rtcp == ("198.51.100.7", 4711)
    port_only = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0\r\na=rtcp:4711\r\n"
    )
    assert process_answer(offer, port_only).rtcp == ("192.0.2.9", 4711)
    # A peer offering RTCP multiplexing is answered without it (RFC 5761 §5.1.1): it keeps
    # RTCP on its own port, the one its a=rtcp names.
    muxed = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0\r\na=rtcp:4000\r\na=rtcp-mux\r\n"
    )
    ours, negotiated = answer_offer(
        muxed, "192.0.2.1", 31000, session=SdpSession(session_id=2, address="192.0.2.1")
    )
    assert ours.media[0].attribute("rtcp-mux") is None
    leg = new_leg(remote=("192.0.2.9", 4000), rtcp=negotiated.rtcp)
    assert leg.rtcp_destination is None  # a=rtcp names its RTP port: that is muxing, not ours
