"""Prompt audio in and call audio out: WAV prompts to G.711 frames, resampling, recordings.

* :func:`load_prompt` reads a WAV file (8/16/24/32-bit integer PCM, 32/64-bit float,
  G.711; any channel count, mixed down to mono; any common rate), resamples it to
  8 kHz and cuts it into 20 ms G.711 frames, the last one padded with silence.
  Every problem is a :class:`PromptError` naming the file and what is wrong.
* :class:`PromptCache` remembers converted prompts, keyed by path, modification
  time, size and law, within a byte budget, so each file is converted once.
* :func:`resample` and :class:`Resampler` (streaming, for 20 ms frames), from
  :mod:`telephony.rtp.resample`, are re-exported here.
* :func:`silence_frame` and :class:`ComfortNoise` fill gaps in the media stream.
* :class:`RecordingWriter` writes the two directions of a call to a 16-bit WAV as
  they come, mixed to mono or as stereo (caller left, agent right).

File access here is blocking: call these from a worker thread, not the event loop.
"""

from __future__ import annotations

import enum
import math
import os
import struct
import threading
import wave
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO, Final

import numpy as np
import numpy.typing as npt

from telephony.rtp.g711 import SAMPLES_PER_FRAME, Law, codec_for, decode_alaw, decode_ulaw
from telephony.rtp.resample import MAX_RATE, MIN_RATE, Resampler, resample, to_int16

__all__ = [
    "TELEPHONY_RATE",
    "ComfortNoise",
    "PromptCache",
    "PromptError",
    "RecordingLayout",
    "RecordingWriter",
    "Resampler",
    "frames_from_pcm",
    "load_prompt",
    "read_wav",
    "resample",
    "silence_frame",
]

Int16Array = npt.NDArray[np.int16]
FloatArray = npt.NDArray[np.float64]

TELEPHONY_RATE: Final = 8000
#: Amplitude of a 0 dBm0 sine on the 16-bit scale (G.711 µ-law peak is +3.17 dBm0).
_DBM0_AMPLITUDE: Final = 8159 * 4 / 10 ** (3.17 / 20)


class PromptError(Exception):
    """A prompt file that cannot be used: names the file and the problem."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        super().__init__(f"{os.fspath(path)}: {problem}")
        self.path = os.fspath(path)
        self.problem = problem


# ---------------------------------------------------------------------------------------
# WAV input
# ---------------------------------------------------------------------------------------

_WAVE_FORMAT_PCM: Final = 1
_WAVE_FORMAT_FLOAT: Final = 3
_WAVE_FORMAT_ALAW: Final = 6
_WAVE_FORMAT_ULAW: Final = 7
_WAVE_FORMAT_EXTENSIBLE: Final = 0xFFFE
_FORMAT_NAMES: Final = MappingProxyType(
    {
        _WAVE_FORMAT_PCM: "PCM",
        _WAVE_FORMAT_FLOAT: "IEEE float",
        _WAVE_FORMAT_ALAW: "A-law",
        _WAVE_FORMAT_ULAW: "µ-law",
    }
)


@dataclass(frozen=True, slots=True)
class _WavData:
    format: int
    channels: int
    rate: int
    width: int
    data: bytes


def read_wav(path: str | os.PathLike[str], *, max_seconds: float = 600.0) -> tuple[FloatArray, int]:
    """Read a WAV file as mono float samples on the 16-bit scale, and its sample rate."""
    wav = _read_wav_data(path)
    if not MIN_RATE <= wav.rate <= MAX_RATE:
        raise PromptError(path, f"unsupported sample rate {wav.rate} Hz")
    frame_size = wav.channels * wav.width
    frames = len(wav.data) // frame_size
    if frames == 0:
        raise PromptError(path, "contains no audio")
    if frames > max_seconds * wav.rate:
        raise PromptError(
            path, f"is {frames / wav.rate:.0f} s long, over the {max_seconds:.0f} s limit"
        )
    samples = _decode_samples(path, wav, wav.data[: frames * frame_size])
    mono = samples.reshape(frames, wav.channels).mean(axis=1)
    return mono, wav.rate


def _read_wav_data(path: str | os.PathLike[str]) -> _WavData:
    try:
        with wave.open(os.fspath(path), "rb") as reader:
            return _WavData(
                format=_WAVE_FORMAT_PCM,
                channels=reader.getnchannels(),
                rate=reader.getframerate(),
                width=reader.getsampwidth(),
                data=reader.readframes(reader.getnframes()),
            )
    except FileNotFoundError:
        raise PromptError(path, "file not found") from None
    except OSError as error:
        raise PromptError(path, f"cannot be read ({error.strerror or error})") from None
    except (EOFError, struct.error):
        raise PromptError(path, "is truncated inside its WAV header") from None
    except wave.Error as error:
        # Python 3.11's wave reads plain PCM only; float, G.711 and extensible headers
        # (what sox writes for 24/32-bit) are parsed by hand below.
        if not str(error).startswith("unknown format"):
            raise PromptError(path, f"is not a usable WAV file ({error})") from None
    return _read_riff(path)


def _read_riff(path: str | os.PathLike[str]) -> _WavData:
    with open(path, "rb") as stream:
        raw = stream.read()
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise PromptError(path, "is not a RIFF/WAVE file")
    fmt: bytes | None = None
    position = 12
    while position + 8 <= len(raw):
        chunk_id, size = struct.unpack_from("<4sI", raw, position)
        body = raw[position + 8 : position + 8 + size]
        if chunk_id == b"fmt ":
            fmt = body
        elif chunk_id == b"data":
            if fmt is None:
                raise PromptError(path, "has its data chunk before the fmt chunk")
            return _parse_fmt(path, fmt, body)
        position += 8 + size + (size & 1)  # chunks are padded to even length
    raise PromptError(path, "has no data chunk" if fmt else "has no fmt chunk")


def _parse_fmt(path: str | os.PathLike[str], fmt: bytes, data: bytes) -> _WavData:
    if len(fmt) < 16:
        raise PromptError(path, f"has a {len(fmt)}-byte fmt chunk, expected at least 16")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _WAVE_FORMAT_EXTENSIBLE:
        if len(fmt) < 40:
            raise PromptError(path, "has a truncated WAVE_FORMAT_EXTENSIBLE fmt chunk")
        tag = struct.unpack_from("<H", fmt, 24)[0]  # first field of the SubFormat GUID
    if tag not in _FORMAT_NAMES:
        raise PromptError(path, f"uses unsupported WAV encoding {tag:#06x}")
    width = (bits + 7) // 8
    if channels == 0 or width == 0:
        raise PromptError(path, f"declares {channels} channels of {bits}-bit samples")
    return _WavData(format=tag, channels=channels, rate=rate, width=width, data=data)


def _decode_samples(path: str | os.PathLike[str], wav: _WavData, data: bytes) -> FloatArray:
    name = _FORMAT_NAMES[wav.format]
    match (wav.format, wav.width):
        case (1, 1):  # 8-bit PCM is unsigned, centred on 128
            return (np.frombuffer(data, np.uint8).astype(np.float64) - 128.0) * 256.0
        case (1, 2):
            return np.frombuffer(data, "<i2").astype(np.float64)
        case (1, 3):
            octets = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
            value = octets[:, 0] | (octets[:, 1] << 8) | (octets[:, 2] << 16)
            value = np.where(value >= 1 << 23, value - (1 << 24), value)
            return value.astype(np.float64) / 256.0
        case (1, 4):
            return np.frombuffer(data, "<i4").astype(np.float64) / 65536.0
        case (3, 4) | (3, 8):
            dtype = "<f4" if wav.width == 4 else "<f8"
            samples = np.frombuffer(data, dtype).astype(np.float64)
            if not np.all(np.isfinite(samples)):
                raise PromptError(path, "contains non-finite float samples")
            return np.clip(samples, -1.0, 1.0) * 32768.0
        case (6, 1):
            return decode_alaw(data).astype(np.float64)
        case (7, 1):
            return decode_ulaw(data).astype(np.float64)
    raise PromptError(path, f"uses unsupported {8 * wav.width}-bit {name} samples")


# ---------------------------------------------------------------------------------------
# Prompts as G.711 frames
# ---------------------------------------------------------------------------------------


def frames_from_pcm(pcm: Int16Array, law: Law) -> tuple[bytes, ...]:
    """Cut 8 kHz samples into 20 ms G.711 frames; the last one is padded with silence."""
    padding = -len(pcm) % SAMPLES_PER_FRAME
    padded = np.concatenate((pcm.astype(np.int16), np.zeros(padding, np.int16)))
    payload = codec_for(law).encode(padded)
    return tuple(
        payload[start : start + SAMPLES_PER_FRAME]
        for start in range(0, len(payload), SAMPLES_PER_FRAME)
    )


def load_prompt(
    path: str | os.PathLike[str], law: Law, *, max_seconds: float = 600.0
) -> tuple[bytes, ...]:
    """Read a WAV prompt and convert it to 20 ms frames of ``law`` at 8 kHz."""
    samples, rate = read_wav(path, max_seconds=max_seconds)
    at_8k = resample(samples, rate, TELEPHONY_RATE)
    return frames_from_pcm(to_int16(at_8k), law)


@dataclass(frozen=True, slots=True)
class _PromptKey:
    path: str
    mtime_ns: int
    size: int
    law: Law


def _prompt_key(path: str | os.PathLike[str], law: Law) -> _PromptKey:
    """The cache key of the file as it is now (raises OSError if it cannot be read)."""
    resolved = Path(path).resolve()
    status = resolved.stat()
    return _PromptKey(str(resolved), status.st_mtime_ns, status.st_size, law)


class PromptCache:
    """Converted prompts, least recently used dropped first beyond ``max_bytes``.

    A prompt is looked up by its resolved path, modification time, size and law:
    an edited file is converted again, an unchanged one never.  Thread-safe; two
    threads missing on the same prompt at once may both convert it.
    """

    def __init__(self, *, max_bytes: int = 64 * 1024 * 1024, max_seconds: float = 600.0) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self._max_bytes = max_bytes
        self._max_seconds = max_seconds
        self._entries: OrderedDict[_PromptKey, tuple[bytes, ...]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def size_bytes(self) -> int:
        """Audio bytes held."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def cached(self, path: str | os.PathLike[str], law: Law) -> tuple[bytes, ...] | None:
        """The prompt's frames if the file, as it is now, was converted before; else None
        (and `get` says what is wrong with it). Only the file's metadata is read, nothing is
        converted: cheap enough for the event loop, which then needs no thread for a prompt
        played before."""
        try:
            key = _prompt_key(path, law)
        except OSError:
            return None
        return self._hit(key)

    def get(self, path: str | os.PathLike[str], law: Law) -> tuple[bytes, ...]:
        """The prompt at ``path`` as ``law`` frames, converted on first use."""
        try:
            key = _prompt_key(path, law)
        except FileNotFoundError:
            raise PromptError(path, "file not found") from None
        except OSError as error:
            raise PromptError(path, f"cannot be read ({error.strerror or error})") from None
        frames = self._hit(key)
        if frames is not None:
            return frames
        with self._lock:
            self.misses += 1
        frames = load_prompt(Path(key.path), law, max_seconds=self._max_seconds)
        self._store(key, frames)
        return frames

    def _hit(self, key: _PromptKey) -> tuple[bytes, ...] | None:
        with self._lock:
            frames = self._entries.get(key)
            if frames is not None:
                self._entries.move_to_end(key)
                self.hits += 1
            return frames

    def _store(self, key: _PromptKey, frames: tuple[bytes, ...]) -> None:
        size = len(frames) * SAMPLES_PER_FRAME
        if size > self._max_bytes:
            return  # larger than the whole budget: served, not kept
        with self._lock:
            stale = [k for k in self._entries if k.path == key.path and k.law is key.law]
            for old in stale:  # an earlier version of the same file
                self._bytes -= len(self._entries.pop(old)) * SAMPLES_PER_FRAME
            self._entries[key] = frames
            self._bytes += size
            while self._bytes > self._max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= len(evicted) * SAMPLES_PER_FRAME


# ---------------------------------------------------------------------------------------
# Filling gaps
# ---------------------------------------------------------------------------------------


def silence_frame(law: Law) -> bytes:
    """One 20 ms frame of silence in ``law``."""
    return codec_for(law).silence(SAMPLES_PER_FRAME)


class ComfortNoise:
    """Low-level white noise frames, so a listener does not take silence for a dead line.

    The caller passes the random generator (seeded in tests) and the level in dBm0.
    """

    def __init__(self, law: Law, rng: np.random.Generator, *, level_dbm0: float = -60.0) -> None:
        if level_dbm0 > -20.0:
            raise ValueError(f"comfort noise at {level_dbm0} dBm0 is not comfort noise")
        self._codec = codec_for(law)
        self._rng = rng
        self._rms = _DBM0_AMPLITUDE / math.sqrt(2) * 10 ** (level_dbm0 / 20)

    def frame(self) -> bytes:
        """The next 20 ms frame."""
        noise = self._rng.normal(0.0, self._rms, SAMPLES_PER_FRAME)
        return self._codec.encode(to_int16(noise))


# ---------------------------------------------------------------------------------------
# Recording
# ---------------------------------------------------------------------------------------


class RecordingLayout(enum.Enum):
    """How the two directions of a call are laid out in the file."""

    MIXED = "mixed"  # one channel, both directions summed
    STEREO = "stereo"  # caller on the left channel, agent on the right


class RecordingWriter:
    """Writes a call to a 16-bit WAV file a tick at a time, never holding it all.

    Call :meth:`write` once per media tick with each direction's 8 kHz frame, or
    None for a direction that had nothing (lost packet, hold): it is recorded as
    silence so the two directions stay aligned.  The WAV header is brought up to
    date every ``header_refresh_seconds``, so a crash loses at most that much.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        layout: RecordingLayout = RecordingLayout.STEREO,
        sample_rate: int = TELEPHONY_RATE,
        header_refresh_seconds: float = 5.0,
    ) -> None:
        if sample_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {sample_rate}")
        self.path = os.fspath(path)
        self.layout = layout
        self.sample_rate = sample_rate
        self._refresh_every = max(1, int(header_refresh_seconds * sample_rate))
        self._since_refresh = 0
        self._frames_written = 0
        # Both stay open across calls to write(); close() closes them.
        self._file: BinaryIO = open(self.path, "wb")  # noqa: SIM115
        try:
            writer = wave.open(self._file, "wb")  # noqa: SIM115
            writer.setnchannels(2 if layout is RecordingLayout.STEREO else 1)
            writer.setsampwidth(2)
            writer.setframerate(sample_rate)
            writer.writeframes(b"")  # header now, so the file is valid from the start
        except BaseException:
            self._file.close()
            raise
        self._writer: wave.Wave_write | None = writer

    @property
    def duration_seconds(self) -> float:
        """Audio written so far."""
        return self._frames_written / self.sample_rate

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._writer is None

    def write(self, caller: Int16Array | None, agent: Int16Array | None) -> None:
        """Append one tick: each direction's samples, or None for silence."""
        if self._writer is None:
            raise ValueError(f"recording {self.path} is closed")
        for name, frame in (("caller", caller), ("agent", agent)):
            if frame is not None and (frame.dtype != np.int16 or frame.ndim != 1):
                raise TypeError(f"{name} frame must be mono int16, got {frame.dtype} {frame.shape}")
        length = max(
            (len(frame) for frame in (caller, agent) if frame is not None),
            default=SAMPLES_PER_FRAME,
        )
        left, right = _padded(caller, length), _padded(agent, length)
        if self.layout is RecordingLayout.STEREO:
            samples = np.empty(2 * length, np.int16)
            samples[0::2], samples[1::2] = left, right
        else:
            mixed = left.astype(np.int32) + right.astype(np.int32)
            samples = np.clip(mixed, -32768, 32767).astype(np.int16)
        self._writer.writeframesraw(samples.astype("<i2").tobytes())
        self._frames_written += length
        self._since_refresh += length
        if self._since_refresh >= self._refresh_every:
            self._since_refresh = 0
            self._writer.writeframes(b"")  # rewrites the header's lengths (wave does it)
            self._file.flush()

    def close(self) -> None:
        """Finish the header and close the file; closing twice is harmless."""
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        try:
            writer.close()
        finally:
            self._file.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _padded(frame: Int16Array | None, length: int) -> Int16Array:
    if frame is None:
        return np.zeros(length, np.int16)
    if len(frame) == length:
        return frame
    return np.concatenate((frame, np.zeros(length - len(frame), np.int16)))
