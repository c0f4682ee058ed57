"""Comfort noise (RFC 3389), with a fake clock: silence played as low noise when configured,
inbound CN packets counted and heard as silence, and CN in SDP offers and answers."""

from __future__ import annotations

import numpy as np
import pytest

from telephony.media.engine import EngineSettings, MediaEngine
from telephony.media.playout import silence
from telephony.media.tap import AudioTap
from telephony.rtp.g711 import Law, codec_for
from telephony.rtp.packet import build_header, parse
from telephony.sdp import SdpSession, answer_offer, make_offer, parse_sdp, process_answer
from tests.media_engine.media_helpers import AGENT_ADDR, CALLER_ADDR, RtpPeer, open_caller, tone

FRAME = 0.020


def played(engine: MediaEngine, prompt: tuple[bytes, ...], ticks: int) -> list[bytes]:
    engine.play("c1", (prompt,))
    payloads = []
    for tick in range(1, ticks + 1):
        payloads += [parse(data).payload for _, data, _ in engine.tick(tick * FRAME)]
    return payloads


def rms(payload: bytes, law: Law) -> float:
    samples = codec_for(law).decode(payload).astype(np.float64)
    return float(np.sqrt(np.mean(samples**2)))


@pytest.mark.parametrize("law", list(Law))
def test_played_silence_goes_out_as_low_noise_when_configured(law: Law) -> None:
    engine = MediaEngine(origin=0.0, settings=EngineSettings(comfort_noise_dbm0=-60.0))
    open_caller(engine, law=law)
    speech = codec_for(law).encode(tone(440.0))
    payloads = played(engine, (speech, *silence(law, 0.2), speech), 12)
    assert len(payloads) == 12
    assert payloads[0] == payloads[-1] == speech  # audio itself untouched
    pause = payloads[1:-1]
    assert all(payload != codec_for(law).silence() for payload in pause)
    assert len(set(pause)) == len(pause)  # noise, not one frame repeated
    # -60 dBm0 is about 16 on the 16-bit scale: heard as a live line, not as sound.
    assert all(5 < rms(payload, law) < 50 for payload in pause)


def test_silence_stays_silence_by_default() -> None:
    engine = MediaEngine(origin=0.0)
    open_caller(engine)
    payloads = played(engine, silence(Law.ULAW, 0.1), 5)
    assert payloads == [codec_for(Law.ULAW).silence()] * 5


def test_comfort_noise_level_is_checked() -> None:
    with pytest.raises(ValueError, match="comfort_noise_dbm0"):
        EngineSettings(comfort_noise_dbm0=-10.0)


def test_inbound_comfort_noise_is_counted_heard_as_silence_and_not_relayed() -> None:
    engine = MediaEngine(origin=0.0)
    open_caller(engine)
    engine.open_leg(
        "a1", law=Law.ULAW, payload_type=0, event_payload_type=101, remote=AGENT_ADDR, now=0.0
    )
    engine.bridge("c1", "a1")
    tap = AudioTap(capacity=100)
    engine.add_tap("c1", tap)
    peer = RtpPeer()
    speech = codec_for(Law.ULAW).encode(tone(440.0))
    relayed = 0
    now = 0.0
    for index in range(30):
        now += FRAME
        if 10 <= index < 20:
            # A silence period: one CN packet (RFC 3389 §4: a level octet) per frame here.
            data = build_header(13, index == 10, peer.sequence, peer.timestamp, peer.ssrc)
            peer.sequence += 1
            peer.timestamp += 160
            data += bytes([60])
        else:
            data = peer.audio(speech)
        relayed += engine.receive("c1", data, CALLER_ADDR, now) is not None
        engine.tick(now)
    counters = engine.leg("c1").counters
    assert counters.comfort_noise == 10
    assert counters.drops.wrong_payload_type == 0 and counters.drops.total == 0
    assert engine.leg("c1").stats.lost == 0
    assert relayed == 20  # the audio only
    frames = []
    while (pcm := tap.pop()) is not None:
        frames.append(pcm)
    # Every frame decoded, the silence period as silence: no gap, no repeated speech.
    heard = "".join("S" if np.abs(frame).max() > 1000 else "-" for frame in frames)
    assert heard.strip("S") == "-" * 10 and len(heard) >= 25  # the rest still buffered


def test_comfort_noise_is_offered_and_accepted_in_sdp() -> None:
    offer = make_offer("192.0.2.1", 31000, session=SdpSession(session_id=1, address="192.0.2.1"))
    assert "13" in offer.media[0].formats
    answer = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0 13\r\na=rtpmap:13 CN/8000\r\n"
    )
    assert process_answer(offer, answer).comfort_noise
    plain = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0\r\n"
    )
    ours, negotiated = answer_offer(
        plain, "192.0.2.1", 31000, session=SdpSession(session_id=2, address="192.0.2.1")
    )
    assert ours.media[0].formats == ("0",) and not negotiated.comfort_noise
