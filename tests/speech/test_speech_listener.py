"""Listening on a call: generated telephone speech fed as a call's 20 ms frames on the event loop,
end-pointed and recognised by the built-in English engine (pocketsphinx in a worker process),
and the failure paths with a scripted engine."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import pytest

from ivr.ports import SpeechRecognizer
from speech.events import SpeechError, SpeechNoInput, SpeechNoMatch, SpeechTranscript
from speech.listener import ListenerSettings, SpeechInput, SpeechInputSession
from speech.pool import ProcessEngine, RemoteSession
from speech.recognizer import Hypothesis, RecognitionResult, RecognizerError
from speech.service import SpeechService
from speech.sphinx_engine import sphinx_engine_factory
from tests.speech.speech_audio import Clip, SpeechAudio

MENU = ("sales", "support", "billing")
# The espeak-ng voices the bundled model hears best (see test_speech_sphinx.py).
VOICES = ("en-us+klatt", "en-us+klatt2")

Event = SpeechTranscript | SpeechNoMatch | SpeechNoInput | SpeechError
_E = TypeVar("_E", SpeechTranscript, SpeechNoMatch, SpeechNoInput, SpeechError)


class SharedEngine:
    """The module's worker pool, lent to each test's service (which would close its engine)."""

    def __init__(self, pool: ProcessEngine) -> None:
        self.pool = pool

    @property
    def name(self) -> str:
        return self.pool.name

    def open_session(self, *, call_id: str) -> RemoteSession:
        return self.pool.open_session(call_id=call_id)


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessEngine]:
    engine = ProcessEngine(sphinx_engine_factory(), name="pocketsphinx", processes=1)
    yield engine
    engine.close()


@dataclass
class Listening:
    """A :class:`SpeechInput` on the pocketsphinx pool, with the events it published."""

    service: SpeechService
    speech: SpeechInput
    events: list[Event] = field(default_factory=list)

    def of(self, kind: type[_E]) -> list[_E]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
async def listening(pool: ProcessEngine) -> AsyncIterator[Listening]:
    events: list[Event] = []
    service = SpeechService(SharedEngine(pool), workers=2, max_streams=4)
    yield Listening(service, SpeechInput(service, publish=events.append), events)
    await service.aclose()


def spoken(audio: SpeechAudio, text: str, voice: str = VOICES[0]) -> Clip:
    return audio.speech(text, voice=voice, lead=0.8, trail=1.0)


class CallerAudio:
    """A call's audio as the media layer hands it over: 20 ms int16 frames of ``clip``.

    Frames come as fast as the loop takes them (``realtime``: at the clip's pace); ``at`` runs
    a hook when a frame index is reached. After the clip the line stays open and silent.
    """

    def __init__(
        self,
        clip: Clip | None,
        *,
        realtime: bool = False,
        at: dict[int, Callable[[], None]] | None = None,
    ) -> None:
        self.clip = clip
        self.realtime = realtime
        self.at = at or {}
        self.delivered = 0
        self.closed = False
        self.speech_ended_at: float | None = None

    async def frames(self) -> AsyncIterator[npt.NDArray[np.int16]]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            for index, (ends, frame) in enumerate(self.clip.frames() if self.clip else []):
                if index in self.at:
                    self.at[index]()
                if self.realtime:
                    await asyncio.sleep(max(0.0, started + ends - loop.time()))
                else:
                    await asyncio.sleep(0)
                speech_end = self.clip.speech_end if self.clip else None
                if speech_end is not None and self.speech_ended_at is None and ends >= speech_end:
                    self.speech_ended_at = loop.time() - (ends - speech_end)
                self.delivered = index + 1
                yield np.frombuffer(frame, dtype=np.int16)
            await asyncio.Event().wait()
        finally:
            self.closed = True


@dataclass
class Heard:
    result: RecognitionResult | None
    speech_started_at_frame: list[int]


async def hear(
    session: SpeechInputSession,
    caller: CallerAudio,
    *,
    grammar: tuple[str, ...] | None = MENU,
    no_input_timeout: float = 3.0,
    max_speech_seconds: float = 10.0,
    prompt_playing: bool = False,
    confidence_threshold: float | None = None,
) -> Heard:
    started: list[int] = []
    result = await session.recognize(
        caller.frames(),
        grammar=grammar,
        language="en-US",
        no_input_timeout=no_input_timeout,
        max_speech_seconds=max_speech_seconds,
        prompt_playing=prompt_playing,
        on_speech_started=lambda: started.append(caller.delivered),
        confidence_threshold=confidence_threshold,
    )
    assert caller.closed, "the caller's audio stream was left open"
    return Heard(result, started)


# The built-in English engine ------------------------------------------------------------------


async def test_menu_words_are_recognised_on_one_warm_recogniser(
    listening: Listening, speech_audio: SpeechAudio
) -> None:
    recognizer: SpeechRecognizer = listening.speech  # what the IVR runner is given
    session = await recognizer.open_session(call_id="call-1")
    assert isinstance(session, SpeechInputSession)
    heard = {}
    for voice in VOICES:
        for word in MENU:
            got = await hear(session, CallerAudio(spoken(speech_audio, word, voice)))
            assert len(got.speech_started_at_frame) == 1
            assert got.result is not None
            heard[voice, word] = (got.result.text, got.result.confidence)
            assert listening.service.active_calls == 1  # the same recogniser, prompt after prompt
    await session.close()
    assert listening.service.active_calls == 0
    wrong = {key: text for key, (text, _) in heard.items() if text != key[1]}
    assert not wrong, f"misrecognised (voice, word) -> heard: {wrong}"
    assert all(confidence >= 0.5 for _, confidence in heard.values())
    transcripts = listening.of(SpeechTranscript)
    assert [e.text for e in transcripts] == [word for _ in VOICES for word in MENU]
    assert all(e.call_id == "call-1" and e.engine == "pocketsphinx" for e in transcripts)


async def test_a_pause_between_the_words_of_a_phrase_does_not_cut_it(
    pool: ProcessEngine, speech_audio: SpeechAudio
) -> None:
    first = speech_audio.speech("technical", voice=VOICES[0], lead=0.8, trail=0.05)
    second = speech_audio.speech("support", voice=VOICES[0], lead=0.0, trail=1.0)
    assert first.speech_end is not None and second.speech_start is not None
    assert second.speech_end is not None
    pause = first.duration - first.speech_end + second.speech_start
    assert 0.3 < pause < 0.5  # longer than the menu's hangover (0.2 s), shorter than 0.6 s
    clip = Clip(
        name="technical-pause-support",
        pcm=first.pcm + second.pcm,
        speech_start=first.speech_start,
        speech_end=first.duration + second.speech_end,
    )
    menu = ("technical support", "sales", "yes")
    # A generous wait for the words so far: the test is about the decision, not the worker's pace.
    settings = ListenerSettings(pause_words_wait=5.0)
    service = SpeechService(SharedEngine(pool), workers=2, max_streams=4)
    session = await SpeechInput(service, settings=settings).open_session(call_id="call-pause")
    caller = CallerAudio(clip, realtime=True)
    got = await hear(session, caller, grammar=menu)
    assert got.result is not None
    assert got.result.text == "technical support"
    # The answer came after the second word, not at the pause.
    assert caller.delivered * 0.02 > first.duration + second.speech_end
    await session.close()
    await service.aclose()


async def test_speech_over_the_prompt_is_reported_at_its_start(
    listening: Listening, speech_audio: SpeechAudio
) -> None:
    clip = spoken(speech_audio, "billing")
    assert clip.speech_start is not None
    session = await listening.speech.open_session(call_id="call-2")
    # The prompt plays throughout: the 0.5 s no-input timeout has not started when speech comes.
    got = await hear(session, CallerAudio(clip), prompt_playing=True, no_input_timeout=0.5)
    await session.close()
    assert got.result is not None and got.result.text == "billing"
    [frame] = got.speech_started_at_frame
    assert clip.speech_start < frame * 0.02 <= clip.speech_start + 0.15


async def test_silence_is_no_input_counted_from_the_end_of_the_prompt(
    listening: Listening, speech_audio: SpeechAudio
) -> None:
    session = await listening.speech.open_session(call_id="call-3")
    caller = CallerAudio(speech_audio.silence(4.0), at={50: session.prompt_ended})
    got = await hear(session, caller, prompt_playing=True, no_input_timeout=1.0)
    await session.close()
    assert got.result is None and got.speech_started_at_frame == []
    # The prompt ended after frame 50 (1.0 s); the caller was silent for 1.0 s more.
    assert 99 <= caller.delivered <= 102
    [no_input] = listening.of(SpeechNoInput)
    assert isinstance(no_input, SpeechNoInput)
    assert no_input.waited_seconds == pytest.approx(1.0)


async def test_a_line_that_sends_no_audio_times_out_too(listening: Listening) -> None:
    session = await listening.speech.open_session(call_id="call-4")
    loop = asyncio.get_running_loop()
    began = loop.time()
    got = await hear(session, CallerAudio(None), no_input_timeout=0.2)
    await session.close()
    assert got.result is None
    assert 0.2 <= loop.time() - began < 1.0


async def test_speech_longer_than_the_maximum_is_cut(
    listening: Listening, speech_audio: SpeechAudio
) -> None:
    clip = speech_audio.speech(
        "I am calling about the invoice I received last week, it shows a charge for a service "
        "I never ordered and I would like somebody to explain it",
        voice=VOICES[0],
        lead=0.5,
        trail=0.5,
    )
    assert clip.speech_start is not None
    session = await listening.speech.open_session(call_id="call-5")
    caller = CallerAudio(clip)
    got = await hear(session, caller, max_speech_seconds=1.5)
    await session.close()
    assert got.result is not None  # heard, then cut: a result (a phrase or a no-match)
    assert caller.delivered * 0.02 <= clip.speech_start + 1.5 + 0.2


async def test_end_of_speech_to_final_result_on_a_paced_call(
    listening: Listening, speech_audio: SpeechAudio
) -> None:
    """Frames at the real 20 ms pace, three calls at once: each menu answer is recognised, and
    none before the end-pointer's hangover (0.2 s) has passed since the end of speech. How long
    after that is a speed figure, measured by benchmarks/speech.py, not asserted here."""
    loop = asyncio.get_running_loop()

    async def one(call_id: str, word: str) -> float:
        session = await listening.speech.open_session(call_id=call_id)
        caller = CallerAudio(spoken(speech_audio, word), realtime=True)
        got = await hear(session, caller)
        answered = loop.time()
        await session.close()
        assert got.result is not None and got.result.text == word
        assert caller.speech_ended_at is not None
        return answered - caller.speech_ended_at

    latencies = await asyncio.gather(*(one(f"paced-{w}", w) for w in MENU))
    assert all(latency >= 0.2 for latency in latencies), latencies


async def test_a_worker_crash_is_a_no_match_and_the_next_question_is_heard(
    listening: Listening, pool: ProcessEngine, speech_audio: SpeechAudio
) -> None:
    clip = spoken(speech_audio, "billing")
    assert clip.speech_start is not None
    session = await listening.speech.open_session(call_id="call-6")

    def crash() -> None:
        pid = pool.worker_pids[0]
        assert pid is not None
        os.kill(pid, signal.SIGKILL)

    mid_speech = int((clip.speech_start + 0.2) / 0.02)
    got = await hear(session, CallerAudio(clip, at={mid_speech: crash}))
    assert got.result is not None and got.result.is_empty
    assert listening.of(SpeechError)
    again = await hear(session, CallerAudio(clip))
    await session.close()
    assert again.result is not None and again.result.text == "billing"


# Matching and failures, with a scripted engine -------------------------------------------------


@dataclass
class ScriptedEngine:
    """An engine whose final results (or failures) are given by the test."""

    results: list[RecognitionResult | Exception] = field(default_factory=list)
    fail_open: bool = False
    fail_start: bool = False
    finish_delay: float = 0.0
    opened: int = 0
    grammars: list[tuple[str, ...] | None] = field(default_factory=list)
    name: str = "scripted"

    def open_session(self, *, call_id: str) -> ScriptedSession:
        self.opened += 1
        if self.fail_open:
            raise RecognizerError(self.name, "model missing")
        return ScriptedSession(self)


@dataclass
class ScriptedSession:
    engine: ScriptedEngine
    frames: int = 0

    def start(self, grammar: tuple[str, ...] | None) -> None:
        if self.engine.fail_start:
            raise RecognizerError(self.engine.name, "grammar refused")
        self.engine.grammars.append(grammar)

    def accept(self, pcm_frame: bytes) -> None:
        assert len(pcm_frame) == 320
        self.frames += 1

    def partial(self) -> str:
        return ""

    def finish(self) -> RecognitionResult:
        if self.engine.finish_delay:
            import time

            time.sleep(self.engine.finish_delay)  # a stuck engine, on its worker thread
        outcome = self.engine.results.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def close(self) -> None:
        pass


def said(text: str, confidence: float = 0.9, *others: tuple[str, float]) -> RecognitionResult:
    return RecognitionResult(
        text=text,
        confidence=confidence,
        alternatives=tuple(Hypothesis(text=t, confidence=c) for t, c in others),
        engine="scripted",
    )


@dataclass
class Scripted:
    engine: ScriptedEngine
    speech: SpeechInput
    events: list[Event]
    service: SpeechService


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    engine = ScriptedEngine()
    service = SpeechService(engine, workers=1)
    events: list[Event] = []
    settings = ListenerSettings(engine_timeout=0.3, max_reopens=1)
    yield Scripted(engine, SpeechInput(service, settings=settings, publish=events.append), events,
                   service)  # fmt: skip
    await service.aclose()


@pytest.mark.parametrize(
    ("engine_said", "expected", "reason"),
    [
        (said("billing please", 0.8), ("billing", 0.8), None),
        (said("sale", 0.9), ("sales", pytest.approx(0.9 * 0.889, abs=0.01)), None),
        (said("cancel my subscription", 0.9), None, "out_of_grammar"),
        (said("sales and billing", 0.9), None, "ambiguous"),
        (said("billing", 0.3), None, "low_confidence"),
        (said("", 0.0), None, "empty"),
        (said("cancel", 0.9, ("support", 0.7)), ("support", 0.7), None),
    ],
)
async def test_what_the_engine_heard_is_matched_against_the_prompt_phrases(
    scripted: Scripted,
    speech_audio: SpeechAudio,
    engine_said: RecognitionResult,
    expected: tuple[str, float] | None,
    reason: str | None,
) -> None:
    scripted.engine.results.append(engine_said)
    session = await scripted.speech.open_session(call_id="s-1")
    got = await hear(
        session, CallerAudio(spoken(speech_audio, "billing")), confidence_threshold=0.5
    )
    await session.close()
    assert got.result is not None
    assert scripted.engine.grammars == [MENU]
    if expected is None:
        assert got.result.is_empty  # the IVR's no-match
        [event] = scripted.events
        assert isinstance(event, SpeechNoMatch) and event.reason == reason
    else:
        assert (got.result.text, got.result.confidence) == expected
        [event] = scripted.events
        assert isinstance(event, SpeechTranscript) and event.text == engine_said.text


async def test_free_speech_is_returned_as_heard(
    scripted: Scripted, speech_audio: SpeechAudio
) -> None:
    scripted.engine.results.append(said("my internet is down", 0.7))
    session = await scripted.speech.open_session(call_id="s-2")
    got = await hear(session, CallerAudio(spoken(speech_audio, "billing")), grammar=None)
    await session.close()
    assert got.result == said("my internet is down", 0.7)
    assert scripted.engine.grammars == [None]


async def test_engine_failures_are_no_matches_and_the_recogniser_is_replaced(
    scripted: Scripted, speech_audio: SpeechAudio
) -> None:
    clip = spoken(speech_audio, "billing")
    scripted.engine.results.extend(
        [RecognizerError("scripted", "decoder crashed"), said("billing")]
    )
    session = await scripted.speech.open_session(call_id="s-3")
    first = await hear(session, CallerAudio(clip))
    second = await hear(session, CallerAudio(clip))
    scripted.engine.fail_start = True
    third = await hear(session, CallerAudio(clip))
    fourth = await hear(session, CallerAudio(clip))
    silent = await hear(session, CallerAudio(speech_audio.silence(2.0)), no_input_timeout=1.0)
    await session.close()
    assert first.result is not None and first.result.is_empty
    assert second.result is not None and second.result.text == "billing"
    # A refused start costs the recogniser; after max_reopens (1) replacements there is none,
    # and the call still hears speech (a no-match) and silence (no input).
    assert third.result is not None and third.result.is_empty
    assert fourth.result is not None and fourth.result.is_empty
    assert silent.result is None
    assert scripted.engine.opened == 2
    reasons = [e.reason for e in scripted.events if isinstance(e, SpeechError)]
    assert reasons == ["decoder crashed", "grammar refused"]
    assert scripted.service.active_calls == 0


async def test_a_recogniser_that_cannot_open_leaves_end_pointing_working(
    scripted: Scripted, speech_audio: SpeechAudio
) -> None:
    scripted.engine.fail_open = True
    session = await scripted.speech.open_session(call_id="s-4")
    spoke = await hear(session, CallerAudio(spoken(speech_audio, "billing")))
    silent = await hear(session, CallerAudio(speech_audio.silence(2.0)), no_input_timeout=1.0)
    await session.close()
    assert spoke.result is not None and spoke.result.is_empty
    assert len(spoke.speech_started_at_frame) == 1  # barge-in works without a recogniser
    assert silent.result is None
    assert scripted.engine.opened == 2  # the first try and one replacement, then no more
    reasons = [e.reason for e in scripted.events if isinstance(e, SpeechError)]
    assert reasons == ["model missing", "model missing"]


async def test_a_stuck_engine_is_given_up_after_the_engine_timeout(
    scripted: Scripted, speech_audio: SpeechAudio
) -> None:
    scripted.engine.results.append(said("billing"))
    scripted.engine.finish_delay = 1.0
    session = await scripted.speech.open_session(call_id="s-5")
    loop = asyncio.get_running_loop()
    began = loop.time()
    got = await hear(session, CallerAudio(spoken(speech_audio, "billing")))
    # The engine would take 1 s; the answer comes after engine_timeout (0.3 s) instead.
    assert loop.time() - began < 0.9
    assert got.result is not None and got.result.is_empty
    await session.close()


async def test_frames_that_are_not_20_ms_are_skipped(
    scripted: Scripted, speech_audio: SpeechAudio
) -> None:
    scripted.engine.results.append(said("billing"))
    session = await scripted.speech.open_session(call_id="s-6")
    clip = spoken(speech_audio, "billing")

    async def with_junk() -> AsyncIterator[npt.NDArray[np.int16]]:
        async for frame in CallerAudio(clip).frames():
            yield frame
            yield frame[:80]

    got = await session.recognize(
        with_junk(),
        grammar=MENU,
        language="en-US",
        no_input_timeout=3.0,
        max_speech_seconds=10.0,
        prompt_playing=False,
        on_speech_started=lambda: None,
    )
    await session.close()
    assert got is not None and got.text == "billing"
