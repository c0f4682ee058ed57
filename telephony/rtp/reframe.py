"""Cutting received G.711 packets of any duration into 20 ms frames, sans-IO.

A peer chooses its packet duration: `a=ptime` in its SDP says what it wants to *receive*
(RFC 4566 §6), and many send 10, 30 or 40 ms whatever we asked for. The jitter buffer and
everything after it (decoding, recording, mixing, in-band DTMF) work on frames of one size, so
received audio is re-framed first, by its actual sample count (one octet per sample in G.711,
RFC 3551 §4.5.14; a receiver accepts 0 to 200 ms per packet, §4.2), never by assuming 20 ms.

The frame grid is anchored on the stream's RTP timestamps: frame boundaries fall every
`samples_per_frame` timestamp units from the anchor, which is the first packet, moved to any
whole-frame packet that arrives with nothing pending (so a 20 ms sender costs one comparison)
and to any talkspurt start (marker bit, RFC 3551 §4.1).

- A packet that covers whole frames on the grid (20, 40, 60 ms) is cut into them at once.
- Shorter or misaligned pieces (10 ms packets, the second half of a 30 ms packet) fill partial
  frames, which are released when complete. A partial frame whose missing piece never comes (a
  lost 10 ms packet) is released, the gap filled with the codec's silence, once a packet starts
  a frame two frames later: at most `max_pending` frames wait, so the delay added is bounded.
- A duplicate of a piece already in a partial frame writes the same samples again; one of a
  frame already released makes a new frame that the jitter buffer drops as a duplicate.

Each frame carries the timestamp of its grid position, and the sequence number, SSRC and payload
type of the last packet that filled part of it, so frames never go back in sequence (the jitter
buffer drops a frame older than one it has played). The marker bit of a packet goes on its
first frame only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from telephony.rtp.packet import RtpPacket, seq_newer, ts_diff

_TIMESTAMP_MASK: Final = 0xFFFFFFFF
_MAX_GAP_FRAMES: Final = 50
"""A timestamp further than this from the anchor, without a marker bit, starts a new timeline
(a sender that restarted its clock) rather than a partial frame a second away."""


@dataclass(slots=True)
class _Partial:
    """A frame being filled from pieces of packets."""

    samples: bytearray
    covered: int
    """Bit i set: sample i arrived."""
    template: RtpPacket
    """The last packet that filled part of the frame: its sequence number, SSRC, payload type."""
    marker: bool


class Reframer:
    """Turns received audio packets of any size into packets of exactly `samples_per_frame`."""

    # Per-leg state touched by every packet or frame of a decoding leg: slots, as MediaLeg's.
    __slots__ = (
        "_anchor",
        "_fill",
        "_full",
        "_pending",
        "max_pending",
        "padded",
        "reframed",
        "samples_per_frame",
    )

    def __init__(self, *, fill: int, samples_per_frame: int = 160, max_pending: int = 2) -> None:
        if samples_per_frame < 1 or max_pending < 1 or not 0 <= fill <= 0xFF:
            raise ValueError("samples_per_frame and max_pending must be positive, fill an octet")
        self.samples_per_frame = samples_per_frame
        self.max_pending = max_pending
        self._fill = fill
        self._full = (1 << samples_per_frame) - 1
        self._anchor: int | None = None
        self._pending: dict[int, _Partial] = {}  # grid offset of the frame -> partial frame
        self.reframed = 0
        """Packets that were not one whole frame on the grid (for call quality figures)."""
        self.padded = 0
        """Frames released incomplete, their gaps filled with silence."""

    def reset(self) -> None:
        """Forget the grid and what is pending (the source changed)."""
        self._anchor = None
        self._pending.clear()

    def push(self, packet: RtpPacket) -> list[RtpPacket]:
        """The frames completed (or given up on) by `packet`, possibly none. They come in the
        order they complete, not always in timestamp order: the jitter buffer places each by
        its timestamp."""
        size = self.samples_per_frame
        payload = packet.payload
        pending = self._pending
        if len(payload) == size and not pending:
            self._anchor = packet.timestamp  # the common case: a whole frame
            return [packet]
        frames: list[RtpPacket] = []
        anchor = self._anchor
        position = 0 if anchor is None else ts_diff(packet.timestamp, anchor)
        if anchor is None or packet.marker or abs(position) > _MAX_GAP_FRAMES * size:
            self._release_all(frames)
            self._anchor = packet.timestamp
            position = 0
        self.reframed += 1
        index = 0
        total = len(payload)
        while index < total:
            start = position - position % size
            within = position - start
            if pending:
                self._release_stale(start, frames)
            take = min(size - within, total - index)
            piece = payload[index : index + take]
            if take == size and start not in pending:
                frames.append(self._frame(packet, start, piece, packet.marker and index == 0))
            else:
                self._add(packet, start, within, piece, index == 0, frames)
            index += take
            position += take
        return frames

    def _add(
        self,
        packet: RtpPacket,
        start: int,
        within: int,
        piece: bytes,
        first: bool,
        frames: list[RtpPacket],
    ) -> None:
        pending = self._pending
        partial = pending.get(start)
        if partial is None:
            partial = _Partial(
                samples=bytearray([self._fill]) * self.samples_per_frame,
                covered=0,
                template=packet,
                marker=packet.marker and first,
            )
            pending[start] = partial
        elif seq_newer(packet.sequence, partial.template.sequence):
            partial.template = packet
        # A duplicate piece writes the same samples again: harmless.
        mask = ((1 << len(piece)) - 1) << within
        partial.samples[within : within + len(piece)] = piece
        partial.covered |= mask
        if partial.covered == self._full:
            del pending[start]
            frames.append(
                self._frame(partial.template, start, bytes(partial.samples), partial.marker)
            )

    def _release_stale(self, start: int, frames: list[RtpPacket]) -> None:
        """Release the partial frames that the frame at `start` leaves `max_pending` frames or
        more behind: their missing pieces were lost."""
        limit = start - self.max_pending * self.samples_per_frame
        for old in sorted(self._pending):
            if old <= limit:
                frames.append(self._release(old))

    def _release(self, start: int) -> RtpPacket:
        partial = self._pending.pop(start)
        self.padded += 1
        return self._frame(partial.template, start, bytes(partial.samples), partial.marker)

    def _release_all(self, frames: list[RtpPacket]) -> None:
        for start in sorted(self._pending):
            frames.append(self._release(start))

    def _frame(self, template: RtpPacket, start: int, payload: bytes, marker: bool) -> RtpPacket:
        anchor = self._anchor
        assert anchor is not None
        return RtpPacket(
            payload_type=template.payload_type,
            sequence=template.sequence,
            timestamp=(anchor + start) & _TIMESTAMP_MASK,
            ssrc=template.ssrc,
            payload=payload,
            marker=marker,
        )
