"""What the IVR runner needs from the layers around it, as structural protocols.

The runner never imports telephony, the speech service or the CRM bridge: the composition root
hands it objects that have these shapes. ``telephony.media.calls.MediaCall`` is an
:class:`IvrCall` as it stands; the speech layer's service is a :class:`SpeechRecognizer` (its
types are the speech layer's own, so it needs nothing from here).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from speech.recognizer import RecognitionResult

__all__ = [
    "CustomerLookup",
    "DigitsCollected",
    "IvrCall",
    "PcmFrame",
    "PlaybackEnded",
    "PromptRenderer",
    "SpeechRecognizer",
    "SpeechSession",
]

#: 20 ms of the caller's audio: 160 samples of 8 kHz signed 16-bit PCM.
PcmFrame = npt.NDArray[np.int16]


class PlaybackEnded(Protocol):
    """How a playback ended: ``completed``, ``barged_in`` (a key) or ``stopped``."""

    @property
    def reason(self) -> str: ...


class DigitsCollected(Protocol):
    """Keys collected by :meth:`IvrCall.collect_digits` (empty when none came in time)."""

    @property
    def digits(self) -> str: ...


class IvrCall(Protocol):
    """The media of one answered call, as the IVR drives it.

    Keys pressed while nothing collects them are kept by the call (type-ahead) and returned by
    the next ``collect_digits``. A prompt played with ``barge_in`` stops at the first key.
    Once the caller has hung up, ``ended`` is true and waiting operations raise ``RuntimeError``.
    """

    @property
    def call_id(self) -> str: ...

    @property
    def ended(self) -> bool: ...

    async def wait_ended(self) -> None: ...

    async def play(self, prompts: Sequence[str], *, barge_in: bool) -> PlaybackEnded: ...

    def stop_playback(self) -> None: ...

    async def collect_digits(
        self,
        max_digits: int,
        *,
        terminator: str | None,
        first_timeout: float,
        inter_digit_timeout: float,
    ) -> DigitsCollected: ...

    def listen(self) -> AsyncIterator[PcmFrame]:
        """The caller's audio from now on, until the call ends or the iterator is closed."""
        ...

    async def record(self, path: str) -> str:
        """Start recording the call to the WAV file ``path``; returns the recording id."""
        ...

    def stop_recording(self) -> float | None:
        """Stop the recording; its length in seconds, or None if none was running (or the
        call already ended, which closes its recording)."""
        ...

    def hangup(self) -> None: ...


class PromptRenderer(Protocol):
    """Text-to-speech for prompts written as text."""

    async def render(self, text: str, *, language: str) -> Path:
        """A WAV file that says ``text`` in ``language`` (rendered once and cached, ideally)."""
        ...


class SpeechSession(Protocol):
    """One call's recognizer, used for one question at a time and kept for the whole call."""

    async def recognize(
        self,
        frames: AsyncIterator[PcmFrame],
        *,
        grammar: tuple[str, ...] | None,
        language: str,
        no_input_timeout: float,
        max_speech_seconds: float,
        prompt_playing: bool,
        on_speech_started: Callable[[], None],
    ) -> RecognitionResult | None:
        """Listen to ``frames`` (end-pointing them) for one answer.

        ``grammar`` limits recognition to these phrases (free speech with ``None``).
        ``language`` is the tree's current language (the caller's choice, else its default):
        the speech layer recognises with that language's model where one is configured. With
        ``prompt_playing`` the no-input timeout starts at :meth:`prompt_ended`, otherwise now.
        ``on_speech_started`` is called once when the caller starts speaking (the runner stops
        a prompt that allows barge-in). Returns the final result (an empty one when speech was
        heard but nothing recognized), or None when the caller said nothing in time. The
        runner cancels the call when the question no longer needs an answer.
        """
        ...

    def prompt_ended(self) -> None:
        """The prompt played over the current recognition has finished."""
        ...

    async def close(self) -> None: ...


class SpeechRecognizer(Protocol):
    """The speech layer: one :class:`SpeechSession` per call, opened on first use."""

    async def open_session(self, *, call_id: str) -> SpeechSession: ...


class CustomerLookup(Protocol):
    """The CRM bridge's look-up of a customer record."""

    async def lookup(self, key: str, fields: tuple[str, ...]) -> Mapping[str, str] | None:
        """The record's ``fields`` (all it has when empty) for ``key``, or None if there is no
        record. May take long: the runner stops waiting at the tree's timeout."""
        ...
