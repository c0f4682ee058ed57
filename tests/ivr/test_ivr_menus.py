"""Menus and collections: greetings, barge-in, retry counters and timeouts, with a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.actions import CollectDigits, EnqueueCall, Hangup, ListenSpeech, Play, StopPlayback
from ivr.events import IvrExited, IvrInput
from ivr.inputs import NoInput, NoMatch, PromptFinished
from ivr.state import Phase
from tests.ivr.ivr_helpers import Harness, of_type, texts, tree_from_yaml

MENU = """
trees:
  main:
    start: menu
    nodes:
      menu:
        type: menu
        greet_long: "For sales press 1 or say sales. For support press 2."
        greet_short: "1 sales, 2 support."
        invalid_prompt: "Sorry, that is not a choice."
        timeout_prompt: "I did not hear you."
        exit_prompt: "Transferring you to an operator."
        choices:
          - {dtmf: 1, phrases: [sales, buy something], next: sales, set: {department: sales}}
          - {dtmf: 2, phrases: [support], next: support}
          - {dtmf: "0", phrases: [operator], next: operator}
        timeout: 5
        max_failures: 3
        max_timeouts: 2
        confidence_threshold: 0.5
        on_failure: operator
        on_timeout: goodbye
      sales: {type: queue, queue: sales}
      support: {type: queue, queue: support}
      operator: {type: queue, queue: billing, priority: 3}
      goodbye: {type: hangup, prompt: "Goodbye.", reason: no_answer}
"""


@pytest.fixture
def menu(tmp_path: Path) -> Harness:
    return Harness(tree_from_yaml(tmp_path, MENU))


def test_menu_plays_the_long_greeting_and_listens_for_keys_and_speech(menu: Harness) -> None:
    out = menu.start()
    (play,) = of_type(out, Play)
    assert texts(out) == ["For sales press 1 or say sales. For support press 2."]
    assert play.barge_in is True
    (collect,) = of_type(out, CollectDigits)
    assert (collect.max_digits, collect.first_timeout) == (1, 5.0)
    (listen,) = of_type(out, ListenSpeech)
    assert listen.phrases == ("sales", "buy something", "support", "operator")
    assert listen.dtmf_allowed is True
    assert menu.session.phase is Phase.PROMPTING
    assert menu.session.next_timer() is None  # the silence timer starts after the greeting


def test_key_during_greeting_stops_it_and_routes(menu: Harness) -> None:
    menu.start()
    out = menu.press("1")
    assert isinstance(out[0], StopPlayback)
    (event,) = of_type(out, IvrInput)
    assert (event.kind, event.digits, event.outcome, event.attempt) == ("dtmf", "1", "accepted", 1)
    (enqueue,) = of_type(out, EnqueueCall)
    assert enqueue.queue == "sales"
    assert enqueue.variables["department"] == "sales"
    (exited,) = of_type(out, IvrExited)
    assert (exited.destination, exited.target, exited.route) == (
        "queue",
        "sales",
        ("menu", "sales"),
    )
    # The prompt stopped by barge-in reports its end late: ignored.
    assert menu.send(PromptFinished(play_id=menu.last_play().play_id)) == []


def test_spoken_choice_inside_a_sentence(menu: Harness) -> None:
    menu.start()
    menu.prompt_done()
    out = menu.say("I would like to buy something please", confidence=0.8)
    (event,) = of_type(out, IvrInput)
    assert (event.kind, event.speech, event.confidence) == (
        "speech",
        "I would like to buy something please",
        0.8,
    )
    assert of_type(out, EnqueueCall)[0].queue == "sales"


def test_low_confidence_best_but_confident_alternative(menu: Harness) -> None:
    menu.start()
    out = menu.say("sails", confidence=0.3, alternatives=(("support", 0.6),))
    assert of_type(out, EnqueueCall)[0].queue == "support"


def test_low_confidence_counts_as_a_failure(menu: Harness) -> None:
    menu.start()
    out = menu.say("sales", confidence=0.2)
    assert of_type(out, IvrInput)[0].outcome == "low_confidence"
    assert texts(out) == ["Sorry, that is not a choice.", "1 sales, 2 support."]


def test_ambiguous_utterance_is_not_guessed(menu: Harness) -> None:
    menu.start()
    out = menu.say("sales or support", confidence=0.9)
    assert of_type(out, IvrInput)[0].outcome == "no_match"


def test_invalid_answers_then_failure_route_after_max_failures(menu: Harness) -> None:
    menu.start()
    out = menu.press("7")
    assert texts(out) == ["Sorry, that is not a choice.", "1 sales, 2 support."]
    assert of_type(out, IvrInput)[0].attempt == 1
    menu.prompt_done()
    out = menu.send(NoMatch())
    assert of_type(out, IvrInput)[0].outcome == "no_match"
    assert of_type(out, IvrInput)[0].attempt == 2
    out = menu.press("9")
    assert of_type(out, IvrInput)[0].attempt == 3
    assert texts(out) == ["Transferring you to an operator."]
    assert not of_type(out, EnqueueCall)
    out = menu.prompt_done()
    enqueue = of_type(out, EnqueueCall)[0]
    assert (enqueue.queue, enqueue.priority) == ("billing", 3)
    assert menu.session.route == ("menu", "operator")


def test_silence_times_out_with_the_fake_clock(menu: Harness) -> None:
    menu.start()
    menu.now += 8  # the greeting plays for 8 seconds
    menu.prompt_done()
    assert menu.session.next_timer() == menu.now + 5 + 10  # speech gets time to finish
    assert menu.advance(14.9) == []
    out = menu.advance(0.1)
    (event,) = of_type(out, IvrInput)
    assert (event.kind, event.outcome) == ("none", "no_input")
    assert texts(out) == ["I did not hear you.", "1 sales, 2 support."]
    assert menu.session.next_timer() is None


def test_max_timeouts_leads_to_the_timeout_route(menu: Harness) -> None:
    menu.start()
    menu.prompt_done()
    menu.send(NoInput())  # the speech layer's verdict counts like the timer
    menu.prompt_done()
    out = menu.advance(15)
    assert texts(out) == ["Transferring you to an operator."]
    out = menu.prompt_done()
    assert texts(out) == ["Goodbye."]
    out = menu.prompt_done()
    assert of_type(out, Hangup) == [Hangup(reason="no_answer")]
    assert menu.session.destination == ("hangup", "no_answer")


def test_failures_and_timeouts_are_counted_separately(menu: Harness) -> None:
    menu.start()
    menu.press("7")
    menu.prompt_done()
    menu.send(NoInput())
    menu.press("8")
    assert menu.session.phase is Phase.PROMPTING  # 2 failures, 1 timeout: still asking
    out = menu.press("9")
    assert texts(out) == ["Transferring you to an operator."]


KEYS_ONLY = """
trees:
  main:
    start: menu
    nodes:
      menu:
        type: menu
        greet_long: "Press 1, 12 or 3."
        choices:
          - {dtmf: 1, next: one}
          - {dtmf: 12, next: twelve}
          - {dtmf: 3, next: three}
        timeout: 4
        inter_digit_timeout: 2
        on_failure: one
      one: {type: hangup, reason: one}
      twelve: {type: hangup, reason: twelve}
      three: {type: hangup, reason: three}
"""


def test_keys_only_menu_does_not_listen_to_speech(tmp_path: Path) -> None:
    call = Harness(tree_from_yaml(tmp_path, KEYS_ONLY))
    out = call.start()
    assert not of_type(out, ListenSpeech)
    call.prompt_done()
    assert call.session.next_timer() == call.now + 4


def test_key_that_starts_a_longer_key_waits_for_the_inter_digit_timeout(tmp_path: Path) -> None:
    call = Harness(tree_from_yaml(tmp_path, KEYS_ONLY))
    call.start()
    call.prompt_done()
    assert call.press("1") == []
    assert call.session.phase is Phase.ENTERING_DIGITS
    assert call.session.next_timer() == call.now + 2
    out = call.advance(2)
    assert call.session.destination == ("hangup", "one")
    assert of_type(out, IvrInput)[0].digits == "1"


def test_two_key_choice_and_unambiguous_key(tmp_path: Path) -> None:
    call = Harness(tree_from_yaml(tmp_path, KEYS_ONLY))
    call.start()
    call.press("1")
    call.press("2")
    assert call.session.destination == ("hangup", "twelve")
    call = Harness(tree_from_yaml(tmp_path, KEYS_ONLY))
    call.start()
    call.press("3")
    assert call.session.destination == ("hangup", "three")


SUBMENUS = """
trees:
  main:
    start: top
    nodes:
      top:
        type: menu
        greet_long: "Main menu."
        greet_short: "Main."
        choices:
          - {dtmf: 1, next: middle}
          - {dtmf: 9, phrases: [done], next: done}
        on_failure: done
      middle:
        type: menu
        greet_long: "Middle menu."
        choices:
          - {dtmf: 1, next: info}
          - {dtmf: "*", action: back}
          - {dtmf: "#", action: repeat}
        on_failure: done
      info: {type: play, prompt: "Some information.", next: bottom}
      bottom:
        type: menu
        greet_long: "Bottom menu."
        choices:
          - {dtmf: "*", action: back}
          - {dtmf: "0", action: top}
        on_failure: done
      done: {type: hangup}
"""


def test_sub_menus_back_top_and_repeat(tmp_path: Path) -> None:
    call = Harness(tree_from_yaml(tmp_path, SUBMENUS))
    call.start()
    assert texts(call.press("1")) == ["Middle menu."]
    assert texts(call.press("#")) == ["Middle menu."]
    assert texts(call.press("1")) == ["Some information."]
    assert texts(call.prompt_done()) == ["Bottom menu."]
    assert texts(call.press("*")) == ["Middle menu."]
    call.press("1")
    call.prompt_done()
    assert texts(call.press("0")) == ["Main menu."]
    assert texts(call.press("1")) == ["Middle menu."]
    assert texts(call.press("*")) == ["Main menu."]
    call.say("done")
    assert call.session.route == (
        "top",
        "middle",
        "middle",
        "info",
        "bottom",
        "middle",
        "info",
        "bottom",
        "top",
        "middle",
        "top",
        "done",
    )


def test_repeat_resets_the_retry_counters(tmp_path: Path) -> None:
    call = Harness(tree_from_yaml(tmp_path, SUBMENUS))
    call.start()
    call.press("1")
    call.press("5")
    call.press("5")  # two failures of three
    call.press("#")
    call.press("5")
    call.press("5")
    assert call.session.phase is Phase.PROMPTING
    assert texts(call.press("5")) == []
    assert call.session.destination == ("hangup", "normal")


def test_play_with_barge_in_keeps_the_key_for_the_next_menu(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: hello
        nodes:
          hello: {type: play, prompt: "A long announcement.", barge_in: true, next: menu}
          menu:
            type: menu
            greet_long: "Press 1."
            choices:
              - {dtmf: 1, next: done}
            on_failure: done
          done: {type: hangup, reason: chosen}
    """
    call = Harness(tree_from_yaml(tmp_path, text))
    call.start()
    out = call.press("1")
    assert isinstance(out[0], StopPlayback)
    assert texts(out) == []  # the menu's greeting is skipped: the caller already answered
    assert call.session.destination == ("hangup", "chosen")
