"""What a leg plays: a sequence of prompts as 20 ms G.711 frames, once or looped (music on hold).

A `Playback` is a cursor over frames already converted to the leg's law (see
`telephony.rtp.audio.PromptCache`); the engine asks it for one frame per tick. It does no timing
of its own: the engine's tick is the clock, so every playing leg advances in step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from telephony.rtp.audio import ComfortNoise, silence_frame
from telephony.rtp.g711 import Law

Frames = tuple[bytes, ...]

_NOISE_FRAMES = 50  # one second of distinct frames, played in turn


def comfort_noise_frames(law: Law, level_dbm0: float, seed: int) -> Frames:
    """Frames of low-level noise to send in place of silence (made once, played in turn)."""
    noise = ComfortNoise(law, np.random.default_rng(seed), level_dbm0=level_dbm0)
    return tuple(noise.frame() for _ in range(_NOISE_FRAMES))


def silence(law: Law, seconds: float) -> Frames:
    """`seconds` of silence as frames (a pause between prompts), rounded to whole frames."""
    if seconds < 0:
        raise ValueError(f"a pause cannot be negative ({seconds} s)")
    return (silence_frame(law),) * round(seconds / 0.020)


@dataclass(slots=True)
class Playback:
    """A cursor over prompts; `next_frame` returns None once it has run out (never when looping)."""

    playback_id: int
    prompts: Sequence[Frames]
    barge_in: bool = False
    """Whether a key press (or a speech start reported by the layer above) stops it."""
    loop: bool = False
    """Start again from the first prompt at the end (music on hold)."""
    frames_played: int = 0
    _prompt: int = field(default=0, repr=False)
    _frame: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.loop and not any(self.prompts):
            raise ValueError("a looping playback needs at least one frame")

    def next_frame(self) -> bytes | None:
        prompts = self.prompts
        while self._prompt < len(prompts):
            frames = prompts[self._prompt]
            if self._frame < len(frames):
                frame = frames[self._frame]
                self._frame += 1
                self.frames_played += 1
                return frame
            self._prompt += 1
            self._frame = 0
            if self._prompt == len(prompts) and self.loop:
                self._prompt = 0
        return None

    @property
    def played_seconds(self) -> float:
        return self.frames_played * 0.020
