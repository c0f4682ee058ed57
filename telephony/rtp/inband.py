"""In-band DTMF detection on 8 kHz linear audio (for callers whose keys arrive as tones).

Some trunks and old phones do not send RFC 4733 events; the key press is then
only in the audio, as a pair of sine waves (ITU-T Q.23): one of the low group
(697, 770, 852, 941 Hz: the keypad row) and one of the high group (1209, 1336,
1477, 1633 Hz: the column).

Analysis: 20 ms windows (160 samples) every 5 ms.  For each window we measure
the power at the eight DTMF frequencies -- the quantity the Goertzel recurrence
computes for one frequency (see :func:`goertzel_power`) -- but for all bins and
several windows at once as one numpy matrix product, which costs far less than
a per-sample Python loop.  Each frequency is probed at five points across
±1.5 % (the deviation Q.24 asks a receiver to accept), so an off-nominal
generator does not lose power between bins while one 3.5 % off does.

A window holds a key when (all thresholds in :class:`InbandDtmfSettings`):

* its strongest row and column tones are each loud enough;
* their levels differ by no more than the allowed twist;
* together they carry most of the window's energy ("purity") -- speech and music
  spread energy over many frequencies and harmonics, a dual tone does not;
  a window only partly filled by the tone fails this too, which makes the
  duration rules below sharp.

A key is reported once its tones have held for ``min_tone_ms``, and another
key (or the same again) only after ``min_pause_ms`` without it, so a short
drop-out inside one press does not yield a second digit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "COLUMN_FREQUENCIES",
    "KEYPAD",
    "ROW_FREQUENCIES",
    "InbandDigit",
    "InbandDtmfDetector",
    "InbandDtmfSettings",
    "goertzel_power",
]

SAMPLE_RATE: Final = 8000
#: Low group, one per keypad row (Q.23).
ROW_FREQUENCIES: Final = (697.0, 770.0, 852.0, 941.0)
#: High group, one per keypad column (Q.23).
COLUMN_FREQUENCIES: Final = (1209.0, 1336.0, 1477.0, 1633.0)
#: KEYPAD[row][column].
KEYPAD: Final = ("123A", "456B", "789C", "*0#D")

_WINDOW: Final = 160  # 20 ms: resolves the 73 Hz spacing of the row tones
_HOP: Final = 40  # 5 ms between windows
_WINDOW_MS: Final = _WINDOW * 1000 // SAMPLE_RATE
_HOP_MS: Final = _HOP * 1000 // SAMPLE_RATE
_PROBES: Final = (-0.015, -0.0075, 0.0, 0.0075, 0.015)
#: Amplitude of a 0 dBm0 sine on the 16-bit scale: G.711 µ-law's peak (8159 in
#: 14 bits, ×4) is +3.17 dBm0.
_DBM0_AMPLITUDE: Final = 8159 * 4 / 10 ** (3.17 / 20)


@dataclass(frozen=True, slots=True, kw_only=True)
class InbandDtmfSettings:
    """Thresholds of the in-band detector (defaults follow ITU-T Q.24 practice)."""

    min_tone_dbm0: float = -30.0
    """Each of the two tones must be at least this loud (dBm0)."""
    max_high_above_low_db: float = 4.0
    """How much louder the column tone may be than the row tone (reverse twist, dB)."""
    max_high_below_low_db: float = 8.0
    """How much weaker the column tone may be than the row tone (the line attenuates
    high frequencies more; normal twist, dB)."""
    min_purity: float = 0.8
    """Share of the window's energy the two tones must carry (0..1)."""
    min_tone_ms: int = 40
    """How long the tones must hold before the key is reported (ms)."""
    min_pause_ms: int = 40
    """How long the key must be absent before another key is reported (ms)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.min_purity <= 1.0:
            raise ValueError(f"min_purity must be in (0, 1], got {self.min_purity}")
        if self.max_high_above_low_db < 0 or self.max_high_below_low_db < 0:
            raise ValueError("twist limits are magnitudes in dB and cannot be negative")
        if self.min_tone_ms < _WINDOW_MS:
            raise ValueError(f"min_tone_ms must be at least {_WINDOW_MS} ms (one window)")
        if self.min_pause_ms < _HOP_MS:
            raise ValueError(f"min_pause_ms must be at least {_HOP_MS} ms")


@dataclass(frozen=True, slots=True, kw_only=True)
class InbandDigit:
    """A key detected in the audio; ``start_sample`` counts samples since the detector began."""

    digit: str
    start_sample: int

    def __post_init__(self) -> None:
        if len(self.digit) != 1 or self.digit not in "0123456789*#ABCD":
            raise ValueError(f"{self.digit!r} is not a DTMF key")
        if self.start_sample < 0:
            raise ValueError(f"negative sample index {self.start_sample}")


def goertzel_power(samples: npt.NDArray[np.floating], frequency: float, sample_rate: int) -> float:
    """|X(f)|² of ``samples`` at ``frequency`` by the Goertzel recurrence.

    The reference for the matrix form the detector uses; slow (a Python loop).
    """
    coefficient = 2.0 * math.cos(2.0 * math.pi * frequency / sample_rate)
    previous = before = 0.0
    for sample in samples.tolist():
        previous, before = sample + coefficient * previous - before, previous
    return previous * previous + before * before - coefficient * previous * before


def _probe_basis() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    frequencies = np.array(
        [f * (1.0 + p) for f in ROW_FREQUENCIES + COLUMN_FREQUENCIES for p in _PROBES]
    )
    phase = 2.0 * np.pi * np.outer(np.arange(_WINDOW), frequencies) / SAMPLE_RATE
    cosine, sine = np.cos(phase), np.sin(phase)
    cosine.flags.writeable = False
    sine.flags.writeable = False
    return cosine, sine


class InbandDtmfDetector:
    """Finds DTMF keys in a stream of 8 kHz int16 frames; one detector per call leg."""

    # Per-leg state touched by every packet or frame of a decoding leg: slots, as MediaLeg's.
    __slots__ = (
        "_absent",
        "_active_key",
        "_basis",
        "_cosine",
        "_max_high_over_low",
        "_max_low_over_high",
        "_min_tone_power",
        "_pending",
        "_pending_start",
        "_quiet_energy",
        "_reference_power",
        "_run_key",
        "_run_length",
        "_run_start",
        "_settings",
        "_sine",
        "_windows_off",
        "_windows_on",
    )

    def __init__(self, settings: InbandDtmfSettings | None = None) -> None:
        self._settings = settings or InbandDtmfSettings()
        self._cosine, self._sine = _probe_basis()
        # Both quadratures side by side: one matrix product per batch of windows.
        self._basis = np.hstack((self._cosine, self._sine))
        self._reference_power = _DBM0_AMPLITUDE**2 / 2
        self._min_tone_power = self._reference_power * 10 ** (self._settings.min_tone_dbm0 / 10)
        # Audio this quiet holds no key, and the search is skipped: each tone must carry
        # `_min_tone_power` of a window's mean power, and the two tones together cannot carry
        # more of a window's energy than the window holds (a little more: the probes are not
        # quite orthogonal over 20 ms, hence 1.5 rather than 2), nor a window more than the buffer
        # it is cut from. Silence and line noise, most of what an IVR hears, cost one dot product.
        self._quiet_energy = 1.5 * self._min_tone_power * _WINDOW
        self._max_high_over_low = 10 ** (self._settings.max_high_above_low_db / 10)
        self._max_low_over_high = 10 ** (self._settings.max_high_below_low_db / 10)
        # Consecutive windows a key must fill (each 20 ms, 5 ms apart) and windows it
        # must be absent before the next report.
        self._windows_on = max(1, (self._settings.min_tone_ms - _WINDOW_MS) // _HOP_MS)
        self._windows_off = max(1, self._settings.min_pause_ms // _HOP_MS)
        self.reset()

    def reset(self) -> None:
        """Forget the audio heard so far: the next samples do not continue it (a leg that was
        not listened to for a while: what is left of a tone then is no key)."""
        self._pending = np.zeros(0, dtype=np.float64)
        self._pending_start = 0  # absolute index of _pending[0]
        self._run_key = -1  # key of the current run of identical windows (-1: none)
        self._run_length = 0
        self._run_start = 0
        self._active_key = -1  # key reported and not yet released
        self._absent = 0  # windows in a row without the active key

    def process(self, pcm: npt.NDArray[np.int16]) -> tuple[InbandDigit, ...]:
        """Feed the next samples (any length); return the keys completed by them."""
        if pcm.ndim != 1:
            raise ValueError(f"expected mono samples, got an array of shape {pcm.shape}")
        buffer = np.concatenate((self._pending, pcm.astype(np.float64)))
        count = (len(buffer) - _WINDOW) // _HOP + 1 if len(buffer) >= _WINDOW else 0
        digits: tuple[InbandDigit, ...] = ()
        if count > 0:
            keys: list[int]
            if float(np.dot(buffer, buffer)) < self._quiet_energy:
                keys = [-1] * count
            else:
                # The windows as a view of the buffer, `_HOP` samples apart (no copy).
                itemsize = buffer.itemsize
                windows = np.lib.stride_tricks.as_strided(
                    buffer, shape=(count, _WINDOW), strides=(_HOP * itemsize, itemsize)
                )
                keys = self._classify(windows).tolist()
            for index, key in enumerate(keys):
                digit = self._advance(key, self._pending_start + index * _HOP)
                if digit is not None:
                    digits += (digit,)
        consumed = count * _HOP
        self._pending = buffer[consumed:]
        self._pending_start += consumed
        return digits

    def tone_powers(self, window: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        """|X(f)|² of one 160-sample window at the 8 nominal DTMF frequencies (row, column)."""
        centre = _PROBES.index(0.0)
        real = window @ self._cosine[:, centre :: len(_PROBES)]
        imaginary = window @ self._sine[:, centre :: len(_PROBES)]
        powers: npt.NDArray[np.float64] = real * real + imaginary * imaginary
        return powers

    def _classify(self, windows: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """The key index (row·4 + column) each window holds, or -1."""
        windows = windows - windows.mean(axis=1, keepdims=True)
        energy = np.einsum("ij,ij->i", windows, windows)
        projection = windows @ self._basis
        real, imaginary = (
            projection[:, : self._cosine.shape[1]],
            projection[:, self._cosine.shape[1] :],
        )
        # 2|X|²/N is the energy a sinusoid at that frequency puts in the window.
        captured = (real * real + imaginary * imaginary) * (2.0 / _WINDOW)
        captured = captured.reshape(len(windows), 8, len(_PROBES)).max(axis=2)
        rows, columns = captured[:, :4], captured[:, 4:]
        row = rows.argmax(axis=1)
        column = columns.argmax(axis=1)
        low = rows.max(axis=1)
        high = columns.max(axis=1)
        loud = np.minimum(low, high) / _WINDOW >= self._min_tone_power
        twist_ok = (high <= low * self._max_high_over_low) & (low <= high * self._max_low_over_high)
        pure = (low + high) >= self._settings.min_purity * np.maximum(energy, 1e-9)
        held = loud & twist_ok & pure
        keys: npt.NDArray[np.int64] = np.where(held, row * 4 + column, -1)
        return keys

    def _advance(self, key: int, window_start: int) -> InbandDigit | None:
        if key >= 0 and key == self._run_key:
            self._run_length += 1
        else:
            self._run_key, self._run_length, self._run_start = key, 1, window_start
        if self._active_key >= 0:
            if key == self._active_key:
                self._absent = 0
                return None
            self._absent += 1
            if self._absent < self._windows_off:
                return None
            self._active_key = -1
        if self._run_key >= 0 and self._run_length >= self._windows_on:
            self._active_key, self._absent = self._run_key, 0
            row, column = divmod(self._run_key, 4)
            return InbandDigit(digit=KEYPAD[row][column], start_sample=self._run_start)
        return None
