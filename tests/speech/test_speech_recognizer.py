"""Recognition results and mapping what a caller said onto a prompt's choices."""

from __future__ import annotations

import pytest

from speech.recognizer import (
    Hypothesis,
    NoMatchReason,
    PhraseMatcher,
    RecognitionResult,
    RecognizerError,
    normalize_phrase,
)

MENU = PhraseMatcher(
    {
        "sales": ("sales", "buy something"),
        "billing": ("billing", "invoice", "my bill"),
        "support": ("technical support", "support", "help"),
        "agent": ("agent", "operator", "representative"),
    }
)
YES_NO = PhraseMatcher.from_phrases(["yes", "no"])


def result(text: str, confidence: float, *alternatives: tuple[str, float]) -> RecognitionResult:
    return RecognitionResult(
        text=text,
        confidence=confidence,
        alternatives=tuple(Hypothesis(text=t, confidence=c) for t, c in alternatives),
        engine="test",
    )


@pytest.mark.parametrize(
    ("heard", "choice"),
    [
        ("sales", "sales"),
        ("Sales.", "sales"),
        ("  BILLING  ", "billing"),
        ("I'd like to pay my bill please", "billing"),
        ("a question about my invoice", "billing"),
        ("technical support", "support"),
        ("I need some help", "support"),
        ("can I speak to an operator", "agent"),
        ("sale", "sales"),
    ],
)
def test_what_the_caller_said_maps_to_the_menu_choice(heard: str, choice: str) -> None:
    match = MENU.match(result(heard, 0.9))
    assert not match.no_match
    assert match.choice == choice
    assert match.reason is None
    assert match.heard == heard
    assert 0.5 <= match.score <= 0.9


def test_the_more_specific_phrase_wins_when_one_contains_the_other() -> None:
    match = MENU.match(result("technical support", 0.8))
    assert match.phrase == "technical support"
    assert match.score == pytest.approx(0.8)


@pytest.mark.parametrize(
    "heard",
    ["what is the weather like tomorrow", "cancel my subscription", "hello", "seals"],
)
def test_out_of_grammar_speech_is_rejected_not_forced_onto_the_list(heard: str) -> None:
    match = MENU.match(result(heard, 0.95))
    assert match.no_match
    assert match.choice is None
    assert match.reason is NoMatchReason.OUT_OF_GRAMMAR
    assert match.heard == heard


def test_a_near_word_that_is_a_different_word_is_rejected() -> None:
    assert YES_NO.match_text("call me now").reason is NoMatchReason.OUT_OF_GRAMMAR
    assert YES_NO.match_text("yet").reason is NoMatchReason.OUT_OF_GRAMMAR
    assert YES_NO.match_text("no").choice == "no"


def test_an_unsure_recognition_is_rejected_below_the_threshold() -> None:
    match = MENU.match(result("billing", 0.3))
    assert match.reason is NoMatchReason.LOW_CONFIDENCE
    assert match.score == pytest.approx(0.3)
    strict = PhraseMatcher.from_phrases(["billing"], threshold=0.95)
    assert strict.match(result("billing", 0.9)).no_match
    lenient = PhraseMatcher.from_phrases(["billing"], threshold=0.2)
    assert lenient.match(result("billing", 0.3)).choice == "billing"


def test_two_choices_at_once_are_ambiguous() -> None:
    match = MENU.match(result("sales or billing", 0.9))
    assert match.reason is NoMatchReason.AMBIGUOUS


def test_close_n_best_candidates_for_different_choices_are_ambiguous() -> None:
    match = YES_NO.match(result("yes", 0.55, ("no", 0.5)))
    assert match.reason is NoMatchReason.AMBIGUOUS
    clear = YES_NO.match(result("yes", 0.8, ("no", 0.3)))
    assert clear.choice == "yes"


def test_an_alternative_in_the_grammar_is_used_when_the_best_is_not() -> None:
    match = MENU.match(result("bill in", 0.7, ("billing", 0.65), ("building", 0.2)))
    assert match.choice == "billing"
    assert match.heard == "billing"
    assert match.score == pytest.approx(0.65)


def test_nothing_recognised_is_an_empty_no_match() -> None:
    match = MENU.match(RecognitionResult.empty("test"))
    assert match.reason is NoMatchReason.EMPTY
    assert match.score == 0.0
    assert MENU.match_text(" ... ").reason is NoMatchReason.EMPTY


def test_the_grammar_lists_every_phrase_for_the_recogniser() -> None:
    assert YES_NO.grammar == ("yes", "no")
    assert "technical support" in MENU.grammar
    assert "my bill" in MENU.grammar
    assert len(MENU.grammar) == 11


@pytest.mark.parametrize(
    ("choices", "error", "message"),
    [
        ({}, ValueError, "at least one choice"),
        ({"sales": ()}, ValueError, "choice 'sales' has no phrases"),
        ({"sales": ("?!",)}, ValueError, "phrase with no words"),
        ({"a": ("agent",), "b": ("Agent!",)}, ValueError, "belongs to both 'a' and 'b'"),
        ({"sales": "sales"}, TypeError, "must be a sequence of strings"),
    ],
)
def test_a_bad_phrase_list_is_refused(
    choices: dict[str, tuple[str, ...]], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        PhraseMatcher(choices)


def test_thresholds_must_be_fractions() -> None:
    with pytest.raises(ValueError, match=r"threshold must be within 0\.\.1"):
        PhraseMatcher.from_phrases(["yes"], threshold=1.5)
    with pytest.raises(ValueError, match="min_similarity must be above 0"):
        PhraseMatcher.from_phrases(["yes"], min_similarity=0.0)


def test_normalisation_folds_case_punctuation_and_apostrophes() -> None:
    assert normalize_phrase("  Don't   PRESS—zero! ") == "dont press zero"
    assert normalize_phrase("technical_support") == "technical support"


def test_results_validate_confidence_and_list_the_n_best() -> None:
    full = result("billing", 0.8, ("building", 0.1))
    assert [h.text for h in full.n_best] == ["billing", "building"]
    assert not full.is_empty
    assert RecognitionResult.empty("vosk").is_empty
    with pytest.raises(ValueError, match=r"result confidence must be within 0\.\.1, got 1\.2"):
        result("billing", 1.2)
    with pytest.raises(ValueError, match="hypothesis confidence"):
        Hypothesis(text="x", confidence=-0.1)
    with pytest.raises(ValueError, match="must name its engine"):
        RecognitionResult(text="x", confidence=0.5, engine="")


def test_an_engine_failure_names_the_engine_and_the_reason() -> None:
    error = RecognizerError("vosk", "model directory not found")
    assert error.engine == "vosk"
    assert str(error) == "speech engine 'vosk' failed: model directory not found"


@pytest.mark.parametrize(
    ("heard", "unfinished"),
    [
        ("technical", True),  # begins "technical support"
        ("Technical,", True),
        ("billing", False),  # a phrase by itself, though it begins "billing address"
        ("support", False),  # ends a phrase, begins none
        ("technical support", False),
        ("", False),
        ("banana", False),
    ],
)
def test_words_that_only_begin_a_longer_phrase_are_unfinished(heard: str, unfinished: bool) -> None:
    matcher = PhraseMatcher.from_phrases(("technical support", "billing", "billing address"))
    assert matcher.has_long_phrases
    assert matcher.unfinished(heard) is unfinished


def test_a_menu_of_single_words_has_no_long_phrases() -> None:
    assert not PhraseMatcher.from_phrases(("sales", "billing")).has_long_phrases
