"""Taking a caller's frames in for the listener (:mod:`speech.listener`).

- :class:`FrameClock` dates frames by their position in the stream (20 ms apart) and time
  without frames by the loop's clock.
- :class:`FrameInbox` holds the frames between the reader task and the end-pointer; bounded,
  oldest dropped.
- :func:`read_frames` is the reader task (the only waiter on the source), :func:`stop_reader`
  cancels it and waits until the source is closed.
- :func:`task_value` and :func:`log_task_failure` read the outcome of the listener's tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from speech.vad import FRAME_SECONDS, Frame

__all__ = [
    "AUDIO_GAP_SECONDS",
    "FrameClock",
    "FrameInbox",
    "log_task_failure",
    "read_frames",
    "stop_reader",
    "task_value",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: A frame taken this much later than expected follows a gap in the caller's audio rather than
#: a busy loop: once the first packet came the jitter buffer hands over a frame every 20 ms.
AUDIO_GAP_SECONDS = 0.25


@dataclass(slots=True)
class FrameClock:
    """Dates frames by stream position (a delay shorter than ``AUDIO_GAP_SECONDS`` does not
    stretch the audio), and time without frames by the loop's clock."""

    loop_time: Callable[[], float]
    last_frame: float | None = None
    last_taken: float = 0.0

    def now(self) -> float:
        wall = self.loop_time()
        if self.last_frame is None:
            return wall
        return self.last_frame + (wall - self.last_taken)

    def frame(self) -> float:
        wall = self.loop_time()
        if self.last_frame is None:
            date = wall
        else:
            waited = wall - self.last_taken
            step = FRAME_SECONDS if waited <= FRAME_SECONDS + AUDIO_GAP_SECONDS else waited
            date = self.last_frame + step
        self.last_frame, self.last_taken = date, wall
        return date


@dataclass(slots=True)
class FrameInbox:
    """Frames between the reader task and the end-pointer; bounded, oldest dropped."""

    capacity: int
    frames: deque[Frame] = field(default_factory=deque)
    dropped: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def put(self, frame: Frame) -> None:
        if len(self.frames) >= self.capacity:
            self.frames.popleft()
            self.dropped += 1
        self.frames.append(frame)
        self.wake.set()

    async def wait(self, seconds: float | None) -> None:
        """Until a frame is there, something else wakes the inbox, or ``seconds`` pass."""
        if self.frames:
            return
        self.wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.wake.wait()


async def read_frames(frames: AsyncIterator[Frame], inbox: FrameInbox) -> None:
    """The reader task: the only waiter on the source (cancelling it closes the source)."""
    try:
        async for frame in frames:
            inbox.put(frame)
    finally:
        closer = getattr(frames, "aclose", None)
        if closer is not None:
            with contextlib.suppress(RuntimeError):
                await closer()


async def stop_reader(reader: asyncio.Task[None]) -> None:
    """Cancel the reader and wait until it has ended: the source is closed then."""
    reader.cancel()
    await asyncio.wait([reader])


def task_value(task: asyncio.Task[_T | None]) -> _T | None:
    """The finished task's result; None if it was cancelled or failed."""
    if task.cancelled() or task.exception() is not None:
        return None
    return task.result()


def log_task_failure(task: asyncio.Task[Any]) -> None:
    """Done callback for the speech engine's work: its failure is logged, never raised."""
    if not task.cancelled() and task.exception() is not None:
        logger.warning("speech engine work failed", exc_info=task.exception())
