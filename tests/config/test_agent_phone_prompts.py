"""``agents.yaml``: what agents' phones hear after a feature code or a call that fails, per
language, and the agent's own language; mistakes reported with file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from config.loader import default_config_dir, load_configuration
from config.source import ConfigError

AGENTS = """
agents:
  - id: alice
    sip_user: "1001"
    password: pw-1001
    language: fr
  - id: bob
    sip_user: "1002"
    password: pw-1002
phone_prompts:
  language: en
  logged_in:
    en: "You are logged in."
    fr: "Vous êtes connectée."
  no_answer: [{file: beep.wav}, "Nobody answered."]
"""


def configuration_dir(tmp_path: Path, agents: str) -> Path:
    """A configuration of `agents` and one queue; every other file takes its defaults."""
    directory = tmp_path / "config"
    directory.mkdir()
    (directory / "agents.yaml").write_text(textwrap.dedent(agents).lstrip("\n"), encoding="utf-8")
    (directory / "queues.yaml").write_text("queues:\n  any: {}\n", encoding="utf-8")
    return directory


def problems(directory: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_configuration(directory)
    return [str(problem) for problem in caught.value.problems]


def line_of(text: str, needle: str) -> int:
    rows = textwrap.dedent(text).lstrip("\n").splitlines()
    return next(n for n, row in enumerate(rows, 1) if needle in row)


def test_the_shipped_agents_are_confirmed_in_plain_english(tmp_path: Path) -> None:
    shipped = (default_config_dir() / "agents.yaml").read_text(encoding="utf-8")
    prompts = load_configuration(configuration_dir(tmp_path, shipped)).phone_prompts
    assert prompts.language == "en"
    assert [item.text for item in prompts.logged_in.items] == ["You are logged in."]
    assert [item.text for item in prompts.not_recognised.items] == [
        "The number you dialled is not recognised."
    ]


def test_prompts_per_language_and_the_agents_language_are_read(tmp_path: Path) -> None:
    directory = configuration_dir(tmp_path, AGENTS)
    (directory / "prompts").mkdir()
    (directory / "prompts" / "beep.wav").write_bytes(b"RIFF")
    configuration = load_configuration(directory)
    alice, bob = configuration.agents
    assert (alice.language, bob.language) == ("fr", None)
    prompts = configuration.phone_prompts
    assert [i.text for i in prompts.logged_in.for_language("fr", "en")] == ["Vous êtes connectée."]
    assert [i.text for i in prompts.logged_in.for_language("de", "en")] == ["You are logged in."]
    assert [(i.file, i.text) for i in prompts.no_answer.items] == [
        ("beep.wav", None),
        (None, "Nobody answered."),
    ]
    # Prompts not written keep their defaults.
    assert [item.text for item in prompts.paused.items] == ["You are paused."]


def test_a_missing_prompt_file_is_reported_at_its_line(tmp_path: Path) -> None:
    directory = configuration_dir(tmp_path, AGENTS)
    found = problems(directory)
    line = line_of(AGENTS, "no_answer:")
    assert (
        f"{directory / 'agents.yaml'}:{line}: phone_prompts.no_answer: prompt file 'beep.wav'"
        in ("\n".join(found))
    ), found


def test_bad_languages_and_unknown_prompts_are_reported_at_their_lines(tmp_path: Path) -> None:
    text = AGENTS.replace("language: fr", "language: French").replace(
        '  no_answer: [{file: beep.wav}, "Nobody answered."]\n',
        '  no_anwser: "Nobody answered."\n',
    )
    directory = configuration_dir(tmp_path, text)
    found = "\n".join(problems(directory))
    path = directory / "agents.yaml"
    assert f"{path}:{line_of(text, 'language: French')}: agents.0.language" in found, found
    assert f"{path}:{line_of(text, 'no_anwser')}: phone_prompts.no_anwser: unknown setting" in (
        found
    ), found


def test_a_prompt_language_that_is_no_language_code_is_reported_at_its_line(
    tmp_path: Path,
) -> None:
    text = AGENTS.replace(
        '  no_answer: [{file: beep.wav}, "Nobody answered."]\n', '  paused: {EN: "Paused."}\n'
    )
    directory = configuration_dir(tmp_path, text)
    found = "\n".join(problems(directory))
    path = directory / "agents.yaml"
    assert f"{path}:{line_of(text, 'EN:')}: phone_prompts.paused: 'EN' is not a language" in (
        found
    ), found
