"""The built-in English engine (pocketsphinx, bundled model) on menu words spoken by several
espeak-ng voices through the telephone chain, in-process and in worker processes."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator

import pytest

from speech.events import SpeechError, SpeechNoMatch, SpeechTranscript
from speech.pool import ProcessEngine
from speech.recognizer import NoMatchReason, PhraseMatcher, RecognizerError
from speech.service import SpeechService
from speech.sphinx_engine import (
    SphinxEngine,
    SphinxSettings,
    Upsampler,
    sphinx_engine_factory,
)
from speech.sphinx_grammar import telephone_variants
from tests.speech.speech_audio import Clip, SpeechAudio

MENU = ("sales", "billing", "technical support", "agent", "yes", "no")
# The Klatt voices are the espeak-ng voices this model hears best; en-us and en-gb lost "sales"
# (heard as "billing" or "no") until grammar words got their telephone-band pronunciations.
VOICES = ("en-us+klatt", "en-us+klatt2", "en-us+klatt3", "en-us+klatt4", "en-us", "en-gb")
# Speech that is none of the menu's phrases: other words, sentences, numbers, a hesitation.
OUT_OF_GRAMMAR = (
    "good morning",
    "where is my parcel",
    "twenty two",
    "i lost my password",
    "can you repeat that",
    "change my address",
    "what are your opening hours",
    "three four five",
)


@pytest.fixture(scope="module")
def engine() -> SphinxEngine:
    return SphinxEngine.load()


@pytest.fixture(scope="module")
def processes() -> Iterator[ProcessEngine]:
    pool = ProcessEngine(sphinx_engine_factory(), name="pocketsphinx", processes=1)
    yield pool
    pool.close()


def spoken(audio: SpeechAudio, text: str, voice: str) -> Clip:
    return audio.speech(text, voice=voice, lead=0.3, trail=0.6)


def test_the_upsampler_keeps_a_tone_and_doubles_the_rate() -> None:
    import numpy as np

    tone = (8000 * np.sin(2 * np.pi * 1000 * np.arange(1600) / 8000)).astype("<i2")
    upsampler = Upsampler()
    out = b"".join(upsampler.process(tone[i : i + 160].tobytes()) for i in range(0, 1600, 160))
    samples = np.frombuffer(out, dtype="<i2").astype(float)
    assert len(samples) == 3200
    spectrum = np.abs(np.fft.rfft(samples[400:]))
    peak_hz = np.argmax(spectrum) * 16000 / len(samples[400:])
    assert abs(peak_hz - 1000) < 10
    assert 7000 < np.max(np.abs(samples[400:])) < 9000


def test_menu_words_in_several_voices(engine: SphinxEngine, speech_audio: SpeechAudio) -> None:
    matcher = PhraseMatcher.from_phrases(MENU)
    heard = {}
    for voice in VOICES:  # one caller per call, calls one after the other on one engine
        session = engine.open_session(call_id=f"c-1-{voice}")
        for word in MENU:
            session.start(matcher.grammar)
            for _, frame in spoken(speech_audio, word, voice).frames():
                session.accept(frame)
            heard[voice, word] = matcher.match(session.finish()).choice
        session.close()
    wrong = {key: choice for key, choice in heard.items() if choice != key[1]}
    assert not wrong, f"misrecognised (voice, word) -> heard: {wrong}"


def test_out_of_grammar_speech_is_rejected_and_menu_words_are_not(
    engine: SphinxEngine, speech_audio: SpeechAudio
) -> None:
    matcher = PhraseMatcher.from_phrases(MENU)  # the IVR's default threshold, 0.5
    session = engine.open_session(call_id="c-oog")
    outcomes = {}
    for voice in ("en-us", "en-gb"):
        for text in (*OUT_OF_GRAMMAR, *MENU):
            session.start(matcher.grammar)
            for _, frame in spoken(speech_audio, text, voice).frames():
                session.accept(frame)
            result = session.finish()
            outcomes[voice, text] = (matcher.match(result).choice, round(result.confidence, 2))
    session.close()
    accepted = {k: v for k, v in outcomes.items() if k[1] in OUT_OF_GRAMMAR and v[0] is not None}
    # Measured: 11 of these 16 are rejected; the rejection is partial (docs/speech.md gives the
    # rates), before it none was.
    assert len(accepted) <= 6, f"out-of-grammar speech taken for a menu choice: {accepted}"
    wrong = {k: v for k, v in outcomes.items() if k[1] in MENU and v[0] != k[1]}
    assert not wrong, f"menu words rejected or misrecognised: {wrong}"


def test_hesitations_are_no_matches_not_the_closest_menu_word(
    engine: SphinxEngine, speech_audio: SpeechAudio
) -> None:
    matcher = PhraseMatcher.from_phrases(MENU)
    outcomes = {}
    for voice in ("en-us+klatt", "en-us+klatt3", "en-us", "en-gb"):
        session = engine.open_session(call_id=f"c-hesitation-{voice}")
        for text in ("um", "uh", "er", "hmm"):
            session.start(matcher.grammar)
            for _, frame in spoken(speech_audio, text, voice).frames():
                session.accept(frame)
            outcomes[voice, text] = matcher.match(session.finish())
        session.close()
    taken = {key: match.choice for key, match in outcomes.items() if not match.no_match}
    # Measured: the Klatt voices' 8 are all no-matches, 1 of en-us and en-gb's 8; before the
    # grammar had hesitations, all 16 were taken for "no" (or "yes").
    assert len(taken) <= 8, f"hesitations taken for a menu choice: {taken}"
    reasons = {match.reason for match in outcomes.values() if match.no_match}
    assert NoMatchReason.OUT_OF_GRAMMAR in reasons


def test_without_the_out_of_grammar_check_any_speech_is_confidently_a_phrase(
    speech_audio: SpeechAudio,
) -> None:
    plain = SphinxEngine.load(SphinxSettings(reject_out_of_grammar=False))
    session = plain.open_session(call_id="c-plain")
    confidences = []
    for text in OUT_OF_GRAMMAR[:3]:
        session.start(MENU)
        for _, frame in spoken(speech_audio, text, "en-us").frames():
            session.accept(frame)
        confidences.append(session.finish().confidence)
    session.close()
    assert min(confidences) > 0.9  # the lattice posterior alone cannot tell


def test_telephone_variants_drop_an_edge_sibilant() -> None:
    assert telephone_variants("S EY L Z") == ("S EY L Z", "EY L Z", "S EY L")
    assert telephone_variants("Y EH S") == ("Y EH S", "Y EH")
    assert telephone_variants("N OW") == ("N OW",)
    assert telephone_variants("S IY") == ("S IY",)  # never down to one phone


def test_a_variant_that_sounds_like_another_menu_word_is_left_out(engine: SphinxEngine) -> None:
    from speech.sphinx_grammar import grammar_pronunciations as _grammar_pronunciations

    prons = _grammar_pronunciations(
        {"sales": engine.pronunciations("sales"), "sale": engine.pronunciations("sale")}
    )
    # "sales" without its final Z is "sale": neither word gets that reading as a variant.
    assert "S EY L" not in prons["sales"]
    assert prons["sale"][0] == "S EY L"


def test_free_speech_is_refused_with_a_reason(engine: SphinxEngine) -> None:
    session = engine.open_session(call_id="c-2")
    with pytest.raises(RecognizerError, match="menu phrases only"):
        session.start(None)
    session.close()


def test_words_the_dictionary_cannot_pronounce_are_reported(engine: SphinxEngine) -> None:
    assert engine.unknown_words(["sales", "qzxvbn support"]) == ("qzxvbn",)
    session = engine.open_session(call_id="c-3")
    with pytest.raises(RecognizerError, match="no grammar phrase can be pronounced: qzxvbn"):
        session.start(("qzxvbn",))
    session.close()


def test_silence_gives_an_empty_result(engine: SphinxEngine, speech_audio: SpeechAudio) -> None:
    session = engine.open_session(call_id="c-4")
    session.start(MENU)
    for _, frame in speech_audio.silence(1.5).frames():
        session.accept(frame)
    assert session.finish().is_empty
    session.close()


async def test_worker_processes_recognise_and_survive_a_crash(
    processes: ProcessEngine, speech_audio: SpeechAudio
) -> None:
    service = SpeechService(processes, workers=2, max_streams=4)
    matcher = PhraseMatcher.from_phrases(MENU)
    clip = spoken(speech_audio, "billing", "en-us+klatt")

    async def say(call_id: str, kill_worker: bool = False) -> object:
        call = await service.open_call(call_id)
        await call.start(matcher.grammar)
        for index, (_, frame) in enumerate(clip.frames()):
            call.feed(frame)
            if kill_worker and index == 20:
                await call.partial()  # the session is in the worker now
                pid = processes.worker_pids[0]
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0)
        outcome = await call.recognize(matcher)
        await call.close()
        return outcome

    first = await say("call-1")
    assert isinstance(first, SpeechTranscript) and first.text == "billing"
    crashed = await say("call-2", kill_worker=True)
    assert isinstance(crashed, SpeechError)
    assert "exited with code -9" in crashed.reason
    # The next call gets a fresh worker.
    after = await say("call-3")
    assert isinstance(after, SpeechTranscript) and after.text == "billing"
    await service.aclose()


async def test_an_overloaded_call_reports_an_error_and_drops_audio(
    engine: SphinxEngine, speech_audio: SpeechAudio
) -> None:
    service = SpeechService(engine, workers=1, max_streams=1, max_backlog_frames=10)
    call = await service.open_call("c-5")
    await call.start(MENU)
    for _, frame in speech_audio.silence(1.0).frames():  # 50 frames at once, no await between
        call.feed(frame)
    outcome = await call.recognize()
    assert isinstance(outcome, SpeechError) and "overloaded" in outcome.reason
    # The next prompt starts afresh.
    await call.start(MENU)
    for _, frame in speech_audio.silence(0.1).frames():
        call.feed(frame)
    outcome = await call.recognize()
    assert isinstance(outcome, SpeechNoMatch) and outcome.reason == "empty"
    await call.close()
    await service.aclose()


def test_a_request_cut_short_by_the_pools_closing_is_not_reported_as_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server that stops closes its speech workers under the calls still using them: those
    calls get an error, but the log does not cry "worker failed" at every shutdown."""
    pool = ProcessEngine(sphinx_engine_factory(), name="pocketsphinx", processes=1)
    session = pool.open_session(call_id="call-1")
    session.start(("sales", "billing"))
    pool.close()
    with caplog.at_level("DEBUG", logger="speech.pool"), pytest.raises(RecognizerError):
        session.finish()
    assert not [record for record in caplog.records if record.levelname == "ERROR"]
    assert any("stopped" in record.getMessage() for record in caplog.records)
