"""Telephone-quality test audio generated with espeak-ng and sox.

Every clip goes the way a caller's voice reaches the server: speech (espeak-ng) padded with
silence, optionally mixed with white line noise, band-limited to 300-3400 Hz at 8 kHz, then encoded
to G.711 µ-law and decoded back to 16-bit PCM. Where the speech really begins and ends is measured
on the clean band-limited signal before noise and coding, so tests compare the end-pointer with
the truth rather than with the padding they asked for; in noisy clips, speech counts from where it
rises above the noise.
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

SAMPLE_RATE_HZ = 8000
FRAME_SECONDS = 0.020
FRAME_BYTES = 320

# Speech energy threshold for the ground truth, in 10 ms windows: 45 dB under the loudest window,
# but never below -60 dBFS (the µ-law idle-channel floor is near -78 dBFS), nor below the level of
# the mixed-in noise plus 3 dB (speech buried in the noise cannot be heard by any detector).
_TRUTH_BELOW_PEAK_DB = 45.0
_TRUTH_FLOOR_DBFS = -60.0
_TRUTH_ABOVE_NOISE_DB = 3.0
_TRUTH_WINDOW = 80


@dataclass(frozen=True, slots=True)
class Clip:
    """8 kHz int16 PCM after G.711, with where the speech really is (``None`` if there is none)."""

    name: str
    pcm: bytes
    speech_start: float | None
    speech_end: float | None

    @property
    def duration(self) -> float:
        return len(self.pcm) / 2 / SAMPLE_RATE_HZ

    def frames(self) -> list[tuple[float, bytes]]:
        """``(now, frame)`` per 20 ms frame, ``now`` being the time the frame has fully arrived."""
        count = len(self.pcm) // FRAME_BYTES
        return [
            ((index + 1) * FRAME_SECONDS, self.pcm[index * FRAME_BYTES : (index + 1) * FRAME_BYTES])
            for index in range(count)
        ]

    def samples(self) -> npt.NDArray[np.int16]:
        return np.frombuffer(self.pcm, dtype=np.int16)


class SpeechAudio:
    """Generates clips into a directory on first use and returns them from memory afterwards."""

    def __init__(self, directory: Path) -> None:
        for tool in ("espeak-ng", "sox"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"{tool} is needed to generate the speech test audio")
        self._directory = directory
        self._clips: dict[tuple[object, ...], Clip] = {}

    def speech(
        self,
        text: str,
        *,
        voice: str = "en-us",
        lead: float = 1.0,
        trail: float = 2.0,
        noise: float = 0.0,
    ) -> Clip:
        """``text`` spoken by ``voice`` after ``lead`` s of silence, then ``trail`` s of silence.

        ``noise`` is the amplitude (0..1 of full scale, before band-limiting) of white noise
        mixed in over the whole clip; 0.03 is about -45 dBFS after band-limiting.
        """
        key: tuple[object, ...] = ("speech", text, voice, lead, trail, noise)
        if key not in self._clips:
            name = f"speech{len(self._clips)}"
            raw = self._path(f"{name}_espeak.wav")
            _run(["espeak-ng", "-v", voice, "-w", str(raw), text])
            clean = self._path(f"{name}_clean.wav")
            _run(
                [
                    *("sox", "-R", str(raw), "-b", "16", str(clean)),
                    *("remix", "1", "rate", str(SAMPLE_RATE_HZ), "sinc", "300-3400"),
                    *("pad", str(lead), str(trail)),
                ]
            )
            self._clips[key] = self._finish(name, clean, noise, has_speech=True)
        return self._clips[key]

    def silence(self, seconds: float, *, noise: float = 0.0) -> Clip:
        """``seconds`` of idle line, with white noise of amplitude ``noise`` if not 0."""
        key: tuple[object, ...] = ("silence", seconds, noise)
        if key not in self._clips:
            name = f"silence{len(self._clips)}"
            clean = self._path(f"{name}_clean.wav")
            _run(
                [
                    *("sox", "-R", "-n", "-r", str(SAMPLE_RATE_HZ), "-c", "1", "-b", "16"),
                    *(str(clean), "trim", "0", str(seconds)),
                ]
            )
            self._clips[key] = self._finish(name, clean, noise, has_speech=False)
        return self._clips[key]

    def _finish(self, name: str, clean: Path, noise: float, *, has_speech: bool) -> Clip:
        line = clean
        clean_samples = _read_wav(clean)
        floor_dbfs = _TRUTH_FLOOR_DBFS
        if noise:
            seconds = len(clean_samples) / SAMPLE_RATE_HZ
            noise_wav = self._path(f"{name}_noise.wav")
            _run(
                [
                    *("sox", "-R", "-n", "-r", str(SAMPLE_RATE_HZ), "-c", "1", "-b", "16"),
                    *(str(noise_wav), "synth", f"{seconds:.4f}", "whitenoise", "vol", str(noise)),
                    *("sinc", "300-3400"),
                ]
            )
            # Speech counts where it is louder than the line noise it is mixed with.
            floor_dbfs = max(floor_dbfs, _level_dbfs(_read_wav(noise_wav)) + _TRUTH_ABOVE_NOISE_DB)
            line = self._path(f"{name}_noisy.wav")
            _run(["sox", "-R", "-m", "-v", "1", str(clean), "-v", "1", str(noise_wav), str(line)])
        # G.711 µ-law there and back, as on an RTP leg (RFC 3551 §4.5.14, PCMU).
        ulaw = self._path(f"{name}_pcmu.wav")
        _run(["sox", "-R", str(line), "-e", "u-law", str(ulaw)])
        decoded = self._path(f"{name}.wav")
        _run(["sox", "-R", str(ulaw), "-e", "signed-integer", "-b", "16", str(decoded)])
        pcm = _read_wav(decoded).tobytes()
        if not has_speech:
            return Clip(name=name, pcm=pcm, speech_start=None, speech_end=None)
        start, end = _speech_bounds(clean_samples, floor_dbfs)
        return Clip(name=name, pcm=pcm, speech_start=start, speech_end=end)

    def _path(self, filename: str) -> Path:
        return self._directory / filename


def _run(command: list[str]) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=60)


def _read_wav(path: Path) -> npt.NDArray[np.int16]:
    with wave.open(str(path), "rb") as wav:
        if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (SAMPLE_RATE_HZ, 1, 2):
            raise ValueError(f"{path.name} is not 8 kHz mono 16-bit")
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)


def _level_dbfs(samples: npt.NDArray[np.int16]) -> float:
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    return 20 * float(np.log10(rms / 32768 + 1e-12))


def _speech_bounds(samples: npt.NDArray[np.int16], floor_dbfs: float) -> tuple[float, float]:
    usable = len(samples) // _TRUTH_WINDOW * _TRUTH_WINDOW
    windows = samples[:usable].astype(np.float64).reshape(-1, _TRUTH_WINDOW)
    level = 20 * np.log10(np.sqrt((windows**2).mean(axis=1)) / 32768 + 1e-12)
    threshold = max(float(level.max()) - _TRUTH_BELOW_PEAK_DB, floor_dbfs)
    active = np.nonzero(level > threshold)[0]
    window_seconds = _TRUTH_WINDOW / SAMPLE_RATE_HZ
    return float(active[0]) * window_seconds, float(active[-1] + 1) * window_seconds
