"""The asyncio runner and call API on 127.0.0.1 against Python RTP peers."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from telephony.media.calls import CallEndedError, MediaCall
from telephony.media.events import DigitReceived, MediaLegClosed, PlaybackFinished
from telephony.media.runner import MediaRunner
from telephony.rtp.audio import PromptCache
from telephony.rtp.g711 import Law, encode_alaw, encode_ulaw, ulaw_to_alaw
from tests.media_engine.media_helpers import RtpPeer, tone
from tests.media_engine.udp_peer import UdpPeer, free_rtp_port

pytestmark = pytest.mark.timeout(30)


class Leg:
    """A server leg with its Python peer."""

    def __init__(self, call: MediaCall, peer: UdpPeer, server: tuple[str, int]) -> None:
        self.call = call
        self.peer = peer
        self.server = server


@pytest.fixture
async def runner() -> AsyncIterator[MediaRunner]:
    published: list[object] = []
    runner = MediaRunner(publish=published.append)
    runner.published = published  # type: ignore[attr-defined]
    yield runner
    await runner.close()


async def open_leg(runner: MediaRunner, call_id: str, law: Law = Law.ULAW) -> Leg:
    peer = await UdpPeer.open()
    port = free_rtp_port()
    await runner.open_leg(
        call_id,
        local=("127.0.0.1", port),
        law=law,
        payload_type=law.payload_type,
        event_payload_type=101,
        remote=peer.address,
    )
    call = MediaCall(runner, call_id, law=law, prompts=PromptCache())
    return Leg(call, peer, ("127.0.0.1", port))


async def test_prompt_arrives_paced_at_20_ms(runner: MediaRunner) -> None:
    leg = await open_leg(runner, "c1")
    prompt = tuple(bytes([i]) * 160 for i in range(50))  # one second
    finished = await leg.call.play([prompt])
    assert finished.reason == "completed" and finished.played_seconds == pytest.approx(1.0)
    await leg.peer.wait_for(50)
    packets = leg.peer.packets()
    assert [p.payload[0] for p in packets] == list(range(50))
    assert all(b.timestamp - a.timestamp == 160 for a, b in itertools.pairwise(packets))
    gaps = np.diff([t for t, _ in leg.peer.arrivals])
    assert statistics.mean(gaps) == pytest.approx(0.020, abs=0.002)
    assert max(abs(gaps - 0.020)) < 0.015  # loaded CI machines: still well inside a frame


async def test_bridged_legs_carry_audio_both_ways_across_laws(runner: MediaRunner) -> None:
    caller = await open_leg(runner, "caller", Law.ULAW)
    agent = await open_leg(runner, "agent", Law.ALAW)
    caller.call.bridge(agent.call)
    said_by_caller = [encode_ulaw(tone(300 + 10 * i)) for i in range(20)]
    said_by_agent = [encode_alaw(tone(900 + 10 * i)) for i in range(20)]
    caller_rtp, agent_rtp = RtpPeer(payload_type=0), RtpPeer(ssrc=42, payload_type=8)
    for mine, theirs in zip(said_by_caller, said_by_agent, strict=False):
        caller.peer.send(caller_rtp.audio(mine), caller.server)
        agent.peer.send(agent_rtp.audio(theirs), agent.server)
        await asyncio.sleep(0.005)
    await agent.peer.wait_for(20)
    await caller.peer.wait_for(20)
    assert [p.payload for p in agent.peer.packets()] == [ulaw_to_alaw(x) for x in said_by_caller]
    heard_by_caller = [p.payload for p in caller.peer.packets()]
    assert all(p.payload_type == 0 for p in caller.peer.packets())
    assert heard_by_caller == [x.translate(bytes(_alaw_to_ulaw_table())) for x in said_by_agent]


def _alaw_to_ulaw_table() -> bytes:
    from telephony.rtp.g711 import ALAW_TO_ULAW

    return ALAW_TO_ULAW


async def test_collect_digits_with_barge_in_loss_and_garbage(runner: MediaRunner) -> None:
    leg = await open_leg(runner, "c1")
    rtp = RtpPeer()
    prompt = tuple(bytes(160) for _ in range(500))
    playing = asyncio.create_task(leg.call.play([prompt], barge_in=True))
    await asyncio.sleep(0.05)
    for index, key in enumerate("42#"):
        packets = rtp.key_press(key)
        if index == 1:
            packets = [packets[-1], *packets[:-1]]  # reordered
            del packets[2]  # and one lost
        for packet in packets:
            leg.peer.send(packet, leg.server)
            leg.peer.send(b"\x00garbage", leg.server)  # malformed: dropped, counted
    finished = await playing
    assert finished.reason == "barged_in" and finished.digit == "4"
    result = await leg.call.collect_digits(10, terminator="#", inter_digit_timeout=2.0)
    assert (result.digits, result.reason) == ("42", "terminator")
    assert runner.engine.leg("c1").counters.drops.malformed > 0
    timed_out = await leg.call.collect_digits(4, first_timeout=0.1)
    assert (timed_out.digits, timed_out.reason) == ("", "no_input")
    digits = [e for e in runner.published if isinstance(e, DigitReceived)]  # type: ignore[attr-defined]
    assert "".join(e.digit for e in digits) == "42#"


async def test_listen_and_record(runner: MediaRunner, tmp_path: Path) -> None:
    leg = await open_leg(runner, "c1")
    path = tmp_path / "call.wav"
    await leg.call.record(path)
    rtp = RtpPeer()
    voice = encode_ulaw(tone(440))
    frames: list[np.ndarray] = []

    async def listen() -> None:
        async for frame in leg.call.listen():
            frames.append(frame)
            if len(frames) == 10:
                return

    listener = asyncio.create_task(listen())
    for _ in range(25):
        leg.peer.send(rtp.audio(voice), leg.server)
        await asyncio.sleep(0.02)
    await asyncio.wait_for(listener, 5)
    assert all(f.shape == (160,) for f in frames)
    assert max(int(np.abs(f).max()) for f in frames) > 4000  # the tone, not silence
    duration = leg.call.stop_recording()
    assert duration is not None and duration > 0.2
    await leg.call.wait_recordings()  # the file is finished off the event loop
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (2, 8000)
        samples = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, 2)
    assert np.abs(samples[:, 0]).max() > 4000 and np.abs(samples[:, 1]).max() == 0


async def test_hangup_ends_waits_and_closes_sockets(runner: MediaRunner) -> None:
    leg = await open_leg(runner, "c1")
    prompt = tuple(bytes(160) for _ in range(500))
    waiting = asyncio.create_task(leg.call.collect_digits(3, first_timeout=10))
    playing = asyncio.create_task(leg.call.play([prompt]))
    await asyncio.sleep(0.05)
    runner.close_leg("c1")
    with pytest.raises(CallEndedError):
        await waiting
    finished = await playing
    assert finished.reason == "stopped"
    assert leg.call.ended
    assert any(isinstance(e, MediaLegClosed) for e in runner.published)  # type: ignore[attr-defined]
    assert any(isinstance(e, PlaybackFinished) for e in runner.published)  # type: ignore[attr-defined]
    assert len(runner) == 0
