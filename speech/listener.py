"""Listening to a caller for one answer at a time: VAD, end-pointing and recognition on a call.

:class:`SpeechInput` opens one :class:`SpeechInputSession` per call, which keeps one warm
recogniser (:class:`speech.service.CallSpeech`) and one VAD for the whole call. Each
:meth:`SpeechInputSession.recognize` listens for one answer:

- A reader task takes the caller's 20 ms frames from the source handed over (e.g. the call's
  audio tap) into a bounded inbox. It is the only waiter on the source, since abandoning a wait
  on it would close it; it is cancelled (closing the source) as soon as the answer is complete.
- Each frame goes through the VAD and a fresh :class:`~speech.endpoint.EndPointer` (sans-IO;
  its timers are armed here). Speech start is reported at once (``on_speech_started``: barge-in);
  from then on the frames, pre-roll first, go to the recogniser.
- At the end of speech (hangover) or the maximum utterance length, the final result is matched
  with :class:`~speech.recognizer.PhraseMatcher` against the prompt's phrases: a match returns
  the phrase with the match score as confidence, anything else an empty result (no-match); no
  speech before the no-input timeout returns ``None``.

Frames are dated by their position in the stream (20 ms apart) and time without frames by the
loop's clock, so audio delayed by a busy loop, or faster than real time, is end-pointed as the
audio says. Failures never escape: a recogniser that cannot open, fails, crashes or overruns
``engine_timeout`` makes the utterance a no-match (and a ``speech.error`` event) and is replaced
for the next question, at most ``max_reopens`` times per call; without one the session still
end-points (silence is no-input, speech a no-match). Bounds: the inbox (``max_pending_frames``,
oldest dropped), audio held while the recogniser starts (the utterance length), each engine wait
(``engine_timeout``), the wait for a prompt's end (``max_prompt_seconds``).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np

from speech.endpoint import (
    EndPointer,
    EndpointOutcome,
    EndpointSettings,
    EndpointState,
    MaxSpeech,
    NoInput,
    SpeechEnded,
    SpeechStarted,
)
from speech.events import SpeechError, SpeechNoInput, SpeechNoMatch, SpeechTranscript
from speech.frame_intake import (
    FrameClock,
    FrameInbox,
    log_task_failure,
    read_frames,
    stop_reader,
    task_value,
)
from speech.recognizer import PhraseMatcher, RecognitionResult, RecognizerError, normalize_phrase
from speech.service import CallSpeech, SpeechService
from speech.vad import Frame, FrameSizeError, VoiceActivityDetector

__all__ = ["ListenerSettings", "SpeechInput", "SpeechInputSession", "SpeechOutcomeSink"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Where the session reports each utterance as a speech event (``speech.transcript``, ...).
SpeechOutcomeSink = Callable[[SpeechTranscript | SpeechNoMatch | SpeechNoInput | SpeechError], None]

#: Menu end-pointing: a 0.2 s hangover, so the answer follows the last word quickly (paced
#: calls, pocketsphinx: end of speech to final result 0.25 s median, 0.26 s p95). The global
#: default (0.6 s) stays for free speech, where callers pause between clauses.
MENU_ENDPOINT = EndpointSettings(hangover_seconds=0.2)
FREE_SPEECH_ENDPOINT = EndpointSettings()


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerSettings:
    """How calls are listened to; every field has a default."""

    menu_endpoint: EndpointSettings = MENU_ENDPOINT
    """End-pointing for prompts with phrases (its timeouts are replaced by the prompt's)."""
    free_speech_endpoint: EndpointSettings = FREE_SPEECH_ENDPOINT
    """End-pointing for prompts without phrases (free speech)."""
    min_confidence: float = 0.2
    """Match score (0..1) below which no phrase is reported (a no-match), unless the prompt
    gives its own threshold. A floor against phrases the engine only listed as unlikely
    alternatives; the prompt's own threshold is applied by whoever reads the confidence."""
    max_pending_frames: int = 100
    """Frames (20 ms) the inbox holds between the source and the end-pointer (2 s)."""
    engine_timeout: float = 5.0
    """Longest wait, in seconds, for the recogniser to open, start or give its final result."""
    max_reopens: int = 2
    """Times a failed recogniser is replaced during one call."""
    max_prompt_seconds: float = 300.0
    """Longest wait for the end of a prompt before the no-input timeout starts anyway."""
    pause_words_wait: float = 0.1
    """Longest wait past a pause's hangover, in seconds, for the words heard before the pause
    (a worker round trip) in a menu with phrases of several words; then the pause ends."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min_confidence) and 0.0 <= self.min_confidence <= 1.0):
            raise ValueError(f"min_confidence must be within 0..1, got {self.min_confidence}")
        if self.max_pending_frames < 1:
            raise ValueError(f"max_pending_frames must be >= 1, got {self.max_pending_frames}")
        if self.max_reopens < 0:
            raise ValueError(f"max_reopens must be >= 0, got {self.max_reopens}")
        for name in ("engine_timeout", "max_prompt_seconds", "pause_words_wait"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value}")


class SpeechInput:
    """The speech layer as a call listens to it: one :class:`SpeechInputSession` per call."""

    def __init__(
        self,
        service: SpeechService,
        *,
        settings: ListenerSettings | None = None,
        publish: SpeechOutcomeSink | None = None,
    ) -> None:
        self._service = service
        self._settings = settings or ListenerSettings()
        self._publish = publish

    async def open_session(self, *, call_id: str) -> SpeechInputSession:
        """The call's session, its recogniser opened (a failure is reported by ``recognize``)."""
        session = SpeechInputSession(
            self._service, call_id, settings=self._settings, publish=self._publish
        )
        await session.warm_up()
        return session


@dataclass(slots=True)
class _Listening:
    """One ``recognize`` in progress."""

    endpointer: EndPointer
    inbox: FrameInbox
    clock: FrameClock
    prompt_ended: bool
    malformed: int = 0
    #: The menu, when some of its phrases have several words (a pause may fall inside one).
    phrases: PhraseMatcher | None = None
    #: The words heard so far, asked of the recogniser when the current pause began.
    pause_words: asyncio.Task[str] | None = None
    pause_settled: bool = False
    pause_words_wait: float = 0.1


class SpeechInputSession:
    """One call's listening: a warm recogniser, a VAD, one answer per :meth:`recognize`."""

    def __init__(
        self,
        service: SpeechService,
        call_id: str,
        *,
        settings: ListenerSettings | None = None,
        publish: SpeechOutcomeSink | None = None,
    ) -> None:
        self._service = service
        self.call_id = call_id
        self._settings = settings = settings or ListenerSettings()
        self._publish = publish
        self._vad = VoiceActivityDetector(settings.menu_endpoint.aggressiveness)
        self._recogniser: CallSpeech | None = None
        self._opens = 0
        self._closed = False
        # Every use of the recogniser, in order: the next one waits for the previous, so a
        # cancelled question's final result never lands after the next question's start.
        self._engine_op: asyncio.Task[Any] | None = None
        self._listening: _Listening | None = None

    # The recogniser -----------------------------------------------------------------------------

    async def warm_up(self) -> None:
        """Open the call's recogniser now (bounded); a failure is left for ``recognize``."""
        await self._bounded(self._serialize(self._open_recogniser()))

    async def _open_recogniser(self, language: str | None = None) -> CallSpeech | None:
        current = self._recogniser
        if current is not None:
            if language is None or current.language == self._service.language_for(language):
                return current
            # The caller chose another language: its engine gets a recogniser of its own (not
            # a replacement for a failed one, so it does not count against max_reopens).
            self._recogniser = None
            self._opens -= 1
            await current.close()
        if self._closed or self._opens > self._settings.max_reopens:
            return None
        self._opens += 1
        try:
            recogniser = await self._service.open_call(self.call_id, language=language)
        except (RecognizerError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, RecognizerError) else str(exc)
            self._report_error(reason)
            return None
        if self._closed:  # the call ended while the recogniser opened
            await recogniser.close()
            return None
        self._recogniser = recogniser
        return recogniser

    async def _prepare(
        self, grammar: tuple[str, ...] | None, language: str | None = None
    ) -> CallSpeech | None:
        recogniser = await self._open_recogniser(language)
        if recogniser is None:
            return None
        await recogniser.start(grammar)
        if recogniser.failure is not None:
            self._discard(recogniser.failure)
            return None
        return recogniser

    def _discard(self, reason: str) -> None:
        """The recogniser failed: report it, and open a new one for the next question."""
        self._report_error(reason)
        recogniser, self._recogniser = self._recogniser, None
        if recogniser is not None:
            self._serialize(recogniser.close())

    def _serialize(self, work: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        previous = self._engine_op

        async def in_turn() -> _T:
            try:
                if previous is not None:
                    await asyncio.wait([previous])
            except BaseException:
                work.close()  # cancelled before its turn (the loop is closing)
                raise
            return await work

        task = asyncio.get_running_loop().create_task(in_turn())
        task.add_done_callback(log_task_failure)
        self._engine_op = task
        return task

    async def _bounded(self, task: asyncio.Task[_T]) -> _T | None:
        """The task's value; None if it fails or outlasts ``engine_timeout`` (it goes on)."""
        try:
            return await asyncio.wait_for(asyncio.shield(task), self._settings.engine_timeout)
        except TimeoutError:
            logger.warning(
                "call %s: speech engine gave no answer within %.1f s",
                self.call_id,
                self._settings.engine_timeout,
            )
        except Exception:  # logged by the task's callback; the utterance becomes a no-match
            logger.debug("call %s: speech engine work failed", self.call_id)
        return None

    # Listening ----------------------------------------------------------------------------------

    async def recognize(
        self,
        frames: AsyncIterator[Frame],
        *,
        grammar: tuple[str, ...] | None,
        language: str,
        no_input_timeout: float,
        max_speech_seconds: float,
        prompt_playing: bool,
        on_speech_started: Callable[[], None],
        confidence_threshold: float | None = None,
    ) -> RecognitionResult | None:
        """Listen to ``frames`` for one answer (see the module docs).

        ``grammar``: the phrases allowed (free speech with None). The no-input timeout starts
        now, or at :meth:`prompt_ended` with ``prompt_playing``. Returns the matched phrase (its
        confidence the match score), an empty result for speech that matched nothing or could
        not be recognised, or None for no speech. ``language`` picks the engine (the service's
        engine for that language, else its default one).
        """
        loop = asyncio.get_running_loop()
        matcher = _matcher(grammar, confidence_threshold, self._settings.min_confidence)
        endpoint = self._endpoint_settings(matcher, no_input_timeout, max_speech_seconds)
        clock = FrameClock(loop.time)
        listening = _Listening(
            endpointer=EndPointer(
                endpoint,
                now=clock.now(),
                prompt_playing=prompt_playing,
                vad=self._vad,
                call_id=self.call_id,
            ),
            inbox=FrameInbox(self._settings.max_pending_frames),
            clock=clock,
            prompt_ended=not prompt_playing,
            phrases=matcher if matcher is not None and matcher.has_long_phrases else None,
            pause_words_wait=self._settings.pause_words_wait,
        )
        self._listening = listening
        reader = loop.create_task(read_frames(frames, listening.inbox))
        engine_grammar = matcher.grammar if matcher is not None else grammar
        prepared = self._serialize(self._prepare(engine_grammar, language))
        logger.debug("call %s: listening (%s) for %r", self.call_id, language, engine_grammar)
        try:
            held: list[bytes] = []
            outcome = await self._end_point(listening, prepared, held, on_speech_started)
            # The answer is complete: no more audio is taken from the call.
            await stop_reader(reader)
            if isinstance(outcome, NoInput):
                self._emit(
                    SpeechNoInput(call_id=self.call_id, waited_seconds=outcome.waited_seconds)
                )
                return None
            return await self._final_result(prepared, held, matcher)
        finally:
            if self._listening is listening:
                self._listening = None
            await stop_reader(reader)
            if listening.inbox.dropped or listening.malformed:
                logger.warning(
                    "call %s: caller audio lost: %d frames dropped (listener behind), %d malformed",
                    self.call_id,
                    listening.inbox.dropped,
                    listening.malformed,
                )

    def prompt_ended(self) -> None:
        """The prompt played over the current question has finished."""
        listening = self._listening
        if listening is not None and not listening.prompt_ended:
            listening.prompt_ended = True
            listening.endpointer.prompt_ended(listening.clock.now())
            listening.inbox.wake.set()

    async def close(self) -> None:
        """Release the recogniser; the call's speech is over."""
        self._closed = True
        last = self._engine_op
        if last is not None:
            await asyncio.wait([last], timeout=self._settings.engine_timeout)
        recogniser, self._recogniser = self._recogniser, None
        if recogniser is not None:
            await recogniser.close()

    def _endpoint_settings(
        self, matcher: PhraseMatcher | None, no_input: float, max_speech: float
    ) -> EndpointSettings:
        base = self._settings.menu_endpoint if matcher else self._settings.free_speech_endpoint
        try:
            return replace(base, no_input_timeout_seconds=no_input, max_speech_seconds=max_speech)
        except ValueError:
            logger.warning(
                "call %s: prompt timeouts %r/%r unusable; defaults used",
                self.call_id,
                no_input,
                max_speech,
            )
            return base

    async def _end_point(
        self,
        listening: _Listening,
        prepared: asyncio.Task[CallSpeech | None],
        held: list[bytes],
        on_speech_started: Callable[[], None],
    ) -> NoInput | SpeechEnded | MaxSpeech:
        endpointer, inbox, clock = listening.endpointer, listening.inbox, listening.clock
        prompt_wait_until = clock.now() + self._settings.max_prompt_seconds
        while True:
            outcome: EndpointOutcome | None
            if inbox.frames:
                frame = inbox.frames.popleft()
                date = clock.frame()
                await _settle_pause(listening, date)
                try:
                    outcome = endpointer.feed(frame, date)
                except (FrameSizeError, TypeError):  # not 20 ms of 8 kHz int16: not audio
                    listening.malformed += 1
                    continue
                if outcome is None and endpointer.capturing:
                    self._to_recogniser(_pcm(frame), prepared, held)
                    self._watch_pause(listening, prepared)
            else:
                deadline = endpointer.next_deadline()
                now = clock.now()
                if deadline is None and now >= prompt_wait_until:
                    endpointer.prompt_ended(now)  # the prompt never said it ended
                    continue
                due = deadline if deadline is not None else prompt_wait_until
                if now < due:
                    await inbox.wait(due - now)
                    continue
                await _settle_pause(listening, now)
                outcome = endpointer.handle_timer(now)
            if isinstance(outcome, SpeechStarted):
                for pcm in outcome.pre_roll:
                    self._to_recogniser(pcm, prepared, held)
                _notify(on_speech_started, self.call_id)
            elif outcome is not None:
                return outcome

    def _watch_pause(
        self, listening: _Listening, prepared: asyncio.Task[CallSpeech | None]
    ) -> None:
        """At the start of each pause in a menu with phrases of several words, ask the
        recogniser what it heard so far (see :func:`_settle_pause`)."""
        if listening.phrases is None:
            return
        if listening.endpointer.state is EndpointState.IN_SPEECH:
            listening.pause_words = None  # the next pause asks again
            listening.pause_settled = False
            return
        recogniser = task_value(prepared) if prepared.done() else None
        if listening.pause_words is not None or recogniser is None:
            return
        words = self._serialize(recogniser.partial())
        words.add_done_callback(lambda _: listening.inbox.wake.set())
        listening.pause_words = words

    def _to_recogniser(
        self, pcm: bytes, prepared: asyncio.Task[CallSpeech | None], held: list[bytes]
    ) -> None:
        if not prepared.done():
            held.append(pcm)  # bounded by the utterance length (max_speech_seconds)
            return
        recogniser = task_value(prepared)
        if recogniser is not None:
            for earlier in held:  # audio that came while the recogniser was starting goes first
                recogniser.feed(earlier)
            recogniser.feed(pcm)
        held.clear()

    async def _final_result(
        self,
        prepared: asyncio.Task[CallSpeech | None],
        held: list[bytes],
        matcher: PhraseMatcher | None,
    ) -> RecognitionResult:
        engine = self._service.engine_name
        recogniser = await self._bounded(prepared)
        if recogniser is None:
            return RecognitionResult.empty(engine)
        for pcm in held:
            recogniser.feed(pcm)
        held.clear()
        result = await self._bounded(self._serialize(recogniser.finish()))
        if result is None:
            self._discard(recogniser.failure or "no final result from the speech engine")
            return RecognitionResult.empty(engine)
        if matcher is None:
            if result.is_empty:
                self._emit(SpeechNoMatch(call_id=self.call_id, text="", confidence=0.0,
                                         reason="empty", engine=result.engine))  # fmt: skip
            else:
                self._emit(SpeechTranscript.from_result(call_id=self.call_id, result=result))
            return result
        match = matcher.match(result)
        if match.choice is None:
            self._emit(SpeechNoMatch.from_match(call_id=self.call_id, match=match, engine=engine))
            return RecognitionResult.empty(result.engine)
        self._emit(SpeechTranscript.from_result(call_id=self.call_id, result=result))
        return RecognitionResult(text=match.choice, confidence=match.score, engine=result.engine)

    def _report_error(self, reason: str) -> None:
        logger.warning("call %s: speech recognition failed: %s", self.call_id, reason)
        self._emit(
            SpeechError(call_id=self.call_id, engine=self._service.engine_name, reason=reason)
        )

    def _emit(self, event: SpeechTranscript | SpeechNoMatch | SpeechNoInput | SpeechError) -> None:
        if self._publish is None:
            return
        try:
            self._publish(event)
        except Exception:  # a subscriber's failure is not the caller's
            logger.exception("call %s: publishing %s failed", self.call_id, event.TYPE)


def _matcher(
    grammar: tuple[str, ...] | None, threshold: float | None, floor: float
) -> PhraseMatcher | None:
    """A matcher whose choices are the phrases as given (one per spelling), or None."""
    if not grammar:
        return None
    choices: dict[str, tuple[str]] = {}
    seen: set[str] = set()
    for phrase in grammar:
        key = normalize_phrase(phrase)
        if key and key not in seen:
            seen.add(key)
            choices[phrase] = (phrase,)
    if not choices:
        return None
    level = floor if threshold is None else threshold
    if not (math.isfinite(level) and 0.0 <= level <= 1.0):
        level = floor
    return PhraseMatcher(choices, threshold=level)


async def _settle_pause(listening: _Listening, now: float) -> None:
    """Once the words heard before the current pause are known, lengthen the pause if they only
    begin a phrase of several words. Waits for them (a little) only when the hangover is due."""
    words, endpointer = listening.pause_words, listening.endpointer
    if words is None or listening.pause_settled or endpointer.state is not EndpointState.TRAILING:
        return
    if not words.done():
        deadline = endpointer.next_deadline()
        if deadline is None or now < deadline:
            return
        await asyncio.wait([words], timeout=listening.pause_words_wait)
    listening.pause_settled = True
    heard = task_value(words) if words.done() else None
    phrases = listening.phrases
    if heard and phrases is not None and phrases.unfinished(heard):
        endpointer.phrase_unfinished(now)


def _notify(on_speech_started: Callable[[], None], call_id: str) -> None:
    try:
        on_speech_started()
    except Exception:  # the listener's own failure must not stop the listening
        logger.exception("call %s: speech-start callback failed", call_id)


def _pcm(frame: Frame) -> bytes:
    if isinstance(frame, bytes):
        return frame
    if isinstance(frame, np.ndarray):
        return frame.tobytes()
    return bytes(frame)
