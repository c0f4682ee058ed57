"""Supervisor monitoring in the media engine, with a fake clock: who hears whom in each mode,
exact mixed samples with saturation, parties that send nothing, holds, mode changes, the end."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pytest

from telephony.media.engine import MediaEngine, MediaStateError
from telephony.media.mix import MixPlan, MonitorMode, Party, mix_pcm, plan
from telephony.media.tap import Pcm
from telephony.rtp.g711 import (
    Law,
    codec_for,
    decode_alaw,
    decode_ulaw,
    encode_alaw,
    encode_ulaw,
)
from telephony.rtp.packet import RtpPacket, parse
from tests.media_engine.media_helpers import AGENT_ADDR, CALLER_ADDR, MemorySink, RtpPeer

FRAME = 0.020
SUPERVISOR_ADDR = ("192.0.2.30", 44000)
C, A, S = Party.CALLER, Party.AGENT, Party.SUPERVISOR


def frame(value: int) -> Pcm:
    return np.full(160, value, dtype=np.int16)


# --- the pure parts -----------------------------------------------------------------------------


def test_mix_sums_samples_exactly_and_saturates_instead_of_wrapping() -> None:
    a = np.array([1000, -2000, 30000, -30000, 0], dtype=np.int16)
    b = np.array([500, 300, 10000, -10000, -1], dtype=np.int16)
    mixed = mix_pcm([a, b])
    assert mixed is not None and mixed.dtype == np.int16
    assert mixed.tolist() == [1500, -1700, 32767, -32768, -1]
    # Three voices at full scale still clip, never wrap round.
    full = np.full(4, 32767, dtype=np.int16)
    loud = mix_pcm([full, full, full])
    assert loud is not None and loud.tolist() == [32767] * 4


def test_mix_leaves_out_missing_frames_and_has_nothing_when_nobody_spoke() -> None:
    a = frame(1234)
    assert mix_pcm([None, None]) is None
    alone = mix_pcm([a, None])
    assert alone is not None and np.array_equal(alone, a)
    # A peer with a shorter packet adds to the start of the frame.
    short = mix_pcm([frame(10), np.full(80, 5, dtype=np.int16)])
    assert short is not None and short.tolist() == [15] * 80 + [10] * 80


def routes(mix_plan: MixPlan) -> dict[Party, tuple[Party, ...]]:
    """Listener -> the parties it hears, however the plan feeds it."""
    heard: dict[Party, tuple[Party, ...]] = {}
    for speaker, listener in mix_plan.relays:
        heard[listener] = (speaker,)
    for listener, speakers in mix_plan.mixes:
        heard[listener] = speakers
    return heard


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (MonitorMode.LISTEN, {C: (A,), A: (C,), S: (C, A)}),
        (MonitorMode.WHISPER, {C: (A,), A: (C, S), S: (C, A)}),
        (MonitorMode.BARGE, {C: (A, S), A: (C, S), S: (C, A)}),
    ],
)
def test_each_mode_routes_every_party_as_specified(
    mode: MonitorMode, expected: dict[Party, tuple[Party, ...]]
) -> None:
    assert routes(plan(mode)) == expected


def test_single_voices_are_relayed_and_only_mixed_voices_decoded() -> None:
    listen = plan(MonitorMode.LISTEN)
    # Caller and agent keep their cut-through relay; the supervisor alone gets a mix.
    assert sorted(listen.relays, key=str) == sorted([(C, A), (A, C)], key=str)
    assert listen.mixes == ((S, (C, A)),)
    assert listen.decoded == {C, A}
    whisper = plan(MonitorMode.WHISPER)
    assert whisper.relays == ((A, C),)
    assert whisper.decoded == {C, A, S}
    assert plan(MonitorMode.BARGE).relays == ()


def test_a_held_party_hears_nobody_and_nobody_hears_it() -> None:
    assert routes(plan(MonitorMode.BARGE, frozenset({C}))) == {A: (S,), S: (A,)}
    assert routes(plan(MonitorMode.LISTEN, frozenset({C}))) == {S: (A,)}
    assert routes(plan(MonitorMode.WHISPER, frozenset({A}))) == {S: (C,)}


# --- the engine ---------------------------------------------------------------------------------


@dataclass
class Call:
    """Three legs on one engine: caller (µ-law) bridged to agent (A-law), a supervisor
    (µ-law); each party sends a constant frame of its own."""

    engine: MediaEngine = field(default_factory=lambda: MediaEngine(origin=0.0))
    now: float = 0.0
    peers: dict[str, RtpPeer] = field(default_factory=dict)
    #: Every packet each leg sent, relayed at once or at a tick.
    heard: dict[str, list[RtpPacket]] = field(default_factory=lambda: defaultdict(list))
    #: Packets that each leg sent at once, relayed when a packet arrived.
    relayed: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def __post_init__(self) -> None:
        legs = (
            ("caller", Law.ULAW, CALLER_ADDR),
            ("agent", Law.ALAW, AGENT_ADDR),
            ("supervisor", Law.ULAW, SUPERVISOR_ADDR),
        )
        for index, (name, law, address) in enumerate(legs):
            self.engine.open_leg(
                name,
                law=law,
                payload_type=law.payload_type,
                event_payload_type=101,
                remote=address,
                now=0.0,
            )
            self.peers[name] = RtpPeer(ssrc=100 + index, payload_type=law.payload_type)
        self.engine.bridge("caller", "agent")

    def run(self, ticks: int, speaking: dict[str, int]) -> None:
        """`ticks` ticks; before each, every party in `speaking` sends its value as a frame."""
        addresses = {"caller": CALLER_ADDR, "agent": AGENT_ADDR, "supervisor": SUPERVISOR_ADDR}
        for _ in range(ticks):
            self.now += FRAME
            for name, value in speaking.items():
                law = self.engine.leg(name).law
                payload = codec_for(law).encode(frame(value))
                data = self.peers[name].audio(payload)
                out = self.engine.receive(name, data, addresses[name], self.now - 0.005)
                if out is not None:
                    self.heard[out[0]].append(parse(out[1]))
                    self.relayed[out[0]] += 1
            for leg, data, _ in self.engine.tick(self.now):
                self.heard[leg].append(parse(data))

    def clear(self) -> None:
        self.heard.clear()
        self.relayed.clear()

    def last_values(self, leg: str, count: int = 5) -> list[int]:
        """The sample values of the last frames `leg` was sent, decoded in its law."""
        codec = codec_for(self.engine.leg(leg).law)
        values = []
        for packet in self.heard[leg][-count:]:
            samples = codec.decode(packet.payload)
            assert len(set(samples.tolist())) == 1, "a constant frame stays constant"
            values.append(int(samples[0]))
        return values


def through(law: Law, value: int) -> int:
    """`value` as it comes out of a trip through `law`."""
    codec = codec_for(law)
    return int(codec.decode(codec.encode(frame(value)))[0])


def mixed(law: Law, *parts: tuple[Law, int]) -> int:
    """The value a listener in `law` gets from the parties (their law, their value)."""
    total = sum(through(part_law, value) for part_law, value in parts)
    return through(law, max(-32768, min(32767, total)))


VOICES = {"caller": 1000, "agent": 3000, "supervisor": -700}
CALLER = (Law.ULAW, VOICES["caller"])
AGENT = (Law.ALAW, VOICES["agent"])
SUPERVISOR = (Law.ULAW, VOICES["supervisor"])


def test_listen_the_supervisor_hears_both_and_nobody_hears_the_supervisor() -> None:
    call = Call()
    call.engine.monitor("supervisor", "agent", MonitorMode.LISTEN)
    call.run(20, VOICES)
    assert call.last_values("supervisor") == [mixed(Law.ULAW, CALLER, AGENT)] * 5
    # Caller and agent still hear each other by relay, packet for packet, and nothing else.
    assert call.relayed["caller"] == call.relayed["agent"] == 20
    assert len(call.heard["caller"]) == len(call.heard["agent"]) == 20
    assert call.last_values("caller") == [through(Law.ULAW, through(Law.ALAW, 3000))] * 5
    assert call.last_values("agent") == [through(Law.ALAW, through(Law.ULAW, 1000))] * 5
    assert call.relayed["supervisor"] == 0


def test_whisper_reaches_the_agent_and_never_the_caller() -> None:
    call = Call()
    call.engine.monitor("supervisor", "agent", MonitorMode.WHISPER)
    call.run(20, VOICES)
    assert call.last_values("agent") == [mixed(Law.ALAW, CALLER, SUPERVISOR)] * 5
    assert call.last_values("supervisor") == [mixed(Law.ULAW, CALLER, AGENT)] * 5
    # The caller hears the agent alone, relayed as before.
    assert call.relayed["caller"] == len(call.heard["caller"]) == 20
    assert set(call.last_values("caller", 20)) == {through(Law.ULAW, through(Law.ALAW, 3000))}


def test_barge_everyone_hears_the_other_two() -> None:
    call = Call()
    call.engine.monitor("supervisor", "agent", MonitorMode.BARGE)
    call.run(20, VOICES)
    assert call.last_values("caller") == [mixed(Law.ULAW, AGENT, SUPERVISOR)] * 5
    assert call.last_values("agent") == [mixed(Law.ALAW, CALLER, SUPERVISOR)] * 5
    assert call.last_values("supervisor") == [mixed(Law.ULAW, CALLER, AGENT)] * 5
    assert sum(call.relayed.values()) == 0  # every path is mixed


def test_loud_parties_are_clipped_in_the_mix() -> None:
    call = Call()
    call.engine.monitor("supervisor", "agent", MonitorMode.LISTEN)
    call.run(20, {"caller": 30000, "agent": 30000})
    assert call.last_values("supervisor") == [through(Law.ULAW, 32767)] * 5


def test_a_party_that_sends_nothing_is_left_out_and_the_others_go_on() -> None:
    call = Call()
    call.engine.monitor("supervisor", "agent", MonitorMode.BARGE)
    # The supervisor has not said a word yet: the agent hears the caller alone, every tick.
    call.run(20, {"caller": 1000, "agent": 3000})
    assert call.last_values("agent", 15) == [through(Law.ALAW, through(Law.ULAW, 1000))] * 15
    # The caller stalls (packets stop) while the supervisor talks: the agent still gets a frame
    # every tick, with the caller's last frame repeated once, then silence for the caller.
    call.run(10, {"caller": 1000, "agent": 3000, "supervisor": -700})
    call.clear()
    call.run(10, {"agent": 3000, "supervisor": -700})
    assert len(call.heard["agent"]) == 10
    assert call.last_values("agent", 3) == [through(Law.ALAW, through(Law.ULAW, -700))] * 3
    # Nobody speaks: the stream goes on, in silence (A-law's quietest code is ±8, not 0).
    call.clear()
    call.run(10, {})
    assert len(call.heard["supervisor"]) == 10
    assert all(abs(v) <= 16 for v in call.last_values("supervisor", 3))


def test_mode_changes_and_the_end_of_monitoring_restore_the_plain_bridge() -> None:
    call = Call()
    engine = call.engine
    engine.monitor("supervisor", "agent", MonitorMode.LISTEN)
    call.run(10, VOICES)
    engine.set_monitor_mode("supervisor", MonitorMode.WHISPER)
    assert engine.monitor_mode("caller") is MonitorMode.WHISPER
    call.clear()
    call.run(10, VOICES)
    assert call.last_values("agent", 3) == [mixed(Law.ALAW, CALLER, SUPERVISOR)] * 3
    engine.set_monitor_mode("agent", MonitorMode.BARGE)
    call.clear()
    call.run(10, VOICES)
    assert call.last_values("caller", 3) == [mixed(Law.ULAW, AGENT, SUPERVISOR)] * 3
    engine.end_monitor("supervisor")
    assert engine.monitor_mode("caller") is None
    call.clear()
    call.run(10, VOICES)
    assert call.relayed["caller"] == call.relayed["agent"] == 10
    assert "supervisor" not in call.heard
    assert not engine._decoding  # nothing decoded once the monitor left
    # and the first packet after the change starts a talkspurt, for the phone to re-anchor.
    assert call.heard["caller"][0].marker


def test_supervisor_hanging_up_or_the_caller_leaving_ends_the_mix() -> None:
    call = Call()
    engine = call.engine
    engine.monitor("supervisor", "agent", MonitorMode.BARGE)
    engine.close_leg("supervisor", 1.0)
    assert engine.monitor_mode("agent") is None
    call.run(3, {"caller": 1000, "agent": 3000})
    assert call.relayed["caller"] == call.relayed["agent"] == 3

    again = Call()
    again.engine.monitor("supervisor", "agent", MonitorMode.WHISPER)
    again.engine.close_leg("caller", 1.0)
    assert again.engine.monitor_mode("supervisor") is None
    assert again.engine.bridged_to("agent") is None
    again.run(3, {"agent": 3000, "supervisor": -700})
    assert sum(len(p) for p in again.heard.values()) == 0  # nobody left to hear anyone


def test_monitoring_needs_a_bridge_and_one_supervisor() -> None:
    call = Call()
    engine = call.engine
    with pytest.raises(MediaStateError):
        engine.monitor("agent", "caller", MonitorMode.LISTEN)  # already bridged
    engine.unbridge("caller")
    with pytest.raises(MediaStateError):
        engine.monitor("supervisor", "agent", MonitorMode.LISTEN)  # nothing to monitor
    engine.bridge("caller", "agent")
    engine.monitor("supervisor", "agent", MonitorMode.LISTEN)
    with pytest.raises(MediaStateError):
        engine.monitor("supervisor", "caller", MonitorMode.BARGE)
    with pytest.raises(MediaStateError):
        engine.bridge("supervisor", "caller")
    engine.end_monitor("caller")
    with pytest.raises(MediaStateError):
        engine.set_monitor_mode("agent", MonitorMode.BARGE)  # not monitored any more


def test_caller_on_hold_hears_music_while_agent_and_supervisor_talk() -> None:
    call = Call()
    engine = call.engine
    engine.monitor("supervisor", "agent", MonitorMode.BARGE)
    engine.hold("caller", ((bytes([0x42]) * 160,),))
    call.run(10, VOICES)
    assert {p.payload for p in call.heard["caller"]} == {bytes([0x42]) * 160}
    # Agent and supervisor hear each other alone, by relay.
    assert call.relayed["agent"] == call.relayed["supervisor"] == 10
    assert set(call.last_values("agent", 10)) == {through(Law.ALAW, through(Law.ULAW, -700))}
    engine.resume("caller")
    call.clear()
    call.run(10, VOICES)
    assert call.last_values("caller", 3) == [mixed(Law.ULAW, AGENT, SUPERVISOR)] * 3


def test_a_recording_of_the_caller_holds_what_the_mix_sent() -> None:
    call = Call()
    engine = call.engine
    sink = MemorySink()
    engine.start_recording("caller", "rec-1", sink)
    engine.monitor("supervisor", "agent", MonitorMode.BARGE)
    call.run(20, VOICES)
    heard_by_caller = through(Law.ALAW, 3000) + through(Law.ULAW, -700)
    assert [int(f[0]) for f in sink.sent[-5:] if f is not None] == [heard_by_caller] * 5
    assert [int(f[0]) for f in sink.received[-5:] if f is not None] == [through(Law.ULAW, 1000)] * 5
    # and the caller's phone got that very sum, encoded in its law.
    assert call.last_values("caller") == [through(Law.ULAW, heard_by_caller)] * 5


def test_two_tones_mixed_are_their_sum_after_one_g711_trip() -> None:
    call = Call()
    engine = call.engine
    engine.monitor("supervisor", "agent", MonitorMode.LISTEN)
    t = np.arange(160) / 8000
    low = (6000 * np.sin(2 * np.pi * 400 * t)).astype(np.int16)
    high = (6000 * np.sin(2 * np.pi * 1200 * t)).astype(np.int16)
    addresses = {"caller": CALLER_ADDR, "agent": AGENT_ADDR}
    payloads = {"caller": encode_ulaw(low), "agent": encode_alaw(high)}
    for _ in range(10):
        call.now += FRAME
        for name in ("caller", "agent"):
            data = call.peers[name].audio(payloads[name])
            engine.receive(name, data, addresses[name], call.now - 0.005)
        for leg, data, _ in engine.tick(call.now):
            call.heard[leg].append(parse(data))
    total = decode_ulaw(payloads["caller"]).astype(np.int32) + decode_alaw(payloads["agent"])
    assert call.heard["supervisor"][-1].payload == encode_ulaw(total)
