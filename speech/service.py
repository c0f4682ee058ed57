"""The asyncio face of speech recognition: one recogniser per call, fed 20 ms frames.

The media path calls :meth:`CallSpeech.feed` for every frame; it never blocks and never awaits.
Frames wait in a bounded backlog and a per-call task hands them to the engine on a worker
(thread, or a thread talking to a worker process), one batch at a time and in order, so the
event loop never runs recogniser code. :meth:`CallSpeech.recognize` ends the utterance and turns
the result into the event the IVR and the CRM receive: :class:`SpeechTranscript`,
:class:`SpeechNoMatch` or :class:`SpeechError` — a failing engine is an event, never an exception
that ends the call.

Languages: the service holds one engine per configured language (a Vosk model each) and a
default engine for every other language (the configured Vosk model, or the built-in English
engine). :meth:`SpeechService.open_call` picks the engine for the call's current language
("en-GB" uses an "en" model when there is no "en-GB" one).

Bounds: at most ``max_streams`` calls hold a recogniser (one more gets a ``speech.error`` at once);
each call's backlog holds ``max_backlog_frames`` (5 s by default); when it overflows the engine
is not keeping up, the utterance is abandoned with a ``speech.error`` ("overloaded") and frames
are dropped until the next prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final, TypeAlias

from speech.events import SpeechError, SpeechNoMatch, SpeechTranscript
from speech.pool import ProcessEngine, WorkerThreads
from speech.recognizer import (
    PhraseMatcher,
    RecognitionResult,
    RecognizerEngine,
    RecognizerError,
    RecognizerSession,
)

__all__ = [
    "CallSpeech",
    "RecognitionOutcome",
    "SpeechService",
    "SpeechSettings",
    "build_engine",
    "build_language_engines",
    "language_key",
]

logger = logging.getLogger(__name__)

RecognitionOutcome: TypeAlias = SpeechTranscript | SpeechNoMatch | SpeechError
"""What one utterance produced."""

# Frames handed to the engine per worker job: enough to amortise the hop to the worker, few
# enough that the final result is not held up behind a long batch.
_BATCH_FRAMES: Final = 25


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechSettings:
    """Which engine recognises speech and how much work it may take on."""

    vosk_model_path: Path | None = None
    """Directory of an unpacked Vosk model for every language without its own model; ``None``
    uses the built-in English menu engine for them."""
    language_models: Mapping[str, Path] = field(default_factory=dict)
    """Vosk model directory per language code (``"ko"``, ``"pt-BR"``), for IVR trees that speak
    several languages. Codes are matched without regard to case."""
    workers: int = 2
    """Worker threads (Vosk) or worker processes (the built-in engine); about one per core."""
    max_streams: int = 32
    """Calls that may hold a recogniser at once."""
    max_alternatives: int = 5
    """N-best candidates kept per result."""
    max_backlog_frames: int = 250
    """20 ms frames a call may have waiting for a worker (250 = 5 s) before it is abandoned."""

    def __post_init__(self) -> None:
        for name in ("workers", "max_streams", "max_alternatives", "max_backlog_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for code in self.language_models:
            if not language_key(code):
                raise ValueError(f"language_models has an empty language code: {code!r}")
        object.__setattr__(self, "language_models", MappingProxyType(dict(self.language_models)))


def language_key(code: str) -> str:
    """A language code folded for look-ups: lower case, ``_`` read as ``-`` ("pt_BR" -> "pt-br")."""
    return code.strip().replace("_", "-").casefold()


def build_engine(settings: SpeechSettings) -> RecognizerEngine:
    """Load the configured engine (blocking: seconds). Vosk if a model is configured, otherwise
    pocketsphinx in ``settings.workers`` processes. Raises ``ValueError`` for a bad model path."""
    if settings.vosk_model_path is not None:
        from speech.vosk_engine import VoskEngine

        return VoskEngine.load(settings.vosk_model_path, max_alternatives=settings.max_alternatives)
    from speech.sphinx_engine import SphinxSettings, sphinx_engine_factory

    return ProcessEngine(
        sphinx_engine_factory(SphinxSettings(max_alternatives=settings.max_alternatives)),
        name="pocketsphinx",
        processes=settings.workers,
    )


def build_language_engines(settings: SpeechSettings) -> dict[str, RecognizerEngine]:
    """Load one Vosk engine per entry of ``settings.language_models`` (blocking: seconds each),
    keyed by :func:`language_key`. Raises ``ValueError`` naming the language and the bad path."""
    from speech.vosk_engine import VoskEngine

    engines: dict[str, RecognizerEngine] = {}
    for code, path in settings.language_models.items():
        try:
            engines[language_key(code)] = VoskEngine.load(
                path, max_alternatives=settings.max_alternatives
            )
        except ValueError as exc:
            raise ValueError(f"speech model for language {code!r}: {exc}") from exc
    return engines


class SpeechService:
    """Opens per-call recognisers on shared engines and runs them on bounded workers."""

    def __init__(
        self,
        engine: RecognizerEngine,
        *,
        workers: int = 2,
        max_streams: int = 32,
        max_backlog_frames: int = 250,
        languages: Mapping[str, RecognizerEngine] | None = None,
    ) -> None:
        """``engine`` serves every language that has no engine of its own in ``languages``."""
        self._engine = engine
        self._languages: Mapping[str, RecognizerEngine] = MappingProxyType(
            {language_key(code): other for code, other in (languages or {}).items()}
        )
        # Process-backed sessions need a thread per process to wait on its pipe; more is useless.
        self._threads = WorkerThreads(workers, name=f"speech-{engine.name}")
        self._max_streams = max_streams
        self._max_backlog = max_backlog_frames
        self._calls: dict[str, CallSpeech] = {}

    @classmethod
    def from_settings(
        cls,
        settings: SpeechSettings,
        engine: RecognizerEngine,
        languages: Mapping[str, RecognizerEngine] | None = None,
    ) -> SpeechService:
        """The service for ``settings`` around engines from :func:`build_engine` and
        :func:`build_language_engines`."""
        return cls(
            engine,
            workers=settings.workers,
            max_streams=settings.max_streams,
            max_backlog_frames=settings.max_backlog_frames,
            languages=languages,
        )

    @property
    def engine_name(self) -> str:
        """Name of the default engine in results and events."""
        return self._engine.name

    @property
    def languages(self) -> tuple[str, ...]:
        """Language codes (folded) that have an engine of their own."""
        return tuple(self._languages)

    def language_for(self, language: str | None) -> str:
        """The key of the engine that serves ``language``: its own code, else its primary
        language ("en-GB" -> "en"), else ``""`` (the default engine)."""
        if not language:
            return ""
        key = language_key(language)
        if key in self._languages:
            return key
        primary = key.split("-", 1)[0]
        return primary if primary in self._languages else ""

    def engine_for(self, language: str | None) -> RecognizerEngine:
        """The engine that recognises ``language`` (see :meth:`language_for`)."""
        key = self.language_for(language)
        return self._languages[key] if key else self._engine

    @property
    def active_calls(self) -> int:
        """Calls holding a recogniser now."""
        return len(self._calls)

    async def open_call(self, call_id: str, *, language: str | None = None) -> CallSpeech:
        """Create the call's recogniser for ``language`` (on a worker; ``None``: the default
        engine). Raises :class:`RecognizerError` when the engine fails or ``max_streams`` calls
        already have one."""
        if call_id in self._calls:
            raise ValueError(f"call {call_id} already has a recogniser")
        key = self.language_for(language)
        engine = self._languages[key] if key else self._engine
        if len(self._calls) >= self._max_streams:
            raise RecognizerError(engine.name, f"all {self._max_streams} speech streams are in use")
        placeholder = CallSpeech(self, call_id, None, engine=engine, language=key)
        self._calls[call_id] = placeholder  # counts against the limit while it opens
        try:
            session = await self._threads.run(_open_session, engine, call_id)
        except BaseException:
            del self._calls[call_id]
            raise
        placeholder.attach(session)
        return placeholder

    async def aclose(self) -> None:
        """Close every call's recogniser and stop the workers."""
        for call in list(self._calls.values()):
            await call.close()
        self._threads.close()
        for engine in (self._engine, *self._languages.values()):
            close = getattr(engine, "close", None)
            if callable(close):
                close()

    def _forget(self, call_id: str) -> None:
        self._calls.pop(call_id, None)


class CallSpeech:
    """One call's recogniser: ``start`` per prompt, ``feed`` frames, ``recognize`` at the end."""

    __slots__ = (
        "_backlog",
        "_call_id",
        "_closed",
        "_drain",
        "_engine",
        "_failure",
        "_language",
        "_overflowed",
        "_service",
        "_session",
    )

    def __init__(
        self,
        service: SpeechService,
        call_id: str,
        session: RecognizerSession | None,
        *,
        engine: RecognizerEngine | None = None,
        language: str = "",
    ) -> None:
        self._service = service
        self._engine = engine
        self._language = language
        self._call_id = call_id
        self._session = session
        self._backlog: deque[bytes] = deque()
        self._overflowed = False
        self._failure: str | None = None
        self._closed = False
        self._drain: asyncio.Task[None] | None = None

    def attach(self, session: RecognizerSession) -> None:
        """Bind the opened recogniser (done by the service)."""
        self._session = session

    @property
    def call_id(self) -> str:
        return self._call_id

    @property
    def engine_name(self) -> str:
        return self._engine.name if self._engine is not None else self._service.engine_name

    @property
    def language(self) -> str:
        """Key of the language whose engine this recogniser runs on (``""``: the default)."""
        return self._language

    @property
    def failure(self) -> str | None:
        """Why the current utterance can no longer be recognised, if it cannot."""
        return self._failure

    async def start(self, grammar: tuple[str, ...] | None) -> None:
        """Begin an utterance restricted to ``grammar`` (``None``: free speech).

        An engine failure is remembered and reported by :meth:`recognize`, not raised here.
        """
        await self._settle()
        self._backlog.clear()
        self._overflowed = False
        self._failure = None
        try:
            await self._service._threads.run(self._live().start, grammar)
        except RecognizerError as exc:
            self._failure = exc.reason

    def feed(self, frame: bytes) -> None:
        """Queue one 20 ms frame of 8 kHz int16 PCM. Never blocks; drops frames once the
        utterance has failed or overflowed."""
        if self._failure is not None or self._closed:
            return
        if len(self._backlog) >= self._service._max_backlog:
            self._overflowed = True
            self._failure = (
                f"speech engine overloaded: more than {self._service._max_backlog} frames waiting"
            )
            self._backlog.clear()
            logger.warning("call %s: %s", self._call_id, self._failure)
            return
        self._backlog.append(frame)
        # A running drain task picks the frame up: it only ends once the backlog is empty, and
        # it cannot end between this check and the append (both run on the loop).
        if self._drain is None or self._drain.done():
            self._drain = asyncio.get_running_loop().create_task(self._drain_backlog())

    async def partial(self) -> str:
        """The transcription so far (empty on failure)."""
        await self._settle()
        if self._failure is not None:
            return ""
        try:
            return await self._service._threads.run(self._live().partial)
        except RecognizerError as exc:
            self._failure = exc.reason
            return ""

    async def finish(self) -> RecognitionResult:
        """End the utterance and return its result. Raises :class:`RecognizerError`."""
        await self._settle()
        if self._failure is not None:
            raise RecognizerError(self.engine_name, self._failure)
        try:
            return await self._service._threads.run(self._live().finish)
        except RecognizerError as exc:
            self._failure = exc.reason
            raise

    async def recognize(self, matcher: PhraseMatcher | None = None) -> RecognitionOutcome:
        """End the utterance and report it as an event.

        With a ``matcher``, a result that matches none of its choices (or not confidently) is a
        :class:`SpeechNoMatch`, and a match is a transcript whose text is the matched choice.
        Without one, any non-empty result is a transcript and an empty one a no-match.
        """
        try:
            result = await self.finish()
        except RecognizerError as exc:
            return SpeechError(call_id=self._call_id, engine=self.engine_name, reason=exc.reason)
        if matcher is None:
            if result.is_empty:
                return SpeechNoMatch(
                    call_id=self._call_id,
                    text="",
                    confidence=0.0,
                    reason="empty",
                    engine=result.engine,
                )
            return SpeechTranscript.from_result(call_id=self._call_id, result=result)
        match = matcher.match(result)
        if match.choice is None:
            return SpeechNoMatch.from_match(
                call_id=self._call_id, match=match, engine=result.engine
            )
        return SpeechTranscript.from_result(call_id=self._call_id, result=result)

    async def close(self) -> None:
        """Release the recogniser (on a worker); the call's speech is over."""
        if self._closed:
            return
        self._closed = True
        self._backlog.clear()
        if self._drain is not None:
            await asyncio.gather(self._drain, return_exceptions=True)
        self._service._forget(self._call_id)
        if self._session is not None:
            with contextlib.suppress(RecognizerError):  # its worker is gone already
                await self._service._threads.run(self._session.close)

    async def _settle(self) -> None:
        """Wait until every queued frame has reached the engine."""
        while self._drain is not None and not self._drain.done():
            await asyncio.shield(self._drain)

    async def _drain_backlog(self) -> None:
        session = self._live()
        while self._backlog and self._failure is None and not self._closed:
            batch = [self._backlog.popleft() for _ in range(min(_BATCH_FRAMES, len(self._backlog)))]
            try:
                await self._service._threads.run(_accept_all, session, batch)
            except RecognizerError as exc:
                self._failure = exc.reason
                self._backlog.clear()
                logger.warning("call %s: speech engine failed: %s", self._call_id, exc.reason)

    def _live(self) -> RecognizerSession:
        if self._session is None or self._closed:
            raise RecognizerError(self.engine_name, f"call {self._call_id} has no recogniser")
        return self._session


def _open_session(engine: RecognizerEngine, call_id: str) -> RecognizerSession:
    return engine.open_session(call_id=call_id)


def _accept_all(session: RecognizerSession, frames: list[bytes]) -> None:
    for frame in frames:
        session.accept(frame)
