"""Loading IVR trees: every mistake an admin can make is reported as ``file:line: problem``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from config.ivr import load_ivr_trees
from config.loader import default_config_dir
from config.source import ConfigError
from tests.ivr.ivr_helpers import QUEUES, SKILLS, write_tree_files


def problems(tmp_path: Path, text: str, **files: str) -> list[str]:
    folder = write_tree_files(tmp_path, {"tree.yaml": text, **files})
    with pytest.raises(ConfigError) as caught:
        load_ivr_trees(folder, queues=QUEUES, skills=SKILLS)
    return [str(problem) for problem in caught.value.problems]


def line(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the ``occurrence``-th line containing ``needle``."""
    found = [
        n
        for n, row in enumerate(textwrap.dedent(text).lstrip("\n").splitlines(), 1)
        if needle in row
    ]
    return found[occurrence - 1]


def at(tmp_path: Path, text: str, needle: str, occurrence: int = 1, name: str = "tree.yaml") -> str:
    return f"{tmp_path / 'ivr' / name}:{line(text, needle, occurrence)}"


GOOD_END = """
      bye:
        type: hangup
"""


def test_unknown_node_type(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: greet
        nodes:
          greet:
            type: plya
            prompt: Hello
    """
    assert problems(tmp_path, text) == [
        f"{at(tmp_path, text, 'type: plya')}: trees.main.nodes.greet.type: unknown node type "
        "'plya' (expected one of: callback, collect_digits, collect_speech, condition, "
        "crm_lookup, goto, hangup, language, menu, play, queue, set_variable, transfer, "
        "voicemail)"
    ]


def test_missing_target(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: greet
        nodes:
          greet:
            type: play
            prompt: Hello
            next: menuu
    """
    assert problems(tmp_path, text) == [
        f"{at(tmp_path, text, 'next: menuu')}: trees.main.nodes.greet.next: "
        "no node named 'menuu' in tree 'main'"
    ]


def test_missing_target_in_menu_choice_and_start(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: welcome
        nodes:
          menu:
            type: menu
            greet_long: Press 1
            choices:
              - {dtmf: 1, next: salse}
            on_failure: bye
          bye: {type: hangup}
    """
    assert problems(tmp_path, text) == [
        f"{at(tmp_path, text, 'start: welcome')}: trees.main.start: "
        "no node named 'welcome' in tree 'main'",
        f"{at(tmp_path, text, 'dtmf: 1')}: trees.main.nodes.menu.choices.0.next: "
        "no node named 'salse' in tree 'main'",
    ]


def test_unreachable_node(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: greet
        nodes:
          greet: {type: play, prompt: Hello, next: bye}
          orphan: {type: play, prompt: Nobody hears this, next: bye}
          bye: {type: hangup}
    """
    assert problems(tmp_path, text) == [
        f"{at(tmp_path, text, 'orphan:')}: trees.main.nodes.orphan: "
        "node 'orphan' cannot be reached from the start node 'greet'"
    ]


def test_loop_without_input(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: a
        nodes:
          a: {type: play, prompt: One, next: b}
          b: {type: goto, next: a}
    """
    assert problems(tmp_path, text) == [
        f"{at(tmp_path, text, 'a: {')}: trees.main.nodes.a: loop without caller input: a -> b -> a"
    ]


def test_loop_through_a_menus_failure_route_needs_input_too(tmp_path: Path) -> None:
    # A silent caller would hear the menu, then "sorry", then the menu again, forever.
    text = """
    trees:
      main:
        start: menu
        nodes:
          menu:
            type: menu
            greet_long: Press 1
            choices:
              - {dtmf: 1, next: bye}
            on_failure: sorry
          sorry: {type: play, prompt: Sorry, next: menu}
          bye: {type: hangup}
    """
    assert problems(tmp_path, text) == [
        f"{at(tmp_path, text, 'menu:', 1)}: trees.main.nodes.menu: "
        "loop without caller input: menu -> sorry -> menu"
    ]


def test_loop_through_a_valid_answer_is_allowed(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: menu
        nodes:
          menu:
            type: menu
            greet_long: Press 1 for hours, 2 to leave
            choices:
              - {dtmf: 1, next: hours}
              - {dtmf: 2, next: bye}
            on_failure: bye
          hours: {type: play, prompt: We are open 9 to 5, next: menu}
          bye: {type: hangup}
    """
    folder = write_tree_files(tmp_path, {"tree.yaml": text})
    trees = load_ivr_trees(folder, queues=QUEUES, skills=SKILLS)
    assert list(trees["main"].nodes) == ["menu", "hours", "bye"]


def test_missing_prompt_file(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "hello.wav").write_bytes(b"RIFF")
    text = """
    trees:
      main:
        start: greet
        nodes:
          greet:
            type: play
            prompt:
              - file: hello.wav
              - file: welcome.wav
            next: bye
          bye: {type: hangup}
    """
    assert problems(tmp_path, text) == [
        f"{at(tmp_path, text, 'prompt:')}: trees.main.nodes.greet.prompt: "
        f"prompt file 'welcome.wav' not found in {prompts}"
    ]


def test_prompt_file_outside_the_prompts_folder(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: greet
        nodes:
          greet: {type: play, prompt: {file: ../secret.wav}, next: bye}
          bye: {type: hangup}
    """
    (found,) = problems(tmp_path, text)
    assert found.startswith(f"{at(tmp_path, text, 'greet:')}: trees.main.nodes.greet.prompt")
    assert "prompt file '../secret.wav' must be a relative path inside the prompts folder" in found


def test_unknown_queue_and_skill(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: q
        nodes:
          q:
            type: queue
            queue: salse
            skills:
              - sales
              - klingon
              - "{language}"
    """
    assert problems(tmp_path, text) == [
        f"{at(tmp_path, text, 'queue: salse')}: trees.main.nodes.q.queue: no queue named 'salse'",
        f"{at(tmp_path, text, '- klingon')}: trees.main.nodes.q.skills.1: no skill named 'klingon'",
    ]


def test_unknown_callback_queue(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: cb
        nodes:
          cb: {type: callback, queue: nowhere}
    """
    assert problems(tmp_path, text) == [
        f"{at(tmp_path, text, 'cb:')}: trees.main.nodes.cb.queue: no queue named 'nowhere'"
    ]


def test_bad_time_zones(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: hours
        timezone: Mars/Olympus_Mons
        nodes:
          hours:
            type: condition
            branches:
              - when:
                  time:
                    days: mon-fri
                    from: "09:00"
                    to: "17:00"
                    timezone: Europe/Pariss
                next: bye
            otherwise: bye
          bye: {type: hangup}
    """
    assert problems(tmp_path, text) == [
        f"{at(tmp_path, text, 'timezone: Mars')}: trees.main.timezone: unknown time zone "
        "'Mars/Olympus_Mons' (use an IANA name such as 'Europe/Paris')",
    ]
    text = text.replace("Mars/Olympus_Mons", "UTC")
    assert problems(tmp_path, text) == [
        f"{at(tmp_path, text, 'timezone: Europe/Pariss')}: "
        "trees.main.nodes.hours.branches.0.when.time.timezone: unknown time zone "
        "'Europe/Pariss' (use an IANA name such as 'Europe/Paris')",
    ]


def test_bad_regexes(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: acct
        nodes:
          acct:
            type: collect_digits
            prompt: Your account number
            variable: account
            pattern: "[0-9"
            next: vip
            on_failure: bye
          vip:
            type: condition
            branches:
              - when: {caller_id: "^+33"}
                next: bye
            otherwise: bye
          bye: {type: hangup}
    """
    assert problems(tmp_path, text) == [
        f"{at(tmp_path, text, 'pattern:')}: trees.main.nodes.acct.pattern: invalid regular "
        "expression '[0-9': unterminated character set at position 0",
        f"{at(tmp_path, text, 'caller_id:')}: trees.main.nodes.vip.branches.0.when.caller_id: "
        "invalid regular expression '^+33': nothing to repeat at position 1",
    ]


def test_misspelt_and_missing_settings(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: greet
        nodes:
          greet:
            type: play
            promt: Hello
    """
    assert problems(tmp_path, text) == [
        f"{at(tmp_path, text, 'greet:', 1)}: trees.main.nodes.greet.prompt: "
        "required setting is missing",
        f"{at(tmp_path, text, 'greet:', 1)}: trees.main.nodes.greet.next: "
        "required setting is missing",
        f"{at(tmp_path, text, 'promt:')}: trees.main.nodes.greet.promt: "
        "unknown setting (check the spelling)",
    ]


def test_unknown_holiday_calendar(tmp_path: Path) -> None:
    text = """
    holidays:
      us: [12-25, 2026-11-26]
    trees:
      main:
        start: hours
        nodes:
          hours:
            type: condition
            branches:
              - when: {holiday: france}
                next: bye
            otherwise: bye
          bye: {type: hangup}
    """
    assert problems(tmp_path, text) == [
        f"{at(tmp_path, text, 'holiday: france')}: "
        "trees.main.nodes.hours.branches.0.when.holiday: no holiday calendar named 'france'"
    ]


def test_bad_holiday_date(tmp_path: Path) -> None:
    text = """
    holidays:
      us:
        - 02-30
    trees:
      main:
        start: bye
        nodes:
          bye: {type: hangup}
    """
    assert problems(tmp_path, text) == [
        f"{at(tmp_path, text, '- 02-30')}: holidays.us.0: '02-30' is not a day of the calendar"
    ]


def test_condition_needs_one_subject(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: check
        nodes:
          check:
            type: condition
            branches:
              - when: {variable: tier}
                next: bye
            otherwise: bye
          bye: {type: hangup}
    """
    assert problems(tmp_path, text) == [
        f"{at(tmp_path, text, 'when:')}: trees.main.nodes.check.branches.0.when: "
        "'variable' needs exactly one of: equals, one_of, matches, present"
    ]


def test_menu_with_the_same_key_twice(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: menu
        nodes:
          menu:
            type: menu
            greet_long: Press 1
            choices:
              - {dtmf: 1, next: bye}
              - {dtmf: "1", phrases: [sales], next: bye}
            on_failure: bye
          bye: {type: hangup}
    """
    assert problems(tmp_path, text) == [
        f"{at(tmp_path, text, 'menu:')}: trees.main.nodes.menu: key '1' is used by two choices"
    ]


def test_several_trees_per_file_and_calendars_shared_by_every_file(tmp_path: Path) -> None:
    sales_and_support = """
    holidays:
      us: [12-25]
    trees:
      sales:
        start: q
        nodes:
          q: {type: queue, queue: sales}
      support:
        start: q
        nodes:
          q: {type: queue, queue: support}
    """
    billing = """
    trees:
      billing:
        start: open
        nodes:
          open:
            type: condition
            branches:
              - {when: {holiday: us}, next: closed}
            otherwise: q
          q: {type: queue, queue: billing}
          closed: {type: hangup, reason: holiday}
    """
    folder = write_tree_files(tmp_path, {"lines.yaml": sales_and_support, "billing.yaml": billing})
    trees = load_ivr_trees(folder, queues=QUEUES, skills=SKILLS)
    assert trees.names == {"sales", "support", "billing"}
    assert trees["sales"].source == trees["support"].source == folder / "lines.yaml"
    assert "us" in trees["billing"].holidays


def test_tree_defined_in_two_files(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: bye
        nodes:
          bye: {type: hangup}
    """
    other = textwrap.dedent(text)
    assert problems(tmp_path, text, **{"zz.yaml": other}) == [
        f"{tmp_path / 'ivr' / 'zz.yaml'}:2: trees.main: tree 'main' is already defined in tree.yaml"
    ]


def test_yaml_syntax_error_and_problems_of_other_files_are_all_reported(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: bye
        nodes:
          bye: {type: hangup, reason: [unclosed
    """
    other = """
    trees:
      second:
        start: a
        nodes:
          a: {type: goto, next: b}
    """
    found = problems(tmp_path, text, **{"second.yaml": textwrap.dedent(other).lstrip()})
    assert len(found) == 2
    assert found[0].startswith(f"{tmp_path / 'ivr' / 'second.yaml'}:5: ")
    assert found[0].endswith("trees.second.nodes.a.next: no node named 'b' in tree 'second'")
    assert found[1].startswith(f"{tmp_path / 'ivr' / 'tree.yaml'}:")
    assert "YAML syntax" in found[1]


def test_per_language_prompts_must_cover_the_trees_languages(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: greet
        languages: [en, es]
        nodes:
          greet:
            type: play
            prompt: {en: Welcome, fr: Bienvenue}
            next: bye
          bye: {type: hangup}
    """
    where = at(tmp_path, text, "prompt:")
    assert problems(tmp_path, text) == [
        f"{where}: trees.main.nodes.greet.prompt: no 'es' version of this prompt "
        "(the tree's languages are 'en', 'es')",
        f"{where}: trees.main.nodes.greet.prompt: language 'fr' is not one of the tree's "
        "languages ('en', 'es')",
    ]


def test_shipped_default_tree_is_valid_with_its_queues() -> None:
    directory = default_config_dir()
    trees = load_ivr_trees(
        directory / "ivr", queues=frozenset({"sales", "support", "billing"}), skills=frozenset()
    )
    main = trees["main"]
    queues = {node.queue for node in main.nodes.values() if node.type == "queue"}
    assert queues == {"sales", "support", "billing"}
    with pytest.raises(ConfigError) as caught:
        load_ivr_trees(directory / "ivr", queues=frozenset({"sales"}), skills=frozenset())
    assert {p.message for p in caught.value.problems} >= {
        "trees.main.nodes.support_queue.queue: no queue named 'support'",
        "trees.main.nodes.billing_queue.queue: no queue named 'billing'",
    }


def test_trees_cannot_be_changed_once_loaded(tmp_path: Path) -> None:
    text = """
    trees:
      main:
        start: greet
        variables: {vip: "false"}
        nodes:
          greet: {type: play, prompt: Hello, next: bye}
          bye: {type: hangup}
    """
    folder = write_tree_files(tmp_path, {"tree.yaml": text})
    trees = load_ivr_trees(folder, queues=QUEUES, skills=SKILLS)
    tree = trees["main"]
    with pytest.raises(TypeError):
        tree.nodes["bye"] = tree.nodes["greet"]  # type: ignore[index]
    with pytest.raises(TypeError):
        tree.variables["vip"] = "true"  # type: ignore[index]
    with pytest.raises(ValidationError):
        tree.nodes["greet"].next = "greet"  # type: ignore[union-attr]
    with pytest.raises(AttributeError):
        tree.start = "bye"  # type: ignore[misc]
