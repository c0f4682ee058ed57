"""Collecting digits and speech, confirming an entry, and choosing a language."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.actions import CollectDigits, ListenSpeech, Play
from ivr.events import IvrInput
from ivr.inputs import NoInput, SpeechRecognized
from ivr.state import IvrUsageError, Phase
from tests.ivr.ivr_helpers import Harness, of_type, texts, tree_from_yaml

ACCOUNT = """
trees:
  main:
    start: account
    nodes:
      account:
        type: collect_digits
        prompt: "Enter your account number, then pound."
        variable: account_number
        min_length: 4
        max_length: 6
        terminator: "#"
        first_timeout: 5
        inter_digit_timeout: 3
        pattern: "^[1-9][0-9]*$"
        invalid_prompt: "That number is not valid."
        timeout_prompt: "Please enter your number."
        max_failures: 2
        max_timeouts: 2
        next: done
        on_failure: failed
      done: {type: hangup, reason: "got {account_number}"}
      failed: {type: hangup, reason: failed}
"""


@pytest.fixture
def account(tmp_path: Path) -> Harness:
    return Harness(tree_from_yaml(tmp_path, ACCOUNT))


def test_digits_until_the_terminator(account: Harness) -> None:
    out = account.start()
    (collect,) = of_type(out, CollectDigits)
    assert (collect.min_digits, collect.max_digits, collect.terminator) == (4, 6, "#")
    account.prompt_done()
    assert account.press("12") == []
    assert account.session.phase is Phase.ENTERING_DIGITS
    assert account.session.next_timer() == account.now + 3
    account.now += 1
    account.press("34#")
    assert account.session.variables["account_number"] == "1234"
    assert account.session.destination == ("hangup", "got {account_number}")


def test_entry_ends_at_max_length_and_extra_keys_are_kept_ahead(account: Harness) -> None:
    account.start()
    account.press("1234567")
    assert account.session.variables["account_number"] == "123456"


def test_inter_digit_timeout_ends_the_entry(account: Harness) -> None:
    account.start()
    account.prompt_done()
    account.press("98765")
    assert account.advance(2.9) == []
    account.advance(0.1)
    assert account.session.variables["account_number"] == "98765"


def test_too_short_or_not_matching_the_pattern_is_invalid(account: Harness) -> None:
    account.start()
    out = account.press("12#")
    assert of_type(out, IvrInput)[0].outcome == "invalid"
    assert texts(out) == ["That number is not valid.", "Enter your account number, then pound."]
    out = account.press("0123#")  # the pattern refuses a leading zero
    assert account.session.destination == ("hangup", "failed")
    assert "account_number" not in account.session.variables


def test_first_timeout_then_failure_route(account: Harness) -> None:
    account.start()
    account.prompt_done()
    out = account.advance(5)
    assert texts(out) == ["Please enter your number.", "Enter your account number, then pound."]
    account.prompt_done()
    account.advance(5)
    assert account.session.destination == ("hangup", "failed")


CONFIRMED = """
trees:
  main:
    start: pin
    nodes:
      pin:
        type: collect_digits
        prompt: "Enter your PIN."
        variable: pin
        min_length: 4
        max_length: 4
        confirm:
          prompt: "You entered {pin}. Press 1 if correct, 2 to try again."
        next: done
        on_failure: done
      done: {type: hangup}
"""


def test_confirmation_yes_keeps_the_entry(tmp_path: Path) -> None:
    call = Harness(tree_from_yaml(tmp_path, CONFIRMED))
    call.start()
    out = call.press("4321")
    assert texts(out) == ["You entered 4321. Press 1 if correct, 2 to try again."]
    assert of_type(out, CollectDigits)[0].max_digits == 1
    call.press("1")
    assert call.session.variables["pin"] == "4321"
    assert call.session.finished


def test_confirmation_no_asks_again(tmp_path: Path) -> None:
    call = Harness(tree_from_yaml(tmp_path, CONFIRMED))
    call.start()
    call.press("4321")
    out = call.press("2")
    assert texts(out) == ["Enter your PIN."]
    assert "pin" not in call.session.variables
    call.press("5555")
    call.press("1")
    assert call.session.variables["pin"] == "5555"


SPEECH = """
trees:
  main:
    start: city
    nodes:
      city:
        type: collect_speech
        prompt: "Which city are you calling from?"
        variable: city
        phrases: [Paris, New York, Tokyo]
        confidence_threshold: 0.6
        timeout: 4
        max_speech: 8
        dtmf: {min_length: 5, max_length: 5, pattern: "^[0-9]{5}$"}
        next: done
        on_failure: failed
      done: {type: hangup}
      failed: {type: hangup, reason: failed}
"""


def test_speech_collection_stores_the_phrase_as_written(tmp_path: Path) -> None:
    call = Harness(tree_from_yaml(tmp_path, SPEECH))
    out = call.start()
    (listen,) = of_type(out, ListenSpeech)
    assert (listen.phrases, listen.confidence_threshold, listen.no_input_timeout) == (
        ("Paris", "New York", "Tokyo"),
        0.6,
        4.0,
    )
    assert listen.dtmf_allowed is True
    call.prompt_done()
    assert call.session.next_timer() == call.now + 4 + 8
    call.say("new york", confidence=0.7)
    assert call.session.variables["city"] == "New York"


def test_speech_collection_falls_back_to_keys(tmp_path: Path) -> None:
    call = Harness(tree_from_yaml(tmp_path, SPEECH))
    call.start()
    call.say("mumble", confidence=0.9)
    call.press("75001")
    assert call.session.variables["city"] == "75001"


def test_speech_below_the_confidence_threshold_is_an_invalid_answer(tmp_path: Path) -> None:
    call = Harness(tree_from_yaml(tmp_path, SPEECH))
    call.start()
    out = call.say("Tokyo", confidence=0.59)  # the node asks for 0.6
    assert [(i.outcome, i.speech) for i in of_type(out, IvrInput)] == [("low_confidence", "Tokyo")]
    assert "city" not in call.session.variables
    call.say("Tokyo", confidence=0.55)
    call.say("Tokyo", confidence=0.3)
    assert call.session.destination == ("hangup", "failed")  # three failures: on_failure


def test_free_speech_without_phrases(tmp_path: Path) -> None:
    call = Harness(
        tree_from_yaml(tmp_path, SPEECH.replace("phrases: [Paris, New York, Tokyo]", ""))
    )
    call.start()
    call.send(NoInput())
    call.say("Lyon, in France", confidence=0.8)
    assert call.session.variables["city"] == "Lyon, in France"


def test_speech_where_nobody_listens_is_a_runner_mistake(tmp_path: Path) -> None:
    call = Harness(tree_from_yaml(tmp_path, CONFIRMED))
    call.start()
    with pytest.raises(IvrUsageError, match="does not listen"):
        call.send(SpeechRecognized(text="hello", confidence=1.0))


LANGUAGES = """
trees:
  main:
    start: pick
    languages: [en, es]
    nodes:
      pick:
        type: language
        prompt: {en: "For English, press 1.", es: "Para español, oprima 2."}
        choices:
          - {dtmf: 1, phrases: [english], language: en}
          - {dtmf: 2, phrases: [español, espanol], language: es}
        max_timeouts: 1
        next: hello
      hello:
        type: play
        prompt: {en: "Welcome.", es: "Bienvenido."}
        next: done
      done: {type: hangup}
"""


def test_language_choice_switches_prompt_sets(tmp_path: Path) -> None:
    call = Harness(tree_from_yaml(tmp_path, LANGUAGES))
    out = call.start()
    assert texts(out) == ["For English, press 1."]
    out = call.say("espanol")
    assert texts(out) == ["Bienvenido."]
    play = of_type(out, Play)[0]
    assert play.language == "es"
    assert call.session.variables["language"] == "es"


def test_language_defaults_to_the_first_when_the_caller_does_not_choose(tmp_path: Path) -> None:
    call = Harness(tree_from_yaml(tmp_path, LANGUAGES))
    call.start()
    call.prompt_done()
    out = call.advance(20)
    assert texts(out) == ["Welcome."]
    assert call.session.language == "en"
