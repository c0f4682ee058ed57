"""Listening to the caller's speech for the IVR runner: one recognition per question.

Each ``ListenSpeech`` starts a recognition with a new generation number; results and speech
starts carry it, so that what a cancelled recognition still reports is recognized as stale.
Without a recognizer (none configured, or it failed earlier in the call: it is not used again),
the caller is taken to say nothing: keys still work, and silence is reported after the question's
no-input timeout, as a recognizer would.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ivr.actions import ListenSpeech
from ivr.inbox import Inbox, SpeechHeard, SpeechStarted
from ivr.inputs import NoInput, NoMatch, SpeechRecognized
from ivr.ports import IvrCall, SpeechRecognizer, SpeechSession
from speech.recognizer import RecognitionResult

__all__ = ["PromptState", "SpeechListener", "answer_for"]

logger = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


@dataclass(slots=True)
class PromptState:
    """Whether one of the call's prompts is playing: the runner sets it, the listener reads it
    (a shared flag rather than a callback into the runner, which would make a cycle)."""

    playing: bool = False


def answer_for(result: RecognitionResult | None) -> SpeechRecognized | NoMatch | NoInput:
    """The session input for a recognition's outcome (None: the caller said nothing)."""
    if result is None:
        return NoInput()
    if result.is_empty:
        return NoMatch()
    return SpeechRecognized(
        text=result.text,
        confidence=result.confidence,
        alternatives=tuple((h.text, h.confidence) for h in result.alternatives),
    )


class SpeechListener:
    """The recognitions of one call, one at a time, on one recognizer session."""

    def __init__(
        self,
        call: IvrCall,
        recognizer: SpeechRecognizer | None,
        inbox: Inbox,
        spawn: Spawn,
        prompt: PromptState,
    ) -> None:
        self._call = call
        self._recognizer = recognizer
        self._inbox = inbox
        self._spawn = spawn
        self._prompt = prompt
        self._session: SpeechSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._generation = 0
        self._recognizing = False
        self._broken = False
        self._prompt_over = asyncio.Event()

    def is_current(self, generation: int) -> bool:
        return self._task is not None and generation == self._generation

    def start(self, action: ListenSpeech) -> None:
        self.stop()
        self._generation += 1
        self._prompt_over = asyncio.Event()
        if not self._prompt.playing:
            self._prompt_over.set()
        if self._recognizer is None or self._broken:
            self._task = self._spawn(self._hear_nothing(self._generation, action))
        else:
            self._task = self._spawn(self._recognize(self._generation, action))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
            self._generation += 1
        self._recognizing = False

    def prompt_ended(self) -> None:
        self._prompt_over.set()
        if self._recognizing and self._session is not None:
            self._session.prompt_ended()

    async def close(self, within: float) -> None:
        self.stop()
        session, self._session = self._session, None
        if session is None:
            return
        try:
            async with asyncio.timeout(within):
                await session.close()
        except Exception:  # the call is over either way; the speech layer logs its side
            logger.warning("call %s: closing the recognizer failed", self._call.call_id)

    async def _hear_nothing(self, generation: int, action: ListenSpeech) -> None:
        """Without a recognizer the caller is heard saying nothing: no input once the prompt
        is over and the no-input timeout has passed, as a recognizer would report it."""
        await self._prompt_over.wait()
        await asyncio.sleep(action.no_input_timeout)
        self._inbox.post(SpeechHeard(generation, NoInput()))

    async def _recognize(self, generation: int, action: ListenSpeech) -> None:
        assert self._recognizer is not None
        call = self._call
        frames = None
        try:
            if self._session is None:
                self._session = await self._recognizer.open_session(call_id=call.call_id)
            frames = call.listen()
            self._recognizing = True
            result = await self._session.recognize(
                frames,
                grammar=action.phrases or None,
                language=action.language,
                no_input_timeout=action.no_input_timeout,
                max_speech_seconds=action.max_speech_seconds,
                prompt_playing=self._prompt.playing,
                on_speech_started=lambda: self._inbox.post(SpeechStarted(generation)),
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            if call.ended:
                return
            logger.warning(
                "call %s: speech recognition failed; keys only from now",
                call.call_id,
                exc_info=True,
            )
            self._broken = True
            return
        finally:
            if generation == self._generation:
                self._recognizing = False
            await _close(frames)
        self._inbox.post(SpeechHeard(generation, answer_for(result)))


async def _close(frames: object) -> None:
    """Close the caller's audio stream (an async generator: its tap is removed at once)."""
    closer = getattr(frames, "aclose", None)
    if closer is None:
        return
    try:
        await closer()
    except RuntimeError:  # still being read by a task of the recognizer: it ends with the call
        logger.debug("caller audio stream left open to its reader")
