"""Speech events: names, validation and their JSON-friendly shape."""

from __future__ import annotations

import dataclasses
import json

import pytest

from speech.events import SpeechNoInput, SpeechNoMatch, SpeechTranscript
from speech.recognizer import Hypothesis, PhraseMatcher, RecognitionResult


def test_event_types_are_dotted_and_versioned() -> None:
    assert (SpeechTranscript.TYPE, SpeechTranscript.VERSION) == ("speech.transcript", 1)
    assert (SpeechNoInput.TYPE, SpeechNoInput.VERSION) == ("speech.no_input", 1)
    assert (SpeechNoMatch.TYPE, SpeechNoMatch.VERSION) == ("speech.no_match", 1)


def test_a_transcript_carries_the_n_best_from_the_result() -> None:
    result = RecognitionResult(
        text="billing",
        confidence=0.82,
        alternatives=(
            Hypothesis(text="building", confidence=0.1),
            Hypothesis(text="filling", confidence=0.05),
        ),
        engine="vosk",
    )
    event = SpeechTranscript.from_result(call_id="c-1", result=result)
    assert event.text == "billing"
    assert event.confidence == 0.82
    assert event.alternatives == ("building", "filling")
    assert event.alternative_confidences == (0.1, 0.05)
    assert event.engine == "vosk"
    assert json.loads(json.dumps(dataclasses.asdict(event))) == {
        "call_id": "c-1",
        "text": "billing",
        "confidence": 0.82,
        "alternatives": ["building", "filling"],
        "alternative_confidences": [0.1, 0.05],
        "engine": "vosk",
    }


def test_a_rejected_match_becomes_a_no_match_event_with_its_reason() -> None:
    match = PhraseMatcher.from_phrases(["sales", "billing"]).match_text("the weather", 0.9)
    event = SpeechNoMatch.from_match(call_id="c-2", match=match, engine="pocketsphinx")
    assert (event.text, event.reason, event.confidence) == ("the weather", "out_of_grammar", 0.0)
    accepted = PhraseMatcher.from_phrases(["sales"]).match_text("sales")
    with pytest.raises(ValueError, match="chose 'sales': it is not a no-match"):
        SpeechNoMatch.from_match(call_id="c-2", match=accepted, engine="pocketsphinx")


def test_no_input_reports_how_long_the_caller_was_silent() -> None:
    event = SpeechNoInput(call_id="c-3", waited_seconds=5.0)
    assert dataclasses.asdict(event) == {"call_id": "c-3", "waited_seconds": 5.0}
    with pytest.raises(ValueError, match="waited_seconds must be >= 0"):
        SpeechNoInput(call_id="c-3", waited_seconds=-1.0)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SpeechNoInput(call_id="", waited_seconds=1.0), "call_id must not be empty"),
        (
            lambda: SpeechTranscript(call_id="c", text="x", confidence=1.5, engine="e"),
            "confidence must be within 0..1",
        ),
        (
            lambda: SpeechTranscript(
                call_id="c", text="x", confidence=0.5, alternatives=("y",), engine="e"
            ),
            "1 alternatives but 0 alternative confidences",
        ),
        (
            lambda: SpeechTranscript(call_id="c", text="x", confidence=0.5, engine=""),
            "engine must not be empty",
        ),
        (
            lambda: SpeechNoMatch(call_id="c", text="", confidence=0.0, reason="", engine="e"),
            "reason must not be empty",
        ),
    ],
)
def test_events_refuse_invalid_values(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


def test_events_are_immutable() -> None:
    event = SpeechNoInput(call_id="c", waited_seconds=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.waited_seconds = 2.0  # type: ignore[misc]
