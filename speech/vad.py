"""Voice activity detection on 20 ms frames of 8 kHz telephone audio.

A thin wrapper over WebRTC's VAD (the ``webrtcvad`` module from ``webrtcvad-wheels``). It classifies
one frame at a time, so it runs straight off a call's decoded G.711 audio (RFC 3551 §4.5.14: 8 kHz,
one channel, 20 ms packets by default). The classifier keeps no history beyond WebRTC's own
internal noise estimate, which is why one :class:`VoiceActivityDetector` belongs to one call.

Per-frame cost is one C call (about a microsecond); the wrapper adds no allocation for ``bytes``
frames and a zero-copy view for contiguous numpy frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, TypeAlias

import numpy as np
import numpy.typing as npt
import webrtcvad

__all__ = [
    "DEFAULT_AGGRESSIVENESS",
    "DEFAULT_WARMUP_FRAMES",
    "FRAME_BYTES",
    "FRAME_SAMPLES",
    "FRAME_SECONDS",
    "SAMPLE_RATE_HZ",
    "Frame",
    "FrameSizeError",
    "PcmFramer",
    "VoiceActivityDetector",
    "iter_frames",
    "vad_overhang_seconds",
]

SAMPLE_RATE_HZ: Final = 8000
"""Sample rate of narrowband telephone audio (G.711, RFC 3551 §4.5.14), in hertz."""

FRAME_SECONDS: Final = 0.020
"""Duration of one frame, in seconds: the default G.711 packetisation time (RFC 3551 §4.5.14)."""

FRAME_SAMPLES: Final = 160
"""Samples in one 20 ms frame at 8 kHz."""

FRAME_BYTES: Final = FRAME_SAMPLES * 2
"""Bytes in one 20 ms frame of signed 16-bit native-endian linear PCM."""

DEFAULT_AGGRESSIVENESS: Final = 2
"""WebRTC VAD mode for telephone audio: 0 accepts the most as speech, 3 the least. Mode 2 keeps
line noise and comfort noise out of speech while still catching soft onsets after G.711."""

DEFAULT_WARMUP_FRAMES: Final = 10
"""Frames (200 ms) after creation whose decisions are not trusted: WebRTC starts from fixed noise
estimates and marks the first 4 to 8 frames voiced even on silence or steady line noise, which would
otherwise stop the greeting prompt as a false barge-in."""

_MIN_AGGRESSIVENESS: Final = 0
_MAX_AGGRESSIVENESS: Final = 3

# WebRTC keeps marking frames voiced for a while after speech stops (its own overhang). Shortest
# overhang measured on 20 ms frames of G.711 telephone-band speech, per mode 0..3; mode 3 sometimes
# clips the tail instead, so nothing is assumed for it.
_OVERHANG_SECONDS: Final = (0.08, 0.08, 0.06, 0.0)

Frame: TypeAlias = bytes | bytearray | memoryview | npt.NDArray[np.int16]
"""One 20 ms frame: 320 bytes of int16 PCM, or a numpy array of 160 int16 samples."""


class FrameSizeError(ValueError):
    """A frame handed to the VAD is not exactly 20 ms of 8 kHz int16 audio."""

    def __init__(self, *, got: int, unit: str) -> None:
        expected = FRAME_BYTES if unit == "bytes" else FRAME_SAMPLES
        super().__init__(
            f"a VAD frame must be 20 ms of 8 kHz int16 PCM ({expected} {unit}), got {got} {unit}"
        )
        self.got = got
        self.expected = expected
        self.unit = unit


class VoiceActivityDetector:
    """Classifies 20 ms frames of 8 kHz int16 PCM as voiced or not.

    One instance per call, fed every frame from answer on: WebRTC adapts its noise floor to the
    audio it has seen, and its first ``warmup_frames`` decisions are reported as unvoiced (the
    frames still train the noise model).
    """

    __slots__ = ("_aggressiveness", "_vad", "_warmup_left")

    def __init__(
        self,
        aggressiveness: int = DEFAULT_AGGRESSIVENESS,
        *,
        warmup_frames: int = DEFAULT_WARMUP_FRAMES,
    ) -> None:
        _check_aggressiveness(aggressiveness)
        if warmup_frames < 0:
            raise ValueError(f"warmup_frames must be >= 0, got {warmup_frames}")
        self._aggressiveness = aggressiveness
        self._vad = webrtcvad.Vad(aggressiveness)
        self._warmup_left = warmup_frames

    @property
    def aggressiveness(self) -> int:
        """WebRTC VAD mode, 0 (least aggressive at filtering out non-speech) to 3 (most)."""
        return self._aggressiveness

    def set_aggressiveness(self, aggressiveness: int) -> None:
        """Change the mode between prompts without losing the learned noise floor."""
        _check_aggressiveness(aggressiveness)
        self._vad.set_mode(aggressiveness)
        self._aggressiveness = aggressiveness

    def is_voiced(self, frame: Frame) -> bool:
        """Return whether ``frame`` (exactly 20 ms of 8 kHz int16 PCM) contains speech.

        Raises :class:`FrameSizeError` when the frame is not 160 samples / 320 bytes.
        """
        buffer: bytes | bytearray | memoryview
        if isinstance(frame, np.ndarray):
            buffer = _ndarray_view(frame)
        elif isinstance(frame, memoryview):
            # A memoryview of another item size counts items, not bytes.
            if frame.nbytes != FRAME_BYTES:
                raise FrameSizeError(got=frame.nbytes, unit="bytes")
            buffer = frame if frame.format == "B" else frame.cast("B")
        else:
            if len(frame) != FRAME_BYTES:
                raise FrameSizeError(got=len(frame), unit="bytes")
            buffer = frame
        voiced = bool(self._vad.is_speech(buffer, SAMPLE_RATE_HZ, FRAME_SAMPLES))
        if self._warmup_left:
            self._warmup_left -= 1
            return False
        return voiced


class PcmFramer:
    """Regroups PCM arriving in any chunk size (e.g. 30 ms RTP packets) into 20 ms frames.

    Bounded: it holds at most one partial frame (under 320 bytes) between pushes.
    """

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = bytearray()

    @property
    def pending_bytes(self) -> int:
        """Bytes held back until the next push completes a frame."""
        return len(self._pending)

    def push(self, pcm: bytes | bytearray | memoryview) -> list[bytes]:
        """Append ``pcm`` and return every complete 20 ms frame now available, oldest first."""
        if not self._pending and len(pcm) == FRAME_BYTES:
            # The common case (20 ms RTP packets): no copy into the staging buffer.
            return [bytes(pcm)]
        self._pending += pcm
        usable = len(self._pending) - len(self._pending) % FRAME_BYTES
        frames = [bytes(self._pending[i : i + FRAME_BYTES]) for i in range(0, usable, FRAME_BYTES)]
        del self._pending[:usable]
        return frames

    def reset(self) -> None:
        """Drop a held partial frame (e.g. when the call's media restarts)."""
        self._pending.clear()


def iter_frames(pcm: bytes) -> Iterator[bytes]:
    """Yield consecutive 20 ms frames of ``pcm``; a trailing partial frame is dropped."""
    for start in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES):
        yield pcm[start : start + FRAME_BYTES]


def vad_overhang_seconds(aggressiveness: int) -> float:
    """How long, at least, WebRTC keeps reporting voiced frames after speech ends, in seconds.

    The end-pointer subtracts it so that its hangover counts from the real end of speech.
    """
    _check_aggressiveness(aggressiveness)
    return _OVERHANG_SECONDS[aggressiveness]


def _ndarray_view(frame: npt.NDArray[np.int16]) -> memoryview:
    if frame.dtype.kind != "i" or frame.dtype.itemsize != 2 or frame.ndim != 1:
        raise TypeError(
            f"a VAD frame array must be one-dimensional int16, got {frame.ndim}-D {frame.dtype}"
        )
    if frame.shape[0] != FRAME_SAMPLES:
        raise FrameSizeError(got=int(frame.shape[0]), unit="samples")
    if not frame.flags.c_contiguous or frame.dtype.byteorder == ">":
        frame = np.ascontiguousarray(frame, dtype=np.dtype(np.int16).newbyteorder("="))
    return frame.data.cast("B")


def _check_aggressiveness(aggressiveness: int) -> None:
    if not _MIN_AGGRESSIVENESS <= aggressiveness <= _MAX_AGGRESSIVENESS:
        raise ValueError(
            f"VAD aggressiveness must be {_MIN_AGGRESSIVENESS}..{_MAX_AGGRESSIVENESS}, "
            f"got {aggressiveness}"
        )
