"""Peers that send 10, 30 or 40 ms packets (their a=ptime, RFC 4566 §6): decoded by sample count."""

from __future__ import annotations

import numpy as np
import pytest

from telephony.media.engine import MediaEngine
from telephony.media.tap import AudioTap
from telephony.rtp.g711 import Law, decode_ulaw, encode_ulaw
from telephony.rtp.packet import build_header, parse
from tests.media_engine.media_helpers import AGENT_ADDR, CALLER_ADDR, MemorySink, open_caller

FRAME = 0.020


def sweep(samples: int) -> np.ndarray:
    """A rising tone, different in every frame, so a misplaced or doubled frame shows."""
    t = np.arange(samples) / 8000
    return (6000 * np.sin(2 * np.pi * (200 + 400 * t) * t)).astype(np.int16)


@pytest.mark.parametrize("ptime_ms", [10, 30, 40])
def test_tap_hears_the_audio_sent_in_packets_of_any_duration(ptime_ms: int) -> None:
    engine = MediaEngine(origin=0.0)
    open_caller(engine)
    tap = AudioTap(capacity=200)
    engine.add_tap("c1", tap)
    audio = encode_ulaw(sweep(8000))  # one second
    size = ptime_ms * 8
    now, sent, sequence = 0.0, 0, 500
    while now < 1.5:
        now = round(now + 0.005, 6)
        # The phone sends each packet when its audio has been captured.
        while sent < len(audio) and (sent + size) / 8000 <= now:
            header = build_header(0, sent == 0, sequence, 4000 + sent, 0xABC)
            engine.receive("c1", header + audio[sent : sent + size], CALLER_ADDR, now)
            sent += size
            sequence += 1
        engine.tick(now)
    heard = []
    while (frame := tap.pop()) is not None:
        heard.append(frame)
    assert all(frame.shape == (160,) for frame in heard)
    pcm = np.concatenate(heard)
    expected = decode_ulaw(audio)
    # The tap starts with the jitter buffer's silence, then carries the whole second in order.
    start = int(np.flatnonzero(pcm)[0]) // 160 * 160
    assert np.array_equal(pcm[start : start + len(expected)], expected)
    assert engine.leg("c1").counters.drops.duplicate == 0


def test_a_bridged_recording_holds_both_sides_whatever_their_ptime() -> None:
    engine = MediaEngine(origin=0.0)
    open_caller(engine, "a")
    engine.open_leg(
        "b", law=Law.ULAW, payload_type=0, event_payload_type=101, remote=AGENT_ADDR, now=0.0
    )
    engine.bridge("a", "b")
    sink = MemorySink()
    engine.start_recording("a", "rec", sink)
    caller, agent = encode_ulaw(sweep(4800)), encode_ulaw(sweep(4800)[::-1].copy())
    now = 0.0
    for step in range(1, 80):  # 10 ms steps: caller sends 10 ms packets, agent 30 ms ones
        now = step * 0.010
        if step <= 60:
            engine.receive(
                "a",
                build_header(0, False, step, (step - 1) * 80, 1) + caller[(step - 1) * 80 :][:80],
                CALLER_ADDR,
                now,
            )
        if step % 3 == 0 and step <= 60:
            offset = (step // 3 - 1) * 240
            engine.receive(
                "b",
                build_header(0, False, step, 9000 + offset, 2) + agent[offset : offset + 240],
                AGENT_ADDR,
                now,
            )
        if step % 2 == 0:
            engine.tick(now)
    engine.stop_recording("a")
    heard = np.concatenate([f for f in sink.received if f is not None])
    said = np.concatenate([f for f in sink.sent if f is not None])
    for recorded, original in ((heard, decode_ulaw(caller)), (said, decode_ulaw(agent))):
        start = int(np.flatnonzero(recorded)[0]) // 160 * 160
        assert np.array_equal(recorded[start : start + len(original)], original)


def prompt_packets(ptime: int | None, frames: int = 5) -> list[tuple[int, int, bytes]]:
    """(tick, timestamp step from the first packet, payload) of a prompt played to a leg whose
    peer asked for `ptime`."""
    engine = MediaEngine(origin=0.0)
    engine.open_leg(
        "c1",
        law=Law.ULAW,
        payload_type=0,
        event_payload_type=101,
        remote=CALLER_ADDR,
        now=0.0,
        ptime=ptime,
    )
    engine.play("c1", (tuple(bytes([index]) * 160 for index in range(frames)),))
    sent = []
    for tick in range(frames + 2):
        for _, data, _ in engine.tick(tick * FRAME):
            packet = parse(data)
            sent.append((tick, packet.timestamp, packet.payload))
    first = sent[0][1]
    return [(tick, (stamp - first) // 160, payload) for tick, stamp, payload in sent]


def test_a_prompt_goes_out_in_packets_of_the_ptime_the_peer_asked_for() -> None:
    frame = [bytes([index]) * 160 for index in range(5)]
    assert prompt_packets(40) == [
        (1, 0, frame[0] + frame[1]),  # two frames, stamped with the first one's slot
        (3, 2, frame[2] + frame[3]),
        (5, 4, frame[4]),  # the prompt's end: what is left, at once
    ]
    assert prompt_packets(60, 6) == [
        (2, 0, frame[0] + frame[1] + frame[2]),
        (5, 3, frame[3] + frame[4] + bytes([5]) * 160),
    ]


@pytest.mark.parametrize("ptime", [None, 10, 20, 30])
def test_other_ptimes_get_20ms_packets(ptime: int | None) -> None:
    assert [(tick, step) for tick, step, _ in prompt_packets(ptime)] == [
        (index, index) for index in range(5)
    ]
