"""The IVR runner on an event loop with virtual time: a scripted caller walks the shipped default
tree (and small test trees) through a fake call, TTS, recognizer and CRM."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from config.ivr import IvrTree
from config.loader import default_config_dir, load_configuration
from ivr.actions import EnqueueCall, OfferCallback
from ivr.events import IvrEntered, IvrExited, IvrInput, IvrVoicemailRecorded
from ivr.prompts import SpokenPrompts
from ivr.runner import IvrOutcome, IvrRunner, RunnerSettings
from speech.tts import PromptRenderer as TextToSpeech
from speech.tts import TtsVoice
from tests.ivr.ivr_helpers import TUESDAY_MORNING, tree_from_yaml
from tests.ivr.ivr_runner_fakes import (
    FakeCall,
    FakeCrm,
    FakeRecognizer,
    FakeRenderer,
    Utterance,
    elapsed,
    heard,
    later,
    run_virtual,
)

pytestmark = pytest.mark.timeout(30)

#: A Sunday, 10:00 in New York: the default tree is closed.
SUNDAY_MORNING = datetime(2026, 11, 29, 15, 0, tzinfo=UTC)
GREETING = "For sales, press 1 or say sales."


@pytest.fixture(scope="module")
def main_tree() -> IvrTree:
    return load_configuration(default_config_dir()).ivr["main"]


class Rig:
    """One runner on one fake call, with what it published."""

    def __init__(
        self,
        tree: IvrTree,
        *,
        at: datetime = TUESDAY_MORNING,
        crm: FakeCrm | None = None,
        speech: FakeRecognizer | None = None,
        renderer: FakeRenderer | None = None,
        settings: RunnerSettings | None = None,
    ) -> None:
        self.call = FakeCall()
        self.renderer = renderer or FakeRenderer()
        self.events: list[object] = []
        self.runner = IvrRunner(
            tree,
            self.call,
            renderer=self.renderer,
            publish=self.events.append,
            speech=speech,
            crm=crm or FakeCrm(None),
            settings=settings,
            wall_clock=lambda: at,
        )

    async def run(self, variables: Mapping[str, str] | None = None) -> IvrOutcome:
        return await self.runner.run(
            caller_id="+15555550100", dialed_number="100", variables=variables
        )

    def heard(self) -> list[str]:
        return self.call.heard(self.renderer)

    def of(self, kind: type) -> list[object]:
        return [event for event in self.events if isinstance(event, kind)]

    def inputs(self) -> list[tuple[str, str | None, str]]:
        found: list[tuple[str, str | None, str]] = []
        for event in self.events:
            if isinstance(event, IvrInput):
                found.append((event.node_id, event.digits or event.speech, event.outcome))
        return found


def test_a_key_pressed_during_the_menu_stops_the_greeting_and_reaches_sales(
    main_tree: IvrTree,
) -> None:
    rig = Rig(main_tree)

    async def scenario() -> tuple[IvrOutcome, float]:
        later(3.0, rig.call.press, "1")  # the welcome takes 2 s: one second into the menu
        outcome = await rig.run()
        return outcome, elapsed()

    outcome, took = run_virtual(scenario())
    assert (outcome.destination, outcome.target) == ("queue", "sales")
    assert isinstance(outcome.handoff, EnqueueCall)
    assert outcome.handoff.queue == "sales" and outcome.handoff.priority == 0
    assert outcome.handoff.attributes["department"] == "sales"
    assert rig.heard()[0] == "Thank you for calling Acme."
    assert rig.heard()[1].startswith(GREETING)
    greeting = rig.call.playbacks[1]
    assert greeting.barge_in and greeting.reason == "barged_in"
    assert took == pytest.approx(3.0)
    assert [type(e) for e in rig.events] == [IvrEntered, IvrInput, IvrExited]
    exited = rig.of(IvrExited)[0]
    assert isinstance(exited, IvrExited) and exited.seconds_in_ivr == pytest.approx(3.0)
    assert not rig.call.hung_up_by_server  # the call goes on to the queue


def test_keys_typed_during_the_welcome_answer_the_menu_without_its_greeting(
    main_tree: IvrTree,
) -> None:
    rig = Rig(main_tree)

    async def scenario() -> IvrOutcome:
        later(0.5, rig.call.press, "2")  # the welcome does not allow barge-in
        later(0.7, rig.call.press, "1")
        return await rig.run()

    outcome = run_virtual(scenario())
    assert (outcome.destination, outcome.target) == ("queue", "support")
    assert outcome.variables["product"] == "internet"
    assert rig.heard() == ["Thank you for calling Acme."]
    assert rig.call.playbacks[0].reason == "completed"
    assert rig.inputs() == [("main_menu", "2", "accepted"), ("support_menu", "1", "accepted")]


def test_a_silent_caller_is_asked_again_then_routed_to_the_failure_queue(
    main_tree: IvrTree,
) -> None:
    rig = Rig(main_tree)

    outcome = run_virtual(rig.run())
    assert (outcome.destination, outcome.target) == ("queue", "support")
    heard = rig.heard()
    assert heard[1].startswith(GREETING)
    again = "Press 1 or say sales, 2 or say support, 3 or say billing."
    assert heard[2:] == [
        "Sorry, I did not hear a choice.",
        again,
        "Sorry, I did not hear a choice.",
        again,
        "Let me connect you with someone who can help.",
    ]
    assert [outcome for _node, _value, outcome in rig.inputs()] == ["no_input"] * 3
    # Welcome 2 s, CRM 0.1 s, greeting 2 s + 5 s silence, twice more the timeout prompt and the
    # short greeting 4 s + 5 s silence, exit prompt 2 s.
    exited = rig.of(IvrExited)[0]
    assert isinstance(exited, IvrExited)
    assert exited.seconds_in_ivr == pytest.approx(2 + 0.1 + 7 + 9 + 9 + 2)


def test_an_invalid_key_plays_the_invalid_prompt_then_the_short_greeting(
    main_tree: IvrTree,
) -> None:
    rig = Rig(main_tree)

    async def scenario() -> IvrOutcome:
        later(3.0, rig.call.press, "9")
        later(5.5, rig.call.press, "1")  # during the short greeting after the invalid prompt
        return await rig.run()

    outcome = run_virtual(scenario())
    assert outcome.target == "sales"
    assert rig.heard()[2:] == [
        "Sorry, I did not understand.",
        "Press 1 or say sales, 2 or say support, 3 or say billing.",
    ]
    assert rig.inputs() == [("main_menu", "9", "invalid"), ("main_menu", "1", "accepted")]
    assert rig.call.playbacks[2].reason == "barged_in"


def test_an_account_number_is_collected_confirmed_and_travels_with_the_call(
    main_tree: IvrTree,
) -> None:
    rig = Rig(main_tree)

    async def scenario() -> IvrOutcome:
        later(3.0, rig.call.press, "3")
        for index, key in enumerate("123456#"):
            later(5.0 + index * 0.5, rig.call.press, key)
        later(10.0, rig.call.press, "1")  # "You entered 123456. If this is correct, press 1"
        return await rig.run()

    outcome = run_virtual(scenario())
    assert (outcome.destination, outcome.target) == ("queue", "billing")
    assert isinstance(outcome.handoff, EnqueueCall)
    assert outcome.handoff.attributes["account_number"] == "123456"
    assert outcome.variables["account_number"] == "123456"
    assert "You entered 123456. If this is correct, press 1. To enter it again, press 2." in (
        rig.heard()
    )


def test_a_slow_typist_is_cut_off_by_the_inter_digit_timeout(tmp_path: Path) -> None:
    tree = tree_from_yaml(
        tmp_path,
        """
        trees:
          main:
            start: pin
            nodes:
              pin:
                type: collect_digits
                prompt: "Your PIN, please."
                variable: pin
                min_length: 4
                max_length: 4
                first_timeout: 5
                inter_digit_timeout: 2
                max_failures: 1
                next: done
                on_failure: failed
              done: {type: queue, queue: sales}
              failed: {type: hangup, reason: no_pin}
        """,
    )
    rig = Rig(tree)

    async def scenario() -> IvrOutcome:
        later(2.5, rig.call.press, "12")
        later(5.0, rig.call.press, "34")  # 2.5 s after the last key: too late
        return await rig.run()

    outcome = run_virtual(scenario())
    assert (outcome.destination, outcome.target) == ("hangup", "no_pin")
    assert rig.inputs() == [("pin", "12", "invalid")]
    assert rig.call.hung_up_by_server


def test_saying_billing_goes_to_the_account_step_and_speech_stops_the_greeting(
    main_tree: IvrTree,
) -> None:
    recognizer = FakeRecognizer(Utterance(heard("billing please"), after=0.5, lasting=0.8))
    rig = Rig(main_tree, speech=recognizer)

    async def scenario() -> IvrOutcome:
        later(5.0, rig.call.press, "123456#")
        later(9.0, rig.call.press, "1")
        return await rig.run()

    outcome = run_virtual(scenario())
    assert outcome.target == "billing"
    assert rig.inputs()[0] == ("main_menu", "billing please", "accepted")
    greeting = rig.call.playbacks[1]
    assert greeting.reason == "stopped"
    assert greeting.ended is not None
    assert greeting.ended - greeting.started == pytest.approx(0.5, abs=0.05)  # at speech start
    session = recognizer.session
    assert recognizer.opened == ["call-1"]  # one recognizer session for the whole call
    assert session.grammars[0] is not None and "billing" in session.grammars[0]
    assert session.frames >= 20  # it listened to the call's audio
    assert session.closed and rig.call.listening == 0


def test_speech_silence_counts_as_no_input_and_keys_still_work(main_tree: IvrTree) -> None:
    recognizer = FakeRecognizer(Utterance(None))
    rig = Rig(main_tree, speech=recognizer)

    async def scenario() -> IvrOutcome:
        later(12.0, rig.call.press, "1")
        return await rig.run()

    outcome = run_virtual(scenario())
    assert outcome.target == "sales"
    assert rig.inputs() == [("main_menu", None, "no_input"), ("main_menu", "1", "accepted")]
    assert recognizer.session.prompt_ends >= 1  # the no-input timer starts after the greeting
    assert recognizer.session.cancelled >= 1  # the key answered: listening stopped


def test_a_vip_found_in_the_crm_is_greeted_by_name_and_queued_with_priority(
    main_tree: IvrTree,
) -> None:
    crm = FakeCrm({"name": "Ada", "tier": "vip", "account_number": "998877"}, delay=0.3)
    rig = Rig(main_tree, crm=crm)

    async def scenario() -> IvrOutcome:
        later(5.0, rig.call.press, "1")
        return await rig.run()

    outcome = run_virtual(scenario())
    assert crm.asked == [("+15555550100", ("name", "tier", "account_number"))]
    assert rig.heard()[1] == "Welcome back, Ada. Your call will be given priority."
    assert isinstance(outcome.handoff, EnqueueCall)
    assert outcome.handoff.priority == 10
    assert dict(outcome.handoff.attributes) == {
        "department": "sales",
        "vip": "true",
        "customer": "Ada",
    }
    assert outcome.variables["crm.tier"] == "vip"


def test_a_crm_that_does_not_answer_in_time_does_not_hold_the_caller(
    main_tree: IvrTree,
) -> None:
    crm = FakeCrm({"name": "Ada", "tier": "vip"}, delay=30.0)
    rig = Rig(main_tree, crm=crm)

    async def scenario() -> IvrOutcome:
        later(5.0, rig.call.press, "1")
        return await rig.run()

    outcome = run_virtual(scenario())
    assert outcome.target == "sales"
    assert outcome.variables["crm.found"] == "false"
    menu = rig.call.playbacks[1]
    assert rig.heard()[1].startswith(GREETING)
    assert menu.started - rig.call.playbacks[0].started == pytest.approx(2.0 + 2.0)  # timeout 2
    assert isinstance(outcome.handoff, EnqueueCall) and outcome.handoff.priority == 0


def test_after_hours_a_voicemail_is_recorded_until_the_caller_hangs_up(
    main_tree: IvrTree, tmp_path: Path
) -> None:
    settings = RunnerSettings(voicemail_dir=tmp_path / "voicemail")
    rig = Rig(main_tree, at=SUNDAY_MORNING, settings=settings)

    async def scenario() -> IvrOutcome:
        later(5.0, rig.call.press, "1")  # during the after-hours menu
        later(20.0, rig.call.leave)
        return await rig.run()

    outcome = run_virtual(scenario())
    assert rig.heard()[1].startswith("Our offices are closed.")
    assert rig.heard()[-1] == "beep.wav"
    assert (outcome.destination, outcome.target) == ("voicemail", "general")
    recorded = outcome.voicemail
    assert isinstance(recorded, IvrVoicemailRecorded) and recorded.mailbox == "general"
    # Welcome and closed prompts 4 s, menu barged in at 5 s, voicemail prompt 2 s, beep 2 s:
    # recording from 9 s until the caller leaves at 20 s.
    assert recorded.duration_seconds == pytest.approx(11.0)
    path, _started = rig.call.recordings[0]
    assert Path(path).parent == tmp_path / "voicemail" / "general"
    assert Path(path).name.startswith("call-1-") and path.endswith(".wav")
    assert (tmp_path / "voicemail" / "beep.wav").stat().st_size > 1000  # a real tone
    assert rig.of(IvrVoicemailRecorded) == [recorded]


def test_the_pound_key_ends_a_voicemail_and_the_ivr_hangs_up(
    main_tree: IvrTree, tmp_path: Path
) -> None:
    settings = RunnerSettings(voicemail_dir=tmp_path)
    rig = Rig(main_tree, at=SUNDAY_MORNING, settings=settings)

    async def scenario() -> IvrOutcome:
        later(5.0, rig.call.press, "1")
        later(15.0, rig.call.press, "#")
        return await rig.run()

    outcome = run_virtual(scenario())
    assert outcome.destination == "voicemail"
    assert outcome.voicemail is not None
    assert outcome.voicemail.duration_seconds == pytest.approx(6.0)
    assert rig.call.hung_up_by_server


def test_a_voicemail_stops_at_its_maximum_length(tmp_path: Path) -> None:
    tree = tree_from_yaml(
        tmp_path,
        """
        trees:
          main:
            start: message
            nodes:
              message: {type: voicemail, mailbox: sales, beep: false, max_seconds: 30}
        """,
    )
    rig = Rig(tree, settings=RunnerSettings(voicemail_dir=tmp_path))
    outcome = run_virtual(rig.run())
    assert outcome.voicemail is not None
    assert outcome.voicemail.duration_seconds == pytest.approx(30.0)
    assert rig.heard() == []  # no prompt, no beep
    assert rig.call.hung_up_by_server


def test_asking_for_a_callback_hands_it_over_and_hangs_up(main_tree: IvrTree) -> None:
    rig = Rig(main_tree, at=SUNDAY_MORNING)

    async def scenario() -> IvrOutcome:
        later(3.0, rig.call.press, "2")
        return await rig.run()

    outcome = run_virtual(scenario())
    assert isinstance(outcome.handoff, OfferCallback)
    assert (outcome.handoff.queue, outcome.handoff.number) == ("support", "+15555550100")
    assert rig.heard()[-1].startswith("Thank you. We will call you back")
    assert rig.call.playbacks[-1].reason == "completed"  # said in full before hanging up
    assert rig.call.hung_up_by_server


def test_a_caller_hanging_up_mid_prompt_ends_the_session_cleanly(main_tree: IvrTree) -> None:
    recognizer = FakeRecognizer()
    rig = Rig(main_tree, speech=recognizer)

    async def scenario() -> tuple[IvrOutcome, float, int]:
        later(2.5, rig.call.leave)
        outcome = await rig.run()
        return outcome, elapsed(), len(asyncio.all_tasks())

    outcome, took, tasks = run_virtual(scenario())
    assert (outcome.destination, outcome.target) == ("abandoned", "caller_hung_up")
    assert outcome.handoff is None
    assert took == pytest.approx(2.5)
    assert tasks == 1  # only the test itself: nothing of the runner is left behind
    assert rig.call.playbacks[1].reason == "stopped"
    assert not rig.call.hung_up_by_server
    assert recognizer.session.closed and rig.call.listening == 0
    assert [type(e) for e in rig.events] == [IvrEntered, IvrExited]


def test_a_prompt_that_cannot_be_rendered_is_skipped(main_tree: IvrTree) -> None:
    rig = Rig(main_tree, renderer=FakeRenderer(fail_on=["Thank you for calling"]))

    async def scenario() -> IvrOutcome:
        later(1.0, rig.call.press, "1")
        return await rig.run()

    outcome = run_virtual(scenario())
    assert outcome.target == "sales"
    assert rig.heard()[0].startswith(GREETING)


def test_keys_beyond_the_inbox_bound_are_dropped(tmp_path: Path) -> None:
    tree = tree_from_yaml(
        tmp_path,
        """
        trees:
          main:
            start: number
            nodes:
              number:
                type: collect_digits
                prompt: "Your number."
                variable: number
                min_length: 1
                max_length: 20
                terminator: "#"
                next: done
                on_failure: done
              done: {type: queue, queue: sales}
        """,
    )
    rig = Rig(tree, settings=RunnerSettings(max_pending_digits=4))

    async def scenario() -> IvrOutcome:
        # Ten keys at once are read one at a time: the inbox holds four of them.
        later(0.5, rig.call.press, "1234567890")
        later(1.0, rig.call.press, "#")
        return await rig.run()

    outcome = run_virtual(scenario())
    number = outcome.variables["number"]
    assert number == "1234"


def test_file_prompts_are_played_from_the_prompts_folder(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "hello.wav").write_bytes(b"")  # the call plays it; its content is not read here
    tree = tree_from_yaml(
        tmp_path,
        """
        trees:
          main:
            start: hello
            nodes:
              hello: {type: play, prompt: {file: hello.wav}, next: bye}
              bye: {type: hangup, prompt: "Goodbye, {caller_id}."}
        """,
    )
    rig = Rig(tree)
    outcome = run_virtual(rig.run())
    assert outcome.destination == "hangup"
    assert rig.call.playbacks[0].files == (str(prompts / "hello.wav"),)
    assert rig.heard()[1] == "Goodbye, +15555550100."
    assert rig.renderer.rendered == [("Goodbye, +15555550100.", "en")]


@pytest.mark.parametrize(
    ("setting", "value"),
    [("max_prompt_seconds", 0.0), ("max_pending_digits", 0), ("end_recording_key", "x")],
)
def test_settings_that_cannot_work_are_refused(setting: str, value: object) -> None:
    with pytest.raises(ValueError, match=setting):
        RunnerSettings(**{setting: value})  # type: ignore[arg-type]


def test_text_prompts_are_spoken_in_the_voice_of_the_callers_language(tmp_path: Path) -> None:
    prompts = SpokenPrompts(TextToSpeech(tmp_path), {"es": TtsVoice(voice="es-419")})
    assert prompts.voice_for("es").voice == "es-419"
    assert prompts.voice_for("pt-BR").voice == "pt-br"  # espeak-ng's own voice names
