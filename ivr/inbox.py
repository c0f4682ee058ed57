"""The IVR runner's inbox: everything that happens to a call, as items taken in arrival order.

Session inputs (``ivr.inputs``) go in as they are; the items below are the runner's own.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from ivr.inputs import DigitsReceived, NoInput, NoMatch, SpeechRecognized
from ivr.inputs import IvrInput as SessionInput

__all__ = [
    "CallEnded",
    "Inbox",
    "InboxItem",
    "RecordingDue",
    "RecordingStarted",
    "SpeechHeard",
    "SpeechStarted",
    "TimerDue",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TimerDue:
    """The session's deadline armed for ``deadline`` (loop time) has come."""

    deadline: float


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The caller started speaking during recognition number ``generation``."""

    generation: int


@dataclass(frozen=True, slots=True)
class SpeechHeard:
    """Recognition number ``generation`` ended with this answer."""

    generation: int
    answer: SpeechRecognized | NoMatch | NoInput


@dataclass(frozen=True, slots=True)
class RecordingStarted:
    """The voicemail of ``record_id`` is being recorded since ``started`` (loop time)."""

    record_id: int
    recording_id: str
    started: float
    max_seconds: float


@dataclass(frozen=True, slots=True)
class RecordingDue:
    """The voicemail of ``record_id`` reached its maximum length."""

    record_id: int


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The call's media ended (the caller hung up, or the call was ended)."""


InboxItem = (
    SessionInput
    | TimerDue
    | SpeechStarted
    | SpeechHeard
    | RecordingStarted
    | RecordingDue
    | CallEnded
)


class Inbox:
    """Items for the runner's loop, in arrival order.

    Bounded where a caller can fill it: at most ``max_digits`` keys wait; more are dropped and
    logged (a flood of keys, not a person). Other items are at most one per operation in flight.
    """

    def __init__(self, call_id: str, *, max_digits: int) -> None:
        if max_digits < 1:
            raise ValueError(f"max_digits must be at least 1, got {max_digits}")
        self._call_id = call_id
        self._items: deque[InboxItem] = deque()
        self._ready = asyncio.Event()
        self._max_digits = max_digits
        self._digits = 0

    def __len__(self) -> int:
        return len(self._items)

    def post(self, item: InboxItem) -> None:
        if isinstance(item, DigitsReceived):
            if self._digits >= self._max_digits:
                logger.warning(
                    "call %s: key %s dropped, %d keys already waiting",
                    self._call_id,
                    item.digits,
                    self._digits,
                )
                return
            self._digits += 1
        self._items.append(item)
        self._ready.set()

    async def get(self, *, within: float) -> InboxItem | None:
        """The next item, or None when none came within ``within`` seconds."""
        if not self._items:
            self._ready.clear()
            try:
                async with asyncio.timeout(within):
                    await self._ready.wait()
            except TimeoutError:
                return None
        item = self._items.popleft()
        if isinstance(item, DigitsReceived):
            self._digits -= 1
        return item
