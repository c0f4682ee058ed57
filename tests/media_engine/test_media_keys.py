"""Key presses across bridges and monitored calls, with a fake clock: RFC 4733 events reach every
leg that hears the caller, exactly once, and a leg without telephone-events hears them as tones
that an in-band detector reads back as the same keys."""

from __future__ import annotations

import numpy as np
import pytest

from telephony.media.engine import MediaEngine
from telephony.media.events import DigitReceived
from telephony.media.mix import MonitorMode
from telephony.rtp.dtmf import TelephoneEvent
from telephony.rtp.g711 import Law, codec_for
from telephony.rtp.inband import InbandDtmfDetector
from telephony.rtp.packet import RtpPacket, parse
from telephony.rtp.tones import MIN_TONE_MS, PAUSE_MS, dtmf_tone_frames
from tests.media_engine.media_helpers import AGENT_ADDR, CALLER_ADDR, RtpPeer

FRAME = 0.020
SUPERVISOR_ADDR = ("192.0.2.30", 44000)
ADDRESSES = {"caller": CALLER_ADDR, "agent": AGENT_ADDR, "supervisor": SUPERVISOR_ADDR}


class Bridge:
    """Caller (µ-law, events on 101) bridged to an agent (A-law; events on 96, or none), and a
    supervisor leg (µ-law, events on 101) that may monitor them."""

    def __init__(self, *, agent_events: int | None = 96) -> None:
        self.engine = MediaEngine(origin=0.0)
        self.now = 0.0
        self.sent: dict[str, list[RtpPacket]] = {name: [] for name in ADDRESSES}
        self.peer = RtpPeer(ssrc=0xCA11)
        for name, law, events in (
            ("caller", Law.ULAW, 101),
            ("agent", Law.ALAW, agent_events),
            ("supervisor", Law.ULAW, 101),
        ):
            self.engine.open_leg(
                name,
                law=law,
                payload_type=law.payload_type,
                event_payload_type=events,
                remote=ADDRESSES[name],
                now=0.0,
            )
        self.engine.bridge("caller", "agent")

    def press(self, digit: str, duration_ms: int = 100) -> None:
        """The caller presses `digit`: one event packet per tick, then silence for a while."""
        for data in self.peer.key_press(digit, duration_ms=duration_ms):
            self.now += FRAME
            self._keep(self.engine.receive("caller", data, CALLER_ADDR, self.now))
            self._keep_all(self.engine.keys.take_sends())
            self._keep_all(self.engine.tick(self.now))
        self.idle(25)

    def idle(self, ticks: int) -> None:
        for _ in range(ticks):
            self.now += FRAME
            self._keep_all(self.engine.tick(self.now))

    def _keep(self, transmit: tuple[str, bytes, object] | None) -> None:
        if transmit is not None:
            self.sent[transmit[0]].append(parse(transmit[1]))

    def _keep_all(self, transmits: list[tuple[str, bytes, tuple[object, ...]]]) -> None:
        for transmit in transmits:
            self._keep(transmit)

    def events(self, leg: str, payload_type: int) -> list[TelephoneEvent]:
        return [
            TelephoneEvent.parse(p.payload)
            for p in self.sent[leg]
            if p.payload_type == payload_type
        ]

    def heard_keys(self, leg: str) -> str:
        """The keys an in-band detector finds in the audio `leg` was sent."""
        codec = codec_for(self.engine.leg(leg).law)
        audio = [p.payload for p in self.sent[leg] if p.payload_type == codec.law.payload_type]
        detector = InbandDtmfDetector()
        keys = detector.process(codec.decode(b"".join(audio))) if audio else ()
        return "".join(key.digit for key in keys)

    def digits(self) -> list[str]:
        return [e.digit for e in self.engine.take_events() if isinstance(e, DigitReceived)]


def pressed(events: list[TelephoneEvent]) -> str:
    """The keys a receiver would take from these event packets (one per distinct press)."""
    keys = ""
    previous_end = True
    for event in events:
        if previous_end and not event.end:
            keys += event.digit or "?"
        previous_end = event.end
    return keys


def test_a_key_crosses_a_plain_bridge_as_events_on_the_agents_payload_type() -> None:
    bridge = Bridge()
    bridge.press("5")
    assert bridge.digits() == ["5"]
    events = bridge.events("agent", 96)
    assert pressed(events) == "5" and events[-1].end
    assert bridge.heard_keys("agent") == ""  # no tones on top of the events


@pytest.mark.parametrize("mode", list(MonitorMode))
def test_keys_reach_the_agent_and_supervisor_in_every_monitor_mode(mode: MonitorMode) -> None:
    bridge = Bridge()
    bridge.engine.monitor("supervisor", "agent", mode)
    bridge.press("7")
    bridge.press("#")
    # Detected once each on the caller's leg, and passed on to both listeners of the caller.
    assert bridge.digits() == ["7", "#"]
    assert pressed(bridge.events("agent", 96)) == "7#"
    assert pressed(bridge.events("supervisor", 101)) == "7#"
    assert bridge.events("caller", 101) == []  # nobody pressed a key towards the caller


def test_keys_follow_the_mix_after_a_mode_change_and_after_the_monitor_ends() -> None:
    bridge = Bridge()
    bridge.engine.monitor("supervisor", "agent", MonitorMode.LISTEN)
    bridge.press("1")
    bridge.engine.set_monitor_mode("supervisor", MonitorMode.BARGE)
    bridge.press("2")
    bridge.engine.end_monitor("supervisor")
    bridge.press("3")
    assert pressed(bridge.events("agent", 96)) == "123"
    assert pressed(bridge.events("supervisor", 101)) == "12"


def test_an_agent_without_telephone_events_hears_the_keys_as_tones() -> None:
    bridge = Bridge(agent_events=None)
    for key in "19*":
        bridge.press(key, duration_ms=120)
    assert bridge.digits() == ["1", "9", "*"]
    assert bridge.heard_keys("agent") == "19*"
    # The tones lasted as long as the keys were held: 120 ms each, then the pause.
    frames = [p for p in bridge.sent["agent"] if p.payload_type == Law.ALAW.payload_type]
    assert len(frames) == 3 * (120 + PAUSE_MS) // 20


def test_an_agent_without_telephone_events_hears_tones_in_a_monitored_call_too() -> None:
    bridge = Bridge(agent_events=None)
    bridge.engine.monitor("supervisor", "agent", MonitorMode.BARGE)
    bridge.press("4")
    bridge.press("4")
    assert bridge.heard_keys("agent") == "44"
    assert pressed(bridge.events("supervisor", 101)) == "44"


@pytest.mark.parametrize("law", list(Law))
def test_every_key_as_tones_is_read_back_once_by_the_detector(law: Law) -> None:
    codec = codec_for(law)
    audio = b"".join(
        frame for key in "0123456789*#ABCD" for frame in dtmf_tone_frames(key, 60, law)
    )
    keys = InbandDtmfDetector().process(codec.decode(audio))
    assert "".join(key.digit for key in keys) == "0123456789*#ABCD"


def test_tone_length_follows_the_event_within_receiver_limits() -> None:
    assert len(dtmf_tone_frames("5", 200, Law.ULAW)) == (200 + PAUSE_MS) // 20
    # A 10 ms event still makes a tone long enough to be taken as a key.
    assert len(dtmf_tone_frames("5", 10, Law.ULAW)) == (MIN_TONE_MS + PAUSE_MS) // 20
    assert dtmf_tone_frames("!", 100, Law.ULAW) == ()  # hook flash has no tone
    samples = codec_for(Law.ULAW).decode(b"".join(dtmf_tone_frames("5", 100, Law.ULAW)))
    assert np.abs(samples[-PAUSE_MS * 8 :]).max() == 0  # the pause is silent
