"""What the media engine and its legs are set to do and what a leg counts: the settings
(`EngineSettings`, `LegSettings`), the states of a leg's media lock (`LockState`; the rule is in
`telephony.media.leg`'s module docstring) and its packet counters (`LegCounters`). Kept apart
from `MediaEngine` and `MediaLeg`, which act on them."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from telephony.rtp.jitter import JitterBufferSettings
from telephony.rtp.stats import DropCounters

#: One frame of audio: what a packet carries by default (RFC 3551 §4.2) and the engine's tick.
FRAME_SECONDS: Final = 0.020


class LatchMode(enum.Enum):
    STRICT = "strict"
    """Only the SDP address is ever accepted (peers known not to be behind NAT)."""
    NAT = "nat"
    """The SDP address, or a NAT-translated source latched under the rule above."""


class LockState(enum.Enum):
    LEARNING = "learning"
    LOCKED = "locked"


class LockInput(enum.Enum):
    SDP_SOURCE = "sdp_source"
    LATCH_CONFIRMED = "latch_confirmed"
    RENEGOTIATED = "renegotiated"


#: Every transition of the media lock; anything else is a bug.
LOCK_TRANSITIONS: Final[Mapping[tuple[LockState, LockInput], LockState]] = MappingProxyType(
    {
        (LockState.LEARNING, LockInput.SDP_SOURCE): LockState.LOCKED,
        (LockState.LEARNING, LockInput.LATCH_CONFIRMED): LockState.LOCKED,
        (LockState.LEARNING, LockInput.RENEGOTIATED): LockState.LEARNING,
        (LockState.LOCKED, LockInput.RENEGOTIATED): LockState.LEARNING,
    }
)


class InvalidLockTransitionError(RuntimeError):
    """The media lock was driven through a transition its table does not have."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LegSettings:
    """How a leg guards and paces its media. Every field has a working default."""

    latch: LatchMode = LatchMode.NAT
    """Whether a source other than the SDP address may be latched (see the module docstring)."""
    latch_packets: int = 3
    """Consecutive valid packets from one foreign address before it is latched."""
    latch_window: float = 10.0
    """Seconds after opening (or renegotiating) during which NAT latching is allowed."""
    max_packet_rate: float = 200.0
    """Packets per second accepted from the locked source (G.711 at 20 ms is 50, plus DTMF)."""
    packet_burst: float = 50.0
    """Packets the rate limit lets through at once (a burst after a network stall)."""
    media_timeout: float = 60.0
    """Seconds without RTP after which `MediaTimeout` is reported (0 disables)."""
    rtcp_interval: float = 5.0
    """Mean seconds between our RTCP reports (RFC 3550 §6.2 minimum), randomised ±50 %."""
    dtmf_end_timeout: float = 0.25
    """Seconds without telephone-event packets after which a key is taken as released."""
    jitter: JitterBufferSettings = field(default_factory=JitterBufferSettings)
    """The jitter buffer used when the leg's audio is decoded (tap, recording, in-band DTMF)."""
    cname: str = "cxos"
    """RTCP CNAME (RFC 3550 §6.5.1)."""

    def __post_init__(self) -> None:
        if self.latch_packets < 1 or self.latch_window < 0:
            raise ValueError("latch_packets must be at least 1 and latch_window not negative")
        if self.max_packet_rate <= 0 or self.packet_burst < 1:
            raise ValueError("max_packet_rate must be positive and packet_burst at least 1")
        if self.media_timeout < 0 or self.rtcp_interval <= 0:
            raise ValueError("media_timeout must be >= 0 and rtcp_interval positive")


@dataclass(slots=True)
class LegCounters:
    """Packets and octets of one leg. Plain integers, bumped on the hot path."""

    received: int = 0
    received_octets: int = 0
    sent: int = 0
    sent_octets: int = 0
    foreign_address: int = 0
    """Dropped: from an address other than the locked source (or, learning, not lockable)."""
    flood: int = 0
    """Dropped: over the rate limit of the locked source."""
    rtcp_received: int = 0
    rtcp_dropped: int = 0
    comfort_noise: int = 0
    """Comfort-noise packets (RFC 3389) received; counted in `received` too."""
    drops: DropCounters = field(default_factory=DropCounters)

    def add(self, other: LegCounters) -> None:
        """Add `other`'s counts to these (totals over legs)."""
        self.received += other.received
        self.received_octets += other.received_octets
        self.sent += other.sent
        self.sent_octets += other.sent_octets
        self.foreign_address += other.foreign_address
        self.flood += other.flood
        self.rtcp_received += other.rtcp_received
        self.rtcp_dropped += other.rtcp_dropped
        self.comfort_noise += other.comfort_noise
        self.drops.add(other.drops)

    @property
    def dropped(self) -> int:
        return self.foreign_address + self.flood + self.drops.total


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineSettings:
    leg: LegSettings = field(default_factory=LegSettings)
    """Defaults for every leg."""
    max_catch_up: int = 3
    """Most ticks kept for catching up after the timer fired late; older due ticks are skipped."""
    catch_up_spacing: float = 0.0
    """Seconds between two ticks played to catch up (0: all due ticks at once, the default)."""
    max_pending_pcm: int = 3
    """Decoded frames a leg may hold between ticks (jitter buffer and tick phase differ)."""
    comfort_noise_dbm0: float | None = None
    """Level (dBm0, at most -40) of the noise sent in place of played silence; None sends
    silence as it is."""

    def __post_init__(self) -> None:
        if self.max_catch_up < 1 or self.max_pending_pcm < 1:
            raise ValueError("max_catch_up and max_pending_pcm must be at least 1")
        if self.comfort_noise_dbm0 is not None and not -90 <= self.comfort_noise_dbm0 <= -40:
            raise ValueError("comfort_noise_dbm0 must be between -90 and -40 dBm0")
        if not 0 <= self.catch_up_spacing < FRAME_SECONDS:
            raise ValueError("catch_up_spacing must be at least 0 and shorter than a frame")
