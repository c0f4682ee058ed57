"""The per-tick decoding pass: jitter buffer to linear PCM, for taps, in-band DTMF, recording.

Only legs with a decoding consumer take part. Each tick, every such leg pops the frames its
jitter buffer has due (its grid has its own phase, so zero, one or two), decodes them, and keeps
one frame as this tick's audio (`tick_pcm`); the few left over wait for the next tick, bounded by
`max_pending`. Recordings are written after every leg has its frame (and after a supervisor mix
made its frames from them: `decode_frames`, mix, then `write_recordings`), so both directions of
a bridged call land in the same tick.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from telephony.media.bridge import LegSlot
from telephony.rtp.jitter import FrameStatus


def decode_tick(
    slots: Iterable[LegSlot], now: float, max_pending: int
) -> tuple[list[tuple[LegSlot, str]], list[LegSlot]]:
    """Run one tick; returns the in-band digits heard and the legs whose recording failed."""
    slots = list(slots)
    digits = decode_frames(slots, now, max_pending)
    return digits, write_recordings(slots)


def decode_frames(
    slots: Sequence[LegSlot], now: float, max_pending: int
) -> list[tuple[LegSlot, str]]:
    """Give every leg its frame of this tick (`tick_pcm`), feed taps and in-band detectors;
    returns the in-band digits heard."""
    digits: list[tuple[LegSlot, str]] = []
    for slot in slots:
        jitter = slot.leg.jitter
        if jitter is None:
            continue
        pending = slot.pending_pcm
        codec = slot.codec
        while (frame := jitter.pop(now)) is not None:
            if frame.status is FrameStatus.SILENCE or frame.payload is None:
                pending.append(codec.decode(codec.silence()))
            else:
                pending.append(codec.decode(frame.payload))
            if len(pending) > max_pending:
                pending.popleft()
        pcm = slot.tick_pcm = pending.popleft() if pending else None
        if pcm is None:
            continue
        for tap in slot.taps:
            tap.push(pcm)
            if tap.wakeup is not None:
                tap.wakeup()
        if slot.inband is not None:
            digits.extend((slot, digit.digit) for digit in slot.inband.process(pcm))
    return digits


def write_recordings(slots: Sequence[LegSlot]) -> list[LegSlot]:
    """Write this tick of every recorded leg; returns the legs whose recording failed."""
    failed: list[LegSlot] = []
    for slot in slots:
        recording = slot.recording
        if recording is None:
            continue
        sent = slot.sent_pcm
        if sent is None and slot.relay_to is not None:
            sent = slot.relay_to.tick_pcm
        if not recording.write(slot.tick_pcm, sent):
            failed.append(slot)
        slot.sent_pcm = None
    return failed
