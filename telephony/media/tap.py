"""The audio tap: a leg's received audio as 20 ms linear PCM frames, for the speech layer.

The engine decodes the leg's jitter-buffered audio once per tick and appends the frame to every
tap of the leg. A tap is bounded: when its reader falls behind by `capacity` frames the oldest
frame is dropped and counted in `overflow`, so a slow recogniser costs audio, never memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

Pcm = npt.NDArray[np.int16]


class AudioTap:
    """A bounded queue of 8 kHz int16 frames; `wakeup` (if set) runs after frames are added."""

    def __init__(self, *, capacity: int = 50) -> None:
        if capacity < 1:
            raise ValueError("a tap holds at least one frame")
        self._frames: deque[Pcm] = deque(maxlen=capacity)
        self.capacity = capacity
        self.overflow = 0
        self.closed = False
        self.wakeup: Callable[[], None] | None = None

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, frame: Pcm) -> None:
        if self.closed:
            return
        if len(self._frames) == self.capacity:
            self.overflow += 1
        self._frames.append(frame)

    def pop(self) -> Pcm | None:
        """The oldest frame not yet read, or None."""
        return self._frames.popleft() if self._frames else None

    def close(self) -> None:
        """No more frames will come (the tap was removed or the leg ended)."""
        self.closed = True
