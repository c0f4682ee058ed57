"""Band-limited sample-rate conversion with numpy (no scipy): windowed sinc, polyphase.

Prompts arrive at 11.025 to 48 kHz and must become 8 kHz telephone audio; the
speech recogniser wants 16 kHz from 8 kHz calls.  Both go through the same
filter: a low-pass sinc, cut off just under the lower of the two Nyquist
frequencies and tapered by a Kaiser window, evaluated at each output sample's
exact position in the input.  Because the position's fractional part cycles
through ``to / gcd`` values, the filter is tabulated once per phase.
"""

from __future__ import annotations

import math
from typing import Final, overload

import numpy as np
import numpy.typing as npt

__all__ = ["MAX_RATE", "MIN_RATE", "Resampler", "resample", "to_int16"]

Int16Array = npt.NDArray[np.int16]
FloatArray = npt.NDArray[np.float64]

#: Rates accepted, in Hz.
MIN_RATE: Final = 4000
MAX_RATE: Final = 192_000


class Resampler:
    """Streaming rational-rate resampler: windowed-sinc interpolation, polyphase tables.

    Output sample ``n`` sits at input position ``n·from/to`` and is the sum of the
    nearby input samples weighted by a low-pass sinc whose cutoff is ``rolloff``
    times the lower Nyquist frequency, tapered by a Kaiser window over
    ``zero_crossings`` lobes each side.  The defaults keep the telephone band
    (to 3.4 kHz at 8 kHz) flat and put aliases ~80 dB down.  One table row per
    output phase is computed once per resampler.

    Feed any number of samples at a time; the output lags by the filter's half
    length (32 lobes: 4 ms at 8 kHz).  :meth:`flush` returns the tail at the end.
    """

    def __init__(
        self,
        from_rate: int,
        to_rate: int,
        *,
        zero_crossings: int = 32,
        rolloff: float = 0.92,
        kaiser_beta: float = 8.0,
    ) -> None:
        for rate in (from_rate, to_rate):
            if not MIN_RATE <= rate <= MAX_RATE:
                raise ValueError(f"sample rate {rate} Hz is outside {MIN_RATE}..{MAX_RATE} Hz")
        divisor = math.gcd(from_rate, to_rate)
        self._up = to_rate // divisor
        self._down = from_rate // divisor
        cutoff = rolloff * min(1.0, self._up / self._down)  # in units of the input Nyquist
        reach = zero_crossings / cutoff  # filter half-length, in input samples
        self._half = math.ceil(reach)
        phases = np.arange(self._up)[:, None] / self._up
        offsets = np.arange(2 * self._half)[None, :] - (self._half - 1)
        t = phases - offsets  # distance from output position to each input sample
        taper = np.where(
            np.abs(t) < reach,
            np.i0(kaiser_beta * np.sqrt(np.clip(1.0 - (t / reach) ** 2, 0.0, None))),
            0.0,
        ) / np.i0(kaiser_beta)
        taps = cutoff * np.sinc(cutoff * t) * taper
        taps.flags.writeable = False
        self._taps: FloatArray = taps
        self._buffer: FloatArray = np.zeros(self._half - 1)
        self._buffer_start = -(self._half - 1)  # input index of _buffer[0]
        self._received = 0
        self._next_output = 0

    @property
    def delay(self) -> int:
        """Input samples held back before the output can catch up with them."""
        return self._half

    def process(self, pcm: Int16Array) -> Int16Array:
        """Resample the next input samples; return the outputs now complete."""
        return to_int16(self.process_float(pcm.astype(np.float64)))

    def flush(self) -> Int16Array:
        """Return the last outputs, completing the input with silence; then start afresh."""
        return to_int16(self.flush_float())

    def process_float(self, samples: FloatArray) -> FloatArray:
        """:meth:`process` on float samples (any scale)."""
        self._buffer = np.concatenate((self._buffer, samples))
        self._received += len(samples)
        # Output n is complete once input floor(n·down/up) + half has arrived.
        newest = self._received - 1 - self._half
        end = -(-(newest + 1) * self._up // self._down) if newest >= 0 else 0
        return self._produce(max(end, self._next_output))

    def flush_float(self) -> FloatArray:
        """:meth:`flush` on float samples."""
        total = -(-self._received * self._up // self._down)  # ceil(received·up/down)
        self._buffer = np.concatenate((self._buffer, np.zeros(self._half + 1)))
        tail = self._produce(max(total, self._next_output))
        self._buffer = np.zeros(self._half - 1)
        self._buffer_start = -(self._half - 1)
        self._received = self._next_output = 0
        return tail

    def _produce(self, end: int, chunk: int = 4096) -> FloatArray:
        if end <= self._next_output:
            return np.zeros(0)
        width = 2 * self._half
        windows = np.lib.stride_tricks.sliding_window_view(self._buffer, width)
        pieces = []
        for first in range(self._next_output, end, chunk):
            outputs = np.arange(first, min(first + chunk, end), dtype=np.int64)
            position = outputs * self._down
            starts = position // self._up - (self._half - 1) - self._buffer_start
            phases = position % self._up
            pieces.append(np.einsum("ij,ij->i", windows[starts], self._taps[phases]))
        self._next_output = max(end, self._next_output)
        keep_from = self._next_output * self._down // self._up - (self._half - 1)
        drop = max(0, keep_from - self._buffer_start)
        self._buffer = self._buffer[drop:]
        self._buffer_start += drop
        return np.concatenate(pieces) if pieces else np.zeros(0)


@overload
def resample(pcm: Int16Array, from_rate: int, to_rate: int) -> Int16Array: ...
@overload
def resample(pcm: FloatArray, from_rate: int, to_rate: int) -> FloatArray: ...
def resample(pcm: Int16Array | FloatArray, from_rate: int, to_rate: int) -> Int16Array | FloatArray:
    """Resample a whole signal; ``ceil(len·to/from)`` samples out, aligned with the input.

    int16 in gives int16 out (rounded and clipped); float in gives float out.
    """
    if pcm.ndim != 1:
        raise ValueError(f"expected mono samples, got an array of shape {pcm.shape}")
    if from_rate == to_rate:
        return pcm.copy()
    resampler = Resampler(from_rate, to_rate)
    samples = pcm.astype(np.float64)
    out = np.concatenate((resampler.process_float(samples), resampler.flush_float()))
    return to_int16(out) if pcm.dtype == np.int16 else out


def to_int16(samples: FloatArray) -> Int16Array:
    """Round and clip float samples on the 16-bit scale to int16."""
    return np.clip(np.round(samples), -32768, 32767).astype(np.int16)
