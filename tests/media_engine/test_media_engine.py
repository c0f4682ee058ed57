"""The engine with a fake clock: pacing without drift, playout, DTMF, bridging, hold, recording."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from telephony.media.engine import EngineSettings, MediaEngine, MediaStateError
from telephony.media.events import (
    DigitReceived,
    MediaLegClosed,
    MediaTimeout,
    PlaybackFinished,
    RecordingStarted,
    RecordingStopped,
)
from telephony.media.tap import AudioTap
from telephony.rtp.g711 import Law, decode_ulaw, encode_alaw, encode_ulaw, ulaw_to_alaw
from telephony.rtp.packet import parse
from telephony.rtp.rtcp import parse_compound
from tests.media_engine.media_helpers import (
    AGENT_ADDR,
    CALLER_ADDR,
    MemorySink,
    RtpPeer,
    open_caller,
    tone,
)

FRAME = 0.020


def frames(count: int, start: int = 0) -> tuple[bytes, ...]:
    """Distinct frames, so a test can tell which one went out."""
    return tuple(bytes([(start + i) % 256]) * 160 for i in range(count))


def digits(events: list[object]) -> str:
    return "".join(e.digit for e in events if isinstance(e, DigitReceived))


def test_one_tick_paces_every_playing_leg_without_drift() -> None:
    engine = MediaEngine(origin=100.0)
    for index in range(3):
        open_caller(engine, f"c{index}", now=100.0)
        engine.play(f"c{index}", (frames(20_000),))
    sent: list[tuple[float, bytes]] = []
    now = 100.0
    rng = random.Random(7)
    # Ten minutes of ticks, each firing 0-4 ms late, as an event loop does.
    while now < 100.0 + 400.0:
        deadline = engine.next_deadline
        assert deadline is not None
        now = deadline + rng.uniform(0, 0.004)
        sent.extend((now, data) for call, data, _ in engine.tick(now) if call == "c1")
    assert engine.skipped_ticks == 0
    packets = [parse(data) for _, data in sent]
    assert len(packets) == 20_000  # one frame per tick, every tick
    assert [p.payload[0] for p in packets[:3]] == [0, 1, 2]
    # Timestamps advance exactly 160 per frame: no drift however late each tick fired.
    first = packets[0].timestamp
    last = packets[-1]
    assert (last.timestamp - first) & 0xFFFFFFFF == 160 * (len(packets) - 1)
    assert all((b.sequence - a.sequence) & 0xFFFF == 1 for a, b in itertools.pairwise(packets))
    # and sending instants stay on the grid: the last packet left within 4 ms of its slot.
    assert sent[-1][0] - (100.0 + (len(packets) - 1 + 0) * FRAME) < 0.025


def test_stalled_loop_catches_up_a_few_ticks_and_skips_the_rest() -> None:
    engine = MediaEngine(origin=0.0)
    open_caller(engine)
    engine.play("c1", (frames(100),))
    engine.tick(0.0)
    out = engine.tick(0.2)  # 200 ms stall: 10 ticks due, 3 played at once, 7 skipped
    assert len(out) == 3
    assert engine.skipped_ticks == 7
    stamps = [parse(d).timestamp for _, d, _ in out]
    assert stamps[-1] - stamps[0] == 320
    assert stamps[0] - parse(engine.tick(0.22)[0][1]).timestamp == -480


def test_catch_up_frames_can_be_spread_10_ms_apart_on_the_grid_timestamps() -> None:
    engine = MediaEngine(origin=0.0, settings=EngineSettings(catch_up_spacing=0.010))
    open_caller(engine)
    engine.play("c1", (frames(100),))
    engine.tick(0.0)
    sent: list[tuple[float, int, int]] = []  # when, timestamp step, frame
    now = 0.2  # a 200 ms stall: ticks 1-7 skipped, 8-10 kept for catching up
    while now < 0.3:
        for _, data, _ in engine.tick(now):
            packet = parse(data)
            sent.append((round(now, 3), packet.timestamp, packet.payload[0]))
        deadline = engine.next_deadline
        assert deadline is not None
        now = deadline
    first = sent[0][1]
    assert [(when, (stamp - first) // 160, frame) for when, stamp, frame in sent] == [
        (0.2, 0, 1),  # tick 8, the oldest kept, 40 ms late: one frame only
        (0.21, 1, 2),
        (0.22, 2, 3),
        (0.23, 3, 4),  # tick 11: back on the grid
        (0.24, 4, 5),
        (0.26, 5, 6),
        (0.28, 6, 7),
    ]
    assert engine.skipped_ticks == 7


def test_playback_finishes_with_an_event_and_the_leg_falls_silent() -> None:
    engine = MediaEngine(origin=0.0)
    open_caller(engine)
    playback = engine.play("c1", (frames(2), frames(1, 50)))
    sent = [engine.tick(i * FRAME) for i in range(5)]
    assert [len(s) for s in sent] == [1, 1, 1, 0, 0]
    assert parse(sent[2][0][1]).payload[0] == 50
    finished = [e for e in engine.take_events() if isinstance(e, PlaybackFinished)]
    assert finished == [
        PlaybackFinished(
            call_id="c1", playback_id=playback, reason="completed", played_seconds=0.06
        )
    ]


def test_key_press_barges_in_and_is_reported_once() -> None:
    engine = MediaEngine(origin=0.0)
    open_caller(engine)
    engine.play("c1", (frames(500),), barge_in=True)
    peer = RtpPeer()
    now = 0.0
    for packet in peer.key_press("5"):
        now += FRAME
        engine.tick(now)
        engine.receive("c1", packet, CALLER_ADDR, now)
    events = engine.take_events()
    barge = [e for e in events if isinstance(e, PlaybackFinished)]
    assert barge[0].reason == "barged_in" and barge[0].digit == "5"
    assert digits(events) == "5"
    assert engine.tick(now + FRAME) == []


@pytest.mark.parametrize("seed", range(5))
def test_digits_survive_loss_duplicates_and_reordering(seed: int) -> None:
    rng = random.Random(seed)
    engine = MediaEngine(origin=0.0)
    open_caller(engine)
    peer = RtpPeer()
    pressed = "1234567890*#"
    stream: list[bytes] = []
    for key in pressed:
        stream.extend(peer.key_press(key))
        stream.extend(peer.audio() for _ in range(5))
    # Lose 10 % (but never every packet of a press), duplicate 10 %, swap neighbours 10 %.
    mangled: list[bytes] = []
    for packet in stream:
        if rng.random() < 0.10:
            continue
        mangled.append(packet)
        if rng.random() < 0.10:
            mangled.append(packet)
    for index in range(len(mangled) - 1):
        if rng.random() < 0.10:
            mangled[index], mangled[index + 1] = mangled[index + 1], mangled[index]
    now = 0.0
    events: list[object] = []
    for packet in mangled:
        now += FRAME
        engine.receive("c1", packet, CALLER_ADDR, now)
        engine.tick(now)
        events.extend(engine.take_events())
    engine.tick(now + 1.0)
    events.extend(engine.take_events())
    assert digits(events) == pressed


def test_bridge_relays_both_ways_and_transcodes_between_laws() -> None:
    engine = MediaEngine(origin=0.0)
    open_caller(engine, "caller", law=Law.ULAW)
    engine.open_leg(
        "agent", law=Law.ALAW, payload_type=8, event_payload_type=None, remote=AGENT_ADDR, now=0.0
    )
    engine.bridge("caller", "agent")
    caller, agent = RtpPeer(payload_type=0), RtpPeer(ssrc=77, payload_type=8)
    voice = encode_ulaw(tone(440))
    out = engine.receive("caller", caller.audio(voice), CALLER_ADDR, 0.01)
    assert out is not None
    leg, data, destination = out
    assert (leg, destination) == ("agent", AGENT_ADDR)
    relayed = parse(data)
    assert relayed.payload_type == 8
    assert relayed.payload == ulaw_to_alaw(voice)
    assert relayed.ssrc == engine.leg("agent").ssrc
    back = engine.receive("agent", agent.audio(encode_alaw(tone(300))), AGENT_ADDR, 0.02)
    assert back is not None and back[0] == "caller" and parse(back[1]).payload_type == 0
    # The caller's RFC 4733 digits are detected, and not sent to a peer that cannot take them.
    for packet in caller.key_press("7"):
        assert engine.receive("caller", packet, CALLER_ADDR, 0.03) is None
    assert digits(engine.take_events()) == "7"
    with pytest.raises(MediaStateError):
        engine.bridge("caller", "agent")
    engine.unbridge("agent")
    assert engine.receive("caller", caller.audio(voice), CALLER_ADDR, 0.04) is None


def test_prompt_to_a_bridged_leg_replaces_the_peer_audio_until_it_ends() -> None:
    engine = MediaEngine(origin=0.0)
    open_caller(engine, "a")
    engine.open_leg(
        "b", law=Law.ULAW, payload_type=0, event_payload_type=101, remote=AGENT_ADDR, now=0.0
    )
    engine.bridge("a", "b")
    engine.play("b", (frames(1),))  # a whisper to the agent
    peer = RtpPeer()
    assert engine.receive("a", peer.audio(), CALLER_ADDR, 0.001) is None
    assert len(engine.tick(0.0)) == 1
    engine.tick(0.02)  # the whisper ended
    resumed = engine.receive("a", peer.audio(), CALLER_ADDR, 0.03)
    assert resumed is not None and parse(resumed[1]).marker  # new talkspurt for the receiver


def test_hold_plays_music_and_stops_relay_both_ways_until_resume() -> None:
    engine = MediaEngine(origin=0.0)
    open_caller(engine, "a")
    engine.open_leg(
        "b", law=Law.ULAW, payload_type=0, event_payload_type=101, remote=AGENT_ADDR, now=0.0
    )
    engine.bridge("a", "b")
    engine.hold("a", (frames(3, 200),))
    caller, agent = RtpPeer(), RtpPeer(ssrc=5)
    assert engine.receive("a", caller.audio(), CALLER_ADDR, 0.0) is None
    assert engine.receive("b", agent.audio(), AGENT_ADDR, 0.0) is None
    music = [parse(d).payload[0] for i in range(7) for _, d, _ in engine.tick(i * FRAME)]
    assert music == [200, 201, 202, 200, 201, 202, 200]  # looped
    engine.resume("a")
    assert engine.tick(7 * FRAME) == []
    assert engine.receive("a", caller.audio(), CALLER_ADDR, 0.15) is not None
    with pytest.raises(MediaStateError):
        engine.resume("a")


def test_recording_has_both_directions_aligned_per_tick() -> None:
    engine = MediaEngine(origin=0.0)
    open_caller(engine, "a")
    engine.open_leg(
        "b", law=Law.ULAW, payload_type=0, event_payload_type=101, remote=AGENT_ADDR, now=0.0
    )
    engine.bridge("a", "b")
    sink = MemorySink()
    engine.start_recording("a", "rec-1", sink)
    caller, agent = RtpPeer(), RtpPeer(ssrc=9)
    low, high = encode_ulaw(tone(300)), encode_ulaw(tone(1000))
    now = 0.0
    for _ in range(50):
        now += FRAME
        engine.receive("a", caller.audio(low), CALLER_ADDR, now - 0.005)
        engine.receive("b", agent.audio(high), AGENT_ADDR, now - 0.004)
        engine.tick(now)
    assert engine.stop_recording("a") == pytest.approx(len(sink.received) * FRAME)
    assert sink.closed
    events = engine.take_events()
    assert any(isinstance(e, RecordingStarted) for e in events)
    assert any(isinstance(e, RecordingStopped) and e.recording_id == "rec-1" for e in events)
    heard = [f for f in sink.received if f is not None]
    said = [f for f in sink.sent if f is not None]
    assert len(heard) >= 40 and len(said) >= 40
    assert np.array_equal(heard[10], decode_ulaw(low))
    assert np.array_equal(said[10], decode_ulaw(high))
    assert "b" not in engine._decoding  # nothing decodes once the recording stopped


def test_in_band_keys_are_not_listened_for_while_bridged_and_are_again_after() -> None:
    engine = MediaEngine(origin=0.0)
    open_caller(engine)
    open_caller(engine, "agent")
    engine.enable_inband_dtmf("c1")
    caller = RtpPeer()
    key = tone(697, 15, 6000) + tone(1209, 15, 6000)  # "1", 300 ms
    pressed = [encode_ulaw(key[i * 160 : (i + 1) * 160]) for i in range(15)]
    silence = [encode_ulaw(np.zeros(160, np.int16))] * 10
    now = 0.0

    def play(payloads: list[bytes]) -> list[bytes]:
        nonlocal now
        relayed = []
        for payload in payloads:
            now += FRAME
            out = engine.receive("c1", caller.audio(payload), CALLER_ADDR, now)
            if out is not None:
                relayed.append(out[1])
            engine.tick(now)
        return relayed

    play(pressed[:10])  # bridged while the key is still held down, once it was heard
    assert digits(engine.take_events()) == "1"
    engine.bridge("c1", "agent")
    # The agent hears the tones in the relayed audio; the server takes no key from them.
    relayed = play(silence + pressed + silence)
    assert [parse(p).payload for p in relayed] == silence + pressed + silence
    assert digits(engine.take_events()) == ""
    # Back from the bridge, the same key again is a new key press.
    engine.unbridge("c1")
    play(pressed + silence)
    assert digits(engine.take_events()) == "1"


def test_audio_tap_hands_over_decoded_frames_and_in_band_digits_are_heard() -> None:
    engine = MediaEngine(origin=0.0)
    open_caller(engine)
    tap = AudioTap(capacity=5)
    woken: list[int] = []
    tap.wakeup = lambda: woken.append(1)
    engine.add_tap("c1", tap)
    engine.enable_inband_dtmf("c1")
    peer = RtpPeer()
    # Key "1" as tones (697 + 1209 Hz) for 100 ms, then silence.
    key = tone(697, 5, 6000) + tone(1209, 5, 6000)
    payloads = [encode_ulaw(key[i * 160 : (i + 1) * 160]) for i in range(5)]
    payloads += [encode_ulaw(np.zeros(160, np.int16))] * 10
    now = 0.0
    for payload in payloads:
        now += FRAME
        engine.receive("c1", peer.audio(payload), CALLER_ADDR, now)
        engine.tick(now)
    engine.tick(now + 0.2)
    assert len(tap) == 5 and tap.overflow > 0 and woken
    frame = tap.pop()
    assert frame is not None and frame.dtype == np.int16 and frame.shape == (160,)
    events = engine.take_events()
    assert [(e.digit, e.source) for e in events if isinstance(e, DigitReceived)] == [
        ("1", "inband")
    ]
    engine.remove_tap("c1", tap)
    assert tap.closed


def test_rtcp_reports_timeout_and_close_figures() -> None:
    engine = MediaEngine(origin=0.0, rng=random.Random(1))
    open_caller(engine)
    peer = RtpPeer()
    now = 0.0
    for _ in range(500):  # 10 s: at least one report (RFC 3550 §6.2, 5 s ±50 %)
        now += FRAME
        engine.receive("c1", peer.audio(), CALLER_ADDR, now)
        engine.tick(now)
    reports = engine.take_rtcp()
    assert reports and reports[0][2] == (CALLER_ADDR[0], CALLER_ADDR[1] + 1)
    assert parse_compound(reports[0][1]).packets[0].reports[0].ssrc == peer.ssrc  # type: ignore[union-attr]
    # Then the caller goes silent: a media timeout is reported once.
    while now < 140.0:
        now += 1.0
        engine.tick(now)
    events = engine.take_events()
    assert len([e for e in events if isinstance(e, MediaTimeout)]) == 1
    engine.close_leg("c1", now)
    closed = [e for e in engine.take_events() if isinstance(e, MediaLegClosed)]
    assert closed[0].packets_received == 500 and closed[0].packets_lost == 0
    assert engine.next_deadline is None
