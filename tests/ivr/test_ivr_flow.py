"""The other node types: play, conditions, variables, CRM lookup, and every way out of a tree."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from config.ivr import GotoNode, load_ivr_trees
from ivr.actions import (
    CrmLookup,
    EnqueueCall,
    Hangup,
    OfferCallback,
    Play,
    PromptPart,
    RecordVoicemail,
    Transfer,
)
from ivr.events import IvrEntered, IvrExited, IvrVoicemailRecorded
from ivr.inputs import CallerHungUp, CrmLookupResult, PromptFinished, RecordingFinished
from ivr.state import IvrUsageError, Phase
from tests.ivr.ivr_helpers import (
    QUEUES,
    SKILLS,
    Harness,
    of_type,
    texts,
    tree_from_yaml,
    write_tree_files,
)

HOURS = """
holidays:
  us: [12-25, 2026-11-26]
trees:
  main:
    start: hours
    timezone: America/New_York
    nodes:
      hours:
        type: condition
        branches:
          - when: {holiday: us}
            next: holiday
          - when: {time: {days: mon-fri, from: "08:00", to: "18:00"}}
            next: open
          - when: {time: {days: fri, from: "22:00", to: "02:00"}}
            next: night_shift
        otherwise: closed
      holiday: {type: hangup, reason: holiday}
      open: {type: hangup, reason: open}
      night_shift: {type: hangup, reason: night_shift}
      closed: {type: hangup, reason: closed}
"""


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 11, 24, 13, 0, tzinfo=UTC), "open"),  # Tuesday 08:00 in New York
        (datetime(2026, 11, 24, 12, 59, tzinfo=UTC), "closed"),  # 07:59
        (datetime(2026, 11, 24, 23, 0, tzinfo=UTC), "closed"),  # 18:00: the window has ended
        (datetime(2026, 11, 26, 15, 0, tzinfo=UTC), "holiday"),  # Thanksgiving 2026
        (datetime(2027, 12, 25, 15, 0, tzinfo=UTC), "holiday"),  # Christmas, every year
        (datetime(2026, 11, 28, 4, 0, tzinfo=UTC), "night_shift"),  # Friday 23:00
        (datetime(2026, 11, 28, 6, 30, tzinfo=UTC), "night_shift"),  # Saturday 01:30
        (datetime(2026, 11, 28, 7, 0, tzinfo=UTC), "closed"),  # Saturday 02:00
        (datetime(2026, 7, 7, 12, 30, tzinfo=UTC), "open"),  # 08:30 in summer time (UTC-4)
    ],
)
def test_business_hours_in_the_trees_time_zone(
    tmp_path: Path, moment: datetime, expected: str
) -> None:
    call = Harness(tree_from_yaml(tmp_path, HOURS))
    call.start(at=moment)
    assert call.session.destination == ("hangup", expected)


def test_time_advances_with_the_monotonic_clock(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: wait
        timezone: UTC
        nodes:
          wait: {type: play, prompt: "Please hold.", next: check}
          check:
            type: condition
            branches:
              - when: {time: {from: "09:00", to: "17:00"}}
                next: open
            otherwise: closed
          open: {type: hangup, reason: open}
          closed: {type: hangup, reason: closed}
    """
    call = Harness(tree_from_yaml(tmp_path, text))
    call.start(at=datetime(2026, 11, 24, 8, 59, 30, tzinfo=UTC))
    call.now += 45  # the announcement lasts 45 s: it is now 09:00:15
    call.prompt_done()
    assert call.session.destination == ("hangup", "open")


VARIABLES = """
trees:
  main:
    start: lookup
    variables: {tier: standard, priority: "1"}
    nodes:
      lookup:
        type: crm_lookup
        key: "{caller_id}"
        fields: [name, tier]
        timeout: 2
        next: classify
        on_not_found: unknown
      classify:
        type: condition
        branches:
          - when:
              all:
                - {crm: tier, equals: vip}
                - not: {caller_id: "^\\\\+1900"}
            next: vip
          - when:
              any:
                - {variable: crm.name, matches: "^Dr\\\\b"}
                - {variable: tier, one_of: [gold, silver]}
            next: doctor
        otherwise: regular
      vip:
        type: set_variable
        set: {priority: "10", greeting: "Hello {crm.name}, you are {crm.tier}"}
        next: queue
      doctor: {type: set_variable, set: {priority: "5"}, next: queue}
      regular: {type: goto, next: queue}
      unknown:
        type: condition
        branches:
          - when: {variable: crm.name, present: false}
            next: queue
        otherwise: regular
      queue:
        type: queue
        queue: sales
        priority: "{priority}"
        skills: [sales, "{language}"]
        attributes: {vip: "{crm.tier}", who: "{crm.name}"}
"""


def looked_up(
    tmp_path: Path, found: bool, caller_id: str = "+15555550100", **fields: str
) -> Harness:
    call = Harness(tree_from_yaml(tmp_path, VARIABLES))
    out = call.start(caller_id=caller_id)
    (lookup,) = of_type(out, CrmLookup)
    assert (lookup.key, lookup.fields, lookup.timeout) == (caller_id, ("name", "tier"), 2.0)
    assert call.session.phase is Phase.LOOKING_UP
    call.send(CrmLookupResult(lookup_id=lookup.lookup_id, found=found, fields=fields))
    return call


def test_crm_record_marks_a_vip(tmp_path: Path) -> None:
    call = looked_up(tmp_path, True, name="Ada", tier="vip", ssn="not requested")
    (enqueue,) = of_type(call.log, EnqueueCall)
    assert enqueue.priority == 10
    assert dict(enqueue.skills) == {"sales": 1, "en": 1}
    assert dict(enqueue.attributes) == {"vip": "vip", "who": "Ada"}
    assert enqueue.variables["greeting"] == "Hello Ada, you are vip"
    assert enqueue.variables["crm.found"] == "true"
    assert "crm.ssn" not in enqueue.variables
    assert call.session.route == ("lookup", "classify", "vip", "queue")


def test_caller_id_pattern_and_regex_on_a_crm_field(tmp_path: Path) -> None:
    call = looked_up(tmp_path, True, caller_id="+19005550100", name="Dr Who", tier="vip")
    assert of_type(call.log, EnqueueCall)[0].priority == 5


def test_variable_from_the_tree_defaults(tmp_path: Path) -> None:
    call = Harness(tree_from_yaml(tmp_path, VARIABLES))
    out = call.start(variables={"tier": "gold"})
    call.send(CrmLookupResult(lookup_id=of_type(out, CrmLookup)[0].lookup_id, found=True))
    assert of_type(call.log, EnqueueCall)[0].priority == 5


def test_no_crm_record(tmp_path: Path) -> None:
    call = looked_up(tmp_path, False)
    assert call.session.route == ("lookup", "unknown", "queue")
    assert of_type(call.log, EnqueueCall)[0].priority == 1


def test_crm_lookup_timeout_and_late_answer(tmp_path: Path) -> None:
    call = Harness(tree_from_yaml(tmp_path, VARIABLES))
    out = call.start()
    lookup = of_type(out, CrmLookup)[0]
    assert call.session.next_timer() == call.now + 2
    assert call.advance(1.5) == []
    call.advance(0.5)
    assert call.session.variables["crm.found"] == "false"
    assert call.session.route == ("lookup", "unknown", "queue")
    late = CrmLookupResult(lookup_id=lookup.lookup_id, found=True, fields={"name": "Ada"})
    assert call.send(late) == []


def test_play_then_transfer_to_an_external_number(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "hold.wav").write_bytes(b"RIFF")
    text = """
    trees:
      main:
        start: hello
        variables: {partner: "+33142000000"}
        nodes:
          hello:
            type: play
            prompt: [{file: hold.wav}, "Calling {partner} for you."]
            next: out
          out: {type: transfer, kind: external, target: "{partner}", trunk: carrier}
    """
    call = Harness(tree_from_yaml(tmp_path, text))
    out = call.start()
    assert of_type(out, IvrEntered)[0].node_id == "hello"
    (play,) = of_type(out, Play)
    assert play.prompts == (
        PromptPart(file="hold.wav", folder=str(prompts)),
        PromptPart(text="Calling +33142000000 for you."),
    )
    assert play.barge_in is False
    assert call.send(PromptFinished(play_id=play.play_id + 7)) == []  # not the awaited prompt
    out = call.prompt_done()
    assert of_type(out, Transfer) == [
        Transfer(
            kind="external",
            target="+33142000000",
            trunk="carrier",
            variables=call.session.variables,
        )
    ]
    assert of_type(out, IvrExited)[0].destination == "transfer"


@pytest.mark.parametrize(
    ("kind", "target", "expected"),
    [("agent", "{account_owner}", "carol"), ("extension", "2{desk}", "2042")],
)
def test_transfer_to_an_agent_or_an_extension_from_variables(
    tmp_path: Path, kind: str, target: str, expected: str
) -> None:
    text = f"""
    trees:
      main:
        start: out
        variables: {{account_owner: carol, desk: "042"}}
        nodes:
          out: {{type: transfer, kind: {kind}, target: "{target}"}}
    """
    call = Harness(tree_from_yaml(tmp_path, text))
    out = call.start()
    (transfer,) = of_type(out, Transfer)
    assert (transfer.kind, transfer.target, transfer.trunk) == (kind, expected, None)
    assert transfer.variables["account_owner"] == "carol"
    assert call.session.destination == ("transfer", expected)


def test_voicemail_records_and_reports_the_recording(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: vm
        nodes:
          vm:
            type: voicemail
            prompt: "Leave a message after the tone."
            mailbox: sales
            max_seconds: 60
    """
    call = Harness(tree_from_yaml(tmp_path, text))
    call.start()
    out = call.prompt_done()
    (record,) = of_type(out, RecordVoicemail)
    assert (record.mailbox, record.beep, record.max_seconds) == ("sales", True, 60)
    assert call.session.phase is Phase.RECORDING
    call.now += 42
    out = call.send(
        RecordingFinished(record_id=record.record_id, recording_id="rec-7", duration_seconds=41.5)
    )
    (saved,) = of_type(out, IvrVoicemailRecorded)
    assert (saved.mailbox, saved.recording_id, saved.duration_seconds) == ("sales", "rec-7", 41.5)
    assert of_type(out, Hangup) == [Hangup(reason="voicemail")]
    exited = of_type(out, IvrExited)[0]
    assert (exited.destination, exited.target, exited.seconds_in_ivr) == ("voicemail", "sales", 42)


def test_callback_offer_and_hangup(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: cb
        nodes:
          cb: {type: callback, queue: support}
    """
    call = Harness(tree_from_yaml(tmp_path, text))
    out = call.start(caller_id="+15550001111")
    assert of_type(out, OfferCallback)[0].number == "+15550001111"
    assert of_type(out, OfferCallback)[0].queue == "support"
    assert of_type(out, Hangup) == [Hangup(reason="callback")]
    assert call.session.destination == ("callback", "support")


def test_caller_hanging_up_ends_the_walk(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: hello
        nodes:
          hello: {type: play, prompt: "Hello.", next: bye}
          bye: {type: hangup}
    """
    call = Harness(tree_from_yaml(tmp_path, text))
    call.start()
    out = call.send(CallerHungUp())
    assert not of_type(out, Hangup)
    assert of_type(out, IvrExited)[0].destination == "abandoned"
    assert call.prompt_done() == []  # answers still in flight after the end are ignored


def test_inputs_outside_the_transition_table_are_errors(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: hello
        nodes:
          hello: {type: play, prompt: "Hello.", next: bye}
          bye: {type: hangup}
    """
    call = Harness(tree_from_yaml(tmp_path, text))
    with pytest.raises(IvrUsageError, match="DigitsReceived is not expected while idle"):
        call.press("1")
    call.start()
    with pytest.raises(IvrUsageError, match="CallStarted is not expected while playing"):
        call.start()


def test_a_call_keeps_the_tree_it_started_with_across_a_reload(tmp_path: Path) -> None:
    version = """
    trees:
      main:
        start: menu
        nodes:
          menu:
            type: menu
            greet_long: "Version {n}."
            choices:
              - {dtmf: 1, next: out}
            on_failure: out
          out: {type: queue, queue: sales}
    """
    folder = write_tree_files(tmp_path, {"tree.yaml": version.replace("{n}", "one")})
    first = load_ivr_trees(folder, queues=QUEUES, skills=SKILLS)
    call = Harness(first["main"])
    call.start()
    write_tree_files(
        tmp_path, {"tree.yaml": version.replace("{n}", "two").replace("sales", "support")}
    )
    second = load_ivr_trees(folder, queues=QUEUES, skills=SKILLS)
    assert texts(Harness(second["main"]).start()) == ["Version two."]
    out = call.press("9")
    assert texts(out) == ["Version one."]
    call.press("1")
    assert of_type(call.log, EnqueueCall)[0].queue == "sales"


def test_a_tree_that_bypassed_validation_cannot_spin_forever(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: a
        nodes:
          a: {type: goto, next: b}
          b: {type: hangup}
    """
    tree = tree_from_yaml(tmp_path, text)
    looping = dataclasses.replace(
        tree,
        nodes={
            "a": tree.nodes["a"],
            "b": GotoNode.model_validate({"type": "goto", "next": "a"}),
        },
    )
    call = Harness(looping)
    out = call.start()
    assert of_type(out, Hangup) == [Hangup(reason="loop")]
    assert len(call.session.route) == 100
