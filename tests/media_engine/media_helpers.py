"""Helpers for media engine tests: a peer that builds RTP packets, a fake clock, captured sinks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from telephony.media.engine import MediaEngine
from telephony.media.leg import MediaLeg
from telephony.media.tap import Pcm
from telephony.rtp.dtmf import telephone_event_packets
from telephony.rtp.g711 import Law
from telephony.rtp.packet import build_header

CALLER_ADDR = ("192.0.2.10", 40000)
AGENT_ADDR = ("192.0.2.20", 42000)


@dataclass
class RtpPeer:
    """The far end of a leg: numbers its packets like a phone would."""

    ssrc: int = 0x1234
    sequence: int = 1000
    timestamp: int = 80_000
    payload_type: int = 0

    def audio(self, payload: bytes = bytes(160), *, marker: bool = False) -> bytes:
        data = build_header(self.payload_type, marker, self.sequence, self.timestamp, self.ssrc)
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + 160) & 0xFFFFFFFF
        return data + payload

    def key_press(self, digit: str, event_pt: int = 101, duration_ms: int = 100) -> list[bytes]:
        """The RFC 4733 packets of one key press, in send order."""
        start = self.timestamp
        packets = []
        for event in telephone_event_packets(digit, duration_ms=duration_ms):
            header = build_header(
                event_pt,
                event.marker,
                self.sequence,
                (start + event.timestamp_offset) & 0xFFFFFFFF,
                self.ssrc,
            )
            self.sequence = (self.sequence + 1) & 0xFFFF
            packets.append(header + event.payload)
        self.timestamp = (start + duration_ms * 8 + 800) & 0xFFFFFFFF
        return packets


@dataclass
class MemorySink:
    """A recording sink that keeps the frames."""

    received: list[Pcm | None] = field(default_factory=list)
    sent: list[Pcm | None] = field(default_factory=list)
    closed: bool = False

    @property
    def duration_seconds(self) -> float:
        return len(self.received) * 0.020

    def write(self, caller: Pcm | None, agent: Pcm | None) -> None:
        self.received.append(caller)
        self.sent.append(agent)

    def close(self) -> None:
        self.closed = True


def open_caller(
    engine: MediaEngine, call_id: str = "c1", now: float = 0.0, law: Law = Law.ULAW
) -> None:
    engine.open_leg(
        call_id,
        law=law,
        payload_type=law.payload_type,
        event_payload_type=101,
        remote=CALLER_ADDR,
        now=now,
    )


def new_leg(*, events: list[object] | None = None, **options: Any) -> MediaLeg:
    """A µ-law leg towards the caller's address, numbered close to wraparound; `options`
    override any of its arguments."""
    arguments: dict[str, Any] = {
        "call_id": "c1",
        "law": Law.ULAW,
        "payload_type": 0,
        "event_payload_type": 101,
        "remote": CALLER_ADDR,
        "ssrc": 0xABCDEF01,
        "first_sequence": 65530,
        "first_timestamp": 0xFFFFFF00,
        "tick_origin": 0,
        "grid_origin": 0.0,
        "now": 0.0,
    }
    return MediaLeg(events=events if events is not None else [], **{**arguments, **options})


def tone(frequency: float, frames: int = 1, level: float = 8000.0) -> Pcm:
    t = np.arange(160 * frames) / 8000
    return (level * np.sin(2 * np.pi * frequency * t)).astype(np.int16)
