"""Bridging two legs: who relays to whom, and the per-leg state the engine keeps.

A bridge is symmetric: each leg's `peer` is the other. Audio flows towards a peer (`relay_to`)
only while neither side is on hold; a leg that is playing something gets no relayed audio (the
engine checks that per packet, as playbacks come and go often). When the laws differ the relay
transcodes by `bytes.translate` with the table of `telephony.rtp.g711`, on the payload only.
While a supervisor monitors the bridge, `telephony.media.mix` decides the relays instead.

Telephone-events (RFC 4733) follow the audio: they go to every leg that hears the leg they came
from (`event_targets`), the relay peer on a plain bridge, the listeners of the speaker in a mix.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from telephony.media.leg import MediaLeg
from telephony.media.playout import Playback
from telephony.media.recorder import Recording
from telephony.media.tap import AudioTap, Pcm
from telephony.rtp.g711 import G711Codec
from telephony.rtp.inband import InbandDtmfDetector

if TYPE_CHECKING:
    from telephony.media.mix import Mix


class UnknownLegError(KeyError):
    """An API call named a leg the engine does not have (never opened, or already closed)."""


class MediaStateError(RuntimeError):
    """An API call that the leg's current media state does not allow (e.g. bridging a leg that is
    already bridged)."""


@dataclass(slots=True, eq=False)
class LegSlot:
    """The engine's view of one leg: the leg plus what it is doing."""

    leg: MediaLeg
    codec: G711Codec
    playback: Playback | None = None
    tone: Playback | None = None
    """DTMF tones written into what the leg hears (a key from a leg that sent RFC 4733 events,
    to a peer that takes none); they replace relayed or mixed audio while they last."""
    peer: LegSlot | None = None
    held: bool = False
    relay_to: LegSlot | None = None
    """The bridged peer while audio flows towards it (bridged, neither side on hold)."""
    transcode: bytes | None = None
    """`bytes.translate` table from this leg's law to the peer's, or None when they match."""
    taps: list[AudioTap] = field(default_factory=list)
    recording: Recording | None = None
    recorded_by_peer: bool = False
    inband: InbandDtmfDetector | None = None
    pending_pcm: deque[Pcm] = field(default_factory=deque)
    tick_pcm: Pcm | None = None
    sent_pcm: Pcm | None = None
    closed: bool = False
    mix: Mix | None = None
    """The supervisor mix this leg takes part in (telephony.media.mix); it sets `relay_to`."""
    mix_decode: bool = False
    """The mix needs this leg's audio decoded (it speaks into a mixed frame)."""
    silence: bytes = field(init=False)
    """A frame of silence in the leg's law."""

    def __post_init__(self) -> None:
        self.silence = self.codec.silence()

    @property
    def decodes(self) -> bool:
        return bool(
            self.taps
            or self.recording
            # In-band keys pause while bridged: the peer hears the tones in the audio, and a
            # settled relay keeps its fast path (tone detection costs each frame's decoding).
            or (self.inband is not None and self.peer is None)
            or self.recorded_by_peer
            or self.mix_decode
        )


def event_targets(slot: LegSlot) -> tuple[LegSlot, ...]:
    """The legs that hear `slot`, so get its telephone-events."""
    if slot.mix is not None:
        return slot.mix.hearers.get(slot, ())
    target = slot.relay_to
    return () if target is None else (target,)


def connect(first: LegSlot, second: LegSlot) -> None:
    """Make two unbridged legs each other's peer and start the relay both ways."""
    first.peer, second.peer = second, first
    first.transcode = first.codec.transcode_table(second.codec.law)
    second.transcode = second.codec.transcode_table(first.codec.law)
    update_relay(first)


def disconnect(slot: LegSlot) -> LegSlot | None:
    """Undo `connect`; returns the former peer, None if the leg was not bridged."""
    peer = slot.peer
    if peer is None:
        return None
    slot.peer = peer.peer = None
    slot.relay_to = peer.relay_to = None
    slot.transcode = peer.transcode = None
    peer.recorded_by_peer = slot.recorded_by_peer = False
    slot.leg.new_talkspurt()
    peer.leg.new_talkspurt()
    return peer


def update_relay(slot: LegSlot) -> None:
    """Recompute whether audio flows between a leg and its peer (after bridge or hold changes)."""
    peer = slot.peer
    flowing = peer is not None and not slot.held and not peer.held
    slot.relay_to = peer if flowing else None
    if peer is not None:
        peer.relay_to = slot if flowing else None
        peer.leg.new_talkspurt()
    slot.leg.new_talkspurt()
