"""Turning a ``Play`` action's prompt parts into WAV files the call can play.

Parts written as files are looked up in the folder the tree names (the configuration's prompts
folder); parts written as text go through the :class:`~ivr.ports.PromptRenderer` (text-to-speech).
The voicemail beep is a tone written once by :func:`write_tone`. :class:`SpokenPrompts` is the
renderer over the speech layer's text-to-speech, with a voice per language.
"""

from __future__ import annotations

import math
import wave
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import numpy as np

from ivr.actions import PromptPart
from ivr.ports import PromptRenderer
from speech.tts import PromptRenderer as TextToSpeech
from speech.tts import TtsVoice

__all__ = ["SpokenPrompts", "prompt_files", "write_tone"]

#: Sample rate of generated tones: the telephone rate, so the call plays them unconverted.
TONE_RATE = 8000


async def prompt_files(
    parts: Sequence[PromptPart], *, language: str, renderer: PromptRenderer
) -> list[str]:
    """The WAV file of each part, in order; text that renders to nothing is skipped."""
    files: list[str] = []
    for part in parts:
        if part.text is not None:
            if not part.text.strip():  # a template whose variables were all empty
                continue
            files.append(str(await renderer.render(part.text, language=language)))
        else:
            assert part.file is not None
            folder = Path(part.folder) if part.folder is not None else Path()
            files.append(str(folder / part.file))
    return files


def write_tone(
    path: Path, *, frequency_hz: float = 1000.0, seconds: float = 0.5, level: float = 0.3
) -> Path:
    """Write a sine tone as 8 kHz 16-bit mono WAV (blocking file I/O), with 5 ms ramps so it
    starts and stops without a click; returns ``path``."""
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"a tone lasts a positive number of seconds, not {seconds}")
    if not 0 < frequency_hz < TONE_RATE / 2:
        raise ValueError(f"{frequency_hz} Hz cannot be carried at {TONE_RATE} Hz")
    count = round(seconds * TONE_RATE)
    times = np.arange(count) / TONE_RATE
    samples = np.sin(2 * math.pi * frequency_hz * times) * level * 32767
    ramp = min(count // 2, TONE_RATE // 200)
    if ramp:
        envelope = np.linspace(0.0, 1.0, ramp)
        samples[:ramp] *= envelope
        samples[count - ramp :] *= envelope[::-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(TONE_RATE)
        writer.writeframes(samples.astype("<i2").tobytes())
    return path


class SpokenPrompts:
    """A :class:`~ivr.ports.PromptRenderer` over the speech layer's text-to-speech.

    A tree's language code picks the voice from ``voices``; a language without an entry is
    spoken by the espeak-ng voice of the same name (``en``, ``es``, ``pt-br``...).
    """

    def __init__(self, tts: TextToSpeech, voices: Mapping[str, TtsVoice] | None = None) -> None:
        self._tts = tts
        self._voices = MappingProxyType(dict(voices or {}))

    def voice_for(self, language: str) -> TtsVoice:
        return self._voices.get(language) or TtsVoice(voice=language.lower())

    async def render(self, text: str, *, language: str) -> Path:
        return await self._tts.render(text, self.voice_for(language))
