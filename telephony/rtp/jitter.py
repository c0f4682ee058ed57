"""A bounded, fixed-delay jitter buffer for received audio that is decoded or relayed paced.

The buffer turns packets arriving at irregular times, possibly reordered, duplicated or lost, into
one frame per `frame_duration` (20 ms, 160 samples at 8 kHz). It is sans-IO: `push(packet, now)`
when a packet arrives, `pop(now)` when `next_deadline` has come; `now` is monotonic seconds.

Playout schedule. The first packet is played `target_delay` after it arrived; from then on one
frame is due every `frame_duration`. A packet's place in that schedule comes from its RTP timestamp
(so silence suppression, which leaves timestamp gaps without sequence gaps, keeps its timing),
compared modulo 2**32 with the timestamp due next; sequence numbers (modulo 2**16) identify
duplicates.

What happens to each packet (`PushOutcome`):
- its frame is still ahead of the playout point: buffered, whatever order it came in;
- its frame is already buffered, or was played recently: dropped as a duplicate;
- its frame's time has passed, or it is older than a packet already played, or it would land
  before frames kept from the timeline before a re-anchor (both would play out of order):
  dropped as late. If the buffer is empty and `resync_after_late`
  packets in a row were late, the stream has fallen behind for good (a delay step, or a sender
  clock slower than ours): playout is re-anchored on this packet, `target_delay` from now,
  provided it is newer than the last packet played;
- its frame lies `capacity` frames or more ahead of the playout point (a timestamp jump, or a
  sender clock faster than ours): playout is re-anchored so that it plays `target_delay` from
  now, or right after the frames already buffered if that is later and they still fit. If they
  do not (the buffer is full), the oldest frames are discarded down to the target delay and
  counted as overflow. The buffer never holds more than `capacity` frames;
- a talkspurt start (marker bit, RFC 3551 §4.1) that finds the buffer empty re-anchors playout
  to `target_delay`, so a delay drift is undone during silence instead of by dropping audio.

Loss concealment (`FrameStatus`): a missing frame right after a received one is replaced by a
repeat of that frame; further missing frames are silence, which the caller renders in its codec.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from telephony.rtp.packet import RtpPacket, seq_newer, ts_diff
from telephony.rtp.stats import DropCounters

_TIMESTAMP_MASK: Final = 0xFFFFFFFF
_EPSILON: Final = 1e-9
_REORDER_WINDOW: Final = 100
"""Sequence numbers this far behind the last packet played count as reordered (late), not as a
sender that restarted its numbering (RFC 3550 §A.1 uses the same MAX_MISORDER)."""


class FrameStatus(StrEnum):
    RECEIVED = "received"
    """The packet for this frame arrived in time."""
    REPEATED = "repeated"
    """Lost: the previous frame's payload, repeated once as concealment."""
    SILENCE = "silence"
    """Lost again (or nothing received yet): the caller plays its codec's silence."""


class PushOutcome(StrEnum):
    BUFFERED = "buffered"
    RESYNCED = "resynced"
    """Buffered after moving the playout point (see the module docstring)."""
    LATE = "late"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayoutFrame:
    """One frame of playout."""

    status: FrameStatus
    timestamp: int
    """RTP timestamp this frame stands for."""
    payload: bytes | None
    """The encoded frame; None for `FrameStatus.SILENCE`."""
    sequence: int | None = None
    """Sequence number of the packet played; None when concealed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JitterBufferSettings:
    """How a jitter buffer behaves. Every field has a working default for G.711 at 20 ms."""

    target_delay: float = 0.060
    """Seconds from a packet's arrival to its playout when playout is (re-)anchored on it."""
    frame_duration: float = 0.020
    """Seconds of audio per frame (and per packet)."""
    clock_rate: int = 8000
    """RTP timestamp units per second."""
    capacity: int = 10
    """Most frames held at once; packets further ahead than this re-anchor playout."""
    resync_after_late: int = 2
    """Consecutive late packets, with the buffer empty, that re-anchor playout."""

    def __post_init__(self) -> None:
        if self.frame_duration <= 0 or self.clock_rate <= 0 or self.target_delay < 0:
            raise ValueError("frame_duration, clock_rate must be positive, target_delay >= 0")
        if abs(self.frame_duration * self.clock_rate - self.samples_per_frame) > 1e-6:
            raise ValueError("frame_duration must be a whole number of timestamp units")
        if self.capacity <= self.target_frames:
            raise ValueError(
                f"capacity of {self.capacity} frames cannot hold a target delay of "
                f"{self.target_frames} frames"
            )
        if self.resync_after_late < 1:
            raise ValueError("resync_after_late must be at least 1")

    @property
    def samples_per_frame(self) -> int:
        return round(self.frame_duration * self.clock_rate)

    @property
    def target_frames(self) -> int:
        return math.ceil(self.target_delay / self.frame_duration - _EPSILON)


@dataclass(slots=True)
class PlayoutCounters:
    """What the buffer played, for call quality figures."""

    received: int = 0
    repeated: int = 0
    silence: int = 0
    resyncs: int = 0
    skipped: int = 0
    """Frames passed over because `pop` was called too late to play them in time."""


class JitterBuffer:
    """Fixed-delay playout buffer for one received audio stream (one SSRC, one payload type)."""

    # Per-leg state touched by every packet or frame of a decoding leg: slots, as MediaLeg's.
    __slots__ = (
        "_consecutive_late",
        "_floor_index",
        "_frame",
        "_last_payload",
        "_last_sequence",
        "_next_deadline",
        "_next_index",
        "_next_timestamp",
        "_played",
        "_samples",
        "_slots",
        "counters",
        "playout",
        "settings",
    )

    def __init__(
        self, settings: JitterBufferSettings | None = None, *, counters: DropCounters | None = None
    ) -> None:
        self.settings = settings if settings is not None else JitterBufferSettings()
        self.counters = counters if counters is not None else DropCounters()
        self.playout = PlayoutCounters()
        self._samples = self.settings.samples_per_frame
        self._frame = self.settings.frame_duration
        self._slots: dict[int, RtpPacket] = {}  # frame index -> packet
        self._played: deque[int] = deque(maxlen=2 * self.settings.capacity)
        self._next_index = 0
        self._next_timestamp = 0
        self._next_deadline: float | None = None
        self._last_payload: bytes | None = None
        self._last_sequence: int | None = None
        self._consecutive_late = 0
        self._floor_index = 0  # slots below it take no packet (see `_anchor`)

    @property
    def next_deadline(self) -> float | None:
        """When the next frame is due (monotonic seconds); None until a packet has arrived."""
        return self._next_deadline

    def __len__(self) -> int:
        """Frames buffered."""
        return len(self._slots)

    def reset(self) -> None:
        """Forget everything, e.g. when the source changed; the next packet starts playout anew."""
        self._slots.clear()
        self._played.clear()
        self._next_deadline = None
        self._last_payload = None
        self._last_sequence = None
        self._consecutive_late = 0
        self._floor_index = 0

    def push(self, packet: RtpPacket, now: float) -> PushOutcome:
        """Offer a received packet that arrived at `now`."""
        if self._next_deadline is None:
            self._next_deadline = now + self.settings.target_delay
            self._next_timestamp = packet.timestamp
            self._slots[self._next_index] = packet
            return PushOutcome.BUFFERED
        # Frames from the playout point to this packet, rounded to the nearest frame.
        offset = (ts_diff(packet.timestamp, self._next_timestamp) + self._samples // 2) // (
            self._samples
        )
        if offset < 0 or self._next_index + offset < self._floor_index:
            return self._behind(packet, now)
        if self._next_index + offset in self._slots:
            self.counters.duplicate += 1
            return PushOutcome.DUPLICATE
        last = self._last_sequence
        if last is not None and (last - packet.sequence) & 0xFFFF < _REORDER_WINDOW:
            # Older than (or the same as) a packet already played, yet ahead of the playout point:
            # playout was re-anchored past it. Playing it now would put audio out of order.
            return self._behind(packet, now)
        self._consecutive_late = 0
        if offset >= self.settings.capacity or (packet.marker and not self._slots):
            return self._anchor(packet, offset, now)
        self._slots[self._next_index + offset] = packet
        return PushOutcome.BUFFERED

    def _behind(self, packet: RtpPacket, now: float) -> PushOutcome:
        """A packet whose playout time has passed."""
        if packet.sequence in self._played:
            self.counters.duplicate += 1
            return PushOutcome.DUPLICATE
        self._consecutive_late += 1
        if (
            not self._slots
            and self._consecutive_late >= self.settings.resync_after_late
            and (self._last_sequence is None or seq_newer(packet.sequence, self._last_sequence))
        ):
            # Never re-anchor on a packet older than one already played: audio stays in order.
            self._consecutive_late = 0
            return self._anchor(packet, None, now)
        self.counters.late += 1
        return PushOutcome.LATE

    def _anchor(self, packet: RtpPacket, offset: int | None, now: float) -> PushOutcome:
        """Buffer `packet` (`offset` frames after the playout point on the current timeline, None
        if behind it) so that it plays at the first frame deadline at least `target_delay` from
        now, and after any frame already buffered. The deadline grid keeps its phase, so the
        caller's timer carries on. A packet that arrived on time lands where it already was."""
        deadline = self._next_deadline
        assert deadline is not None  # only called once playout has started
        steps = max(
            0, math.ceil((now + self.settings.target_delay - deadline) / self._frame - _EPSILON)
        )
        position = steps
        if self._slots:
            position = max(position, max(self._slots) - self._next_index + 1)
        dropped = 0
        if position >= self.settings.capacity:
            # Full: discard the oldest frames, down to the target delay before this packet.
            self._next_index += position - steps
            position = steps
            stale = [index for index in self._slots if index < self._next_index]
            for index in stale:
                del self._slots[index]
            dropped = len(stale)
            self.counters.overflow += dropped
        anchor = self._next_index + position
        self._slots[anchor] = packet
        if position == offset and not dropped:
            return PushOutcome.BUFFERED
        # The packet defines the timeline from here on (timestamp jump, drift, delay change).
        self._next_timestamp = (packet.timestamp - position * self._samples) & _TIMESTAMP_MASK
        # Frames kept from the old timeline play first; on the new one their slots stand for
        # other timestamps, so no later packet may land at or before them (out of order).
        kept = [index for index in self._slots if index != anchor]
        self._floor_index = max(kept) + 1 if kept else self._next_index
        self.playout.resyncs += 1
        return PushOutcome.RESYNCED

    def pop(self, now: float) -> PlayoutFrame | None:
        """The frame due at `next_deadline`, if `now` has reached it; otherwise None.

        Call it again while it returns frames. If the caller fell `capacity` frames or more
        behind the schedule, the overdue frames are skipped and playout resumes at `now`.
        """
        deadline = self._next_deadline
        if deadline is None or now < deadline:
            return None
        behind = int((now - deadline) / self._frame + _EPSILON)
        if behind >= self.settings.capacity:
            self._skip(behind)
            deadline += behind * self._frame
        index = self._next_index
        timestamp = self._next_timestamp
        self._next_index = index + 1
        self._next_timestamp = (timestamp + self._samples) & _TIMESTAMP_MASK
        self._next_deadline = deadline + self._frame
        packet = self._slots.pop(index, None)
        if packet is not None:
            self._played.append(packet.sequence)
            self._last_payload = packet.payload
            self._last_sequence = packet.sequence
            self.playout.received += 1
            return PlayoutFrame(
                status=FrameStatus.RECEIVED,
                timestamp=timestamp,
                payload=packet.payload,
                sequence=packet.sequence,
            )
        repeat = self._last_payload
        if repeat is not None:
            self._last_payload = None  # repeat once only
            self.playout.repeated += 1
            return PlayoutFrame(status=FrameStatus.REPEATED, timestamp=timestamp, payload=repeat)
        self.playout.silence += 1
        return PlayoutFrame(status=FrameStatus.SILENCE, timestamp=timestamp, payload=None)

    def _skip(self, frames: int) -> None:
        first = self._next_index
        for index in range(first, first + frames):
            packet = self._slots.pop(index, None)
            if packet is not None:
                self._played.append(packet.sequence)
                self.counters.overflow += 1
        self.playout.skipped += frames
        self._next_index = first + frames
        self._next_timestamp = (self._next_timestamp + frames * self._samples) & _TIMESTAMP_MASK
        self._last_payload = None
