"""DTMF key presses written into the audio as tones, for peers that take no RFC 4733 events.

When one leg of a bridge sends telephone-events (RFC 4733) and the other did not negotiate them,
the key has to reach the other side inside its audio: a pair of sines, one of the low group
(the keypad row) and one of the high group (the column), ITU-T Q.23. The tone lasts as long as
the event did (its duration field, RFC 4733 §2.3.5), kept within what receivers accept: at
least `MIN_TONE_MS` (the shortest key a Q.24 receiver must take, and what our own in-band
detector asks for) and at most `MAX_TONE_MS`. A pause of `PAUSE_MS` follows, so two presses of
the same key stay two tones.

Hook flash (event 16) has no tone: it is left out.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from telephony.rtp.g711 import SAMPLES_PER_FRAME, Law, codec_for
from telephony.rtp.inband import COLUMN_FREQUENCIES, KEYPAD, ROW_FREQUENCIES

__all__ = ["MAX_TONE_MS", "MIN_TONE_MS", "PAUSE_MS", "dtmf_tone_frames"]

SAMPLE_RATE: Final = 8000
MIN_TONE_MS: Final = 40
MAX_TONE_MS: Final = 1000
PAUSE_MS: Final = 40
#: Level of each of the two tones, dBm0: within the -3 to -10 dBm0 that Q.23 senders use, so
#: the pair stays below G.711 clipping.
TONE_LEVEL_DBM0: Final = -8.0
#: Amplitude of a 0 dBm0 sine on the 16-bit scale (µ-law's peak is +3.17 dBm0).
_DBM0_AMPLITUDE: Final = 8159 * 4 / 10 ** (3.17 / 20)
_FRAME_MS: Final = 20


def _frequencies(digit: str) -> tuple[float, float] | None:
    for row, keys in enumerate(KEYPAD):
        column = keys.find(digit.upper())
        if column >= 0 and len(digit) == 1:
            return ROW_FREQUENCIES[row], COLUMN_FREQUENCIES[column]
    return None


def dtmf_tone_frames(digit: str, duration_ms: int, law: Law) -> tuple[bytes, ...]:
    """The 20 ms frames (in `law`) of `digit` held for `duration_ms`, then a short pause;
    empty for a key with no tone (hook flash)."""
    frequencies = _frequencies(digit)
    if frequencies is None:
        return ()
    tone_ms = min(max(duration_ms, MIN_TONE_MS), MAX_TONE_MS)
    frames = -(-(tone_ms + PAUSE_MS) // _FRAME_MS)
    samples = np.zeros(frames * SAMPLES_PER_FRAME, dtype=np.float64)
    tone = np.arange(tone_ms * SAMPLE_RATE // 1000) / SAMPLE_RATE
    amplitude = _DBM0_AMPLITUDE * 10 ** (TONE_LEVEL_DBM0 / 20)
    for frequency in frequencies:
        samples[: len(tone)] += amplitude * np.sin(2 * np.pi * frequency * tone)
    payload = codec_for(law).encode(np.round(samples).astype(np.int16))
    return tuple(
        payload[start : start + SAMPLES_PER_FRAME]
        for start in range(0, len(payload), SAMPLES_PER_FRAME)
    )
