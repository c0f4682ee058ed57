"""What the media engine reports about a call's audio: digits, playback, recording, timeouts.

Events carry no wall-clock time (the bus stamps it); durations are given where a figure needs them.
Every event names the call leg it happened on by `call_id`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from telephony.rtp.dtmf import DTMF_KEYS

#: How a digit reached us: RFC 4733 telephone-events, or tones in the audio (ITU-T Q.23).
DigitSource = Literal["rfc4733", "inband"]
#: Why a playback ended: it ran to its end, a key press interrupted it, or it was stopped by the
#: API (stop, hold, hang-up, a new playback replacing it).
PlaybackEnd = Literal["completed", "barged_in", "stopped"]


def _check_call_id(call_id: str) -> None:
    if not call_id:
        raise ValueError("call_id must not be empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class DigitReceived:
    """A key press, reported exactly once however many packets carried it."""

    TYPE: ClassVar[str] = "media.digit"
    VERSION: ClassVar[int] = 1
    call_id: str
    digit: str
    duration_ms: int
    source: DigitSource

    def __post_init__(self) -> None:
        _check_call_id(self.call_id)
        if len(self.digit) != 1 or self.digit not in DTMF_KEYS:
            raise ValueError(f"{self.digit!r} is not a DTMF key")
        if self.duration_ms < 0:
            raise ValueError(f"negative key press duration {self.duration_ms} ms")
        if self.source not in ("rfc4733", "inband"):
            raise ValueError(f"unknown digit source {self.source!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaybackFinished:
    """A prompt sequence stopped playing on a leg."""

    TYPE: ClassVar[str] = "media.playback_finished"
    VERSION: ClassVar[int] = 1
    call_id: str
    playback_id: int
    reason: PlaybackEnd
    played_seconds: float
    digit: str | None = None
    """The key that interrupted the playback, when `reason` is ``barged_in`` by a key."""

    def __post_init__(self) -> None:
        _check_call_id(self.call_id)
        if self.reason not in ("completed", "barged_in", "stopped"):
            raise ValueError(f"unknown playback end {self.reason!r}")
        if self.played_seconds < 0:
            raise ValueError("played_seconds cannot be negative")
        if self.digit is not None and self.reason != "barged_in":
            raise ValueError("only a barge-in carries a digit")


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingStarted:
    TYPE: ClassVar[str] = "media.recording_started"
    VERSION: ClassVar[int] = 2  # 2: file
    call_id: str
    recording_id: str
    layout: Literal["mixed", "stereo"]
    #: The recording's file name in the node's recordings directory ("" when it is no file).
    file: str = ""

    def __post_init__(self) -> None:
        _check_call_id(self.call_id)
        if not self.recording_id:
            raise ValueError("recording_id must not be empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingStopped:
    TYPE: ClassVar[str] = "media.recording_stopped"
    VERSION: ClassVar[int] = 1
    call_id: str
    recording_id: str
    duration_seconds: float

    def __post_init__(self) -> None:
        _check_call_id(self.call_id)
        if self.duration_seconds < 0:
            raise ValueError("duration_seconds cannot be negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaSourceLocked:
    """The leg locked onto the address its peer's media comes from (symmetric RTP, RFC 4961);
    packets from any other address are dropped from now on."""

    TYPE: ClassVar[str] = "media.source_locked"
    VERSION: ClassVar[int] = 1
    call_id: str
    address: str
    port: int
    latched: bool
    """True when the source differs from the SDP address (NAT latching), False when it is it."""

    def __post_init__(self) -> None:
        _check_call_id(self.call_id)
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} out of range")


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaTimeout:
    """No RTP from the peer for longer than the leg's media timeout (a dead call)."""

    TYPE: ClassVar[str] = "media.timeout"
    VERSION: ClassVar[int] = 1
    call_id: str
    silent_seconds: float

    def __post_init__(self) -> None:
        _check_call_id(self.call_id)
        if self.silent_seconds < 0:
            raise ValueError("silent_seconds cannot be negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaLegClosed:
    """A leg's media ended; its figures for call quality reporting (RFC 3550 §6.4 terms)."""

    TYPE: ClassVar[str] = "media.leg_closed"
    VERSION: ClassVar[int] = 1
    call_id: str
    packets_received: int
    packets_sent: int
    packets_lost: int
    jitter_ms: float
    dropped: int
    """Received packets thrown away (malformed, wrong payload type, foreign source, flood...)."""
    foreign_address: int
    """Of those, packets from an address other than the locked media source."""
    remote_fraction_lost: float | None
    """The peer's view of our stream, from its last RTCP report (0..1); None without one."""

    def __post_init__(self) -> None:
        _check_call_id(self.call_id)
        if min(self.packets_received, self.packets_sent, self.dropped, self.foreign_address) < 0:
            raise ValueError("packet counts cannot be negative")
        if self.jitter_ms < 0:
            raise ValueError("jitter cannot be negative")


MediaEvent = (
    DigitReceived
    | PlaybackFinished
    | RecordingStarted
    | RecordingStopped
    | MediaSourceLocked
    | MediaTimeout
    | MediaLegClosed
)
