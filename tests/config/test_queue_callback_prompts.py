"""``queues.yaml``: what a queue says when it offers a callback, checked when it is loaded."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from config.loader import default_config_dir, load_configuration
from config.queues import load_queues
from config.source import ConfigError

SALES = """
queues:
  sales:
    escalation:
      - {after: 60, offer_callback: true}
    callbacks:
      attempts: 2
      key: 9
      choice_timeout: 6
      offer:
        en: "To be called back, press 9."
        es: "Para que le llamemos, pulse 9."
      accepted: [{file: callback-ok.wav}, "Goodbye, {crm.name}."]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "queues.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_queues(write(tmp_path, text))
    return [str(problem) for problem in caught.value.problems]


def line_of(text: str, needle: str) -> int:
    rows = textwrap.dedent(text).lstrip("\n").splitlines()
    return next(n for n, row in enumerate(rows, 1) if needle in row)


def test_the_shipped_queues_offer_callbacks_in_plain_english() -> None:
    sales = load_configuration(default_config_dir()).queue_file.queues["sales"].callbacks
    assert [item.text for item in sales.offer.items] == [
        "To be called back when an agent is free, keeping your place in line, press 1."
    ]
    assert sales.key == "1"
    assert sales.accepted.items and sales.unavailable.items


def test_prompts_per_language_files_and_the_key_are_read(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "callback-ok.wav").write_bytes(b"RIFF")
    callbacks = load_queues(write(tmp_path, SALES)).queues["sales"].callbacks
    assert (callbacks.attempts, callbacks.key, callbacks.choice_timeout) == (2, "9", 6)
    assert [i.text for i in callbacks.offer.for_language("es", "es")] == [
        "Para que le llamemos, pulse 9."
    ]
    # A language the prompt was not written in falls back to the first one written.
    assert [i.text for i in callbacks.offer.for_language("fr", "fr")] == [
        "To be called back, press 9."
    ]
    assert [(i.file, i.text) for i in callbacks.accepted.items] == [
        ("callback-ok.wav", None),
        (None, "Goodbye, {crm.name}."),
    ]
    # What is not written keeps its default.
    assert callbacks.unavailable.items[0].text == (
        "Sorry, we cannot call you back. Please stay on the line."
    )


def test_a_missing_prompt_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "queues.yaml"
    assert problems(tmp_path, SALES) == [
        f"{path}:{line_of(SALES, 'accepted:')}: queues.sales.callbacks.accepted: prompt file"
        f" 'callback-ok.wav' not found in {tmp_path / 'prompts'}"
    ]


@pytest.mark.parametrize(
    ("setting", "needle", "message"),
    [
        ("key: 12", "key: 12", "queues.sales.callbacks.key: '12': one key of the keypad"),
        ("key: A", "key: A", "queues.sales.callbacks.key: 'A' is not a key sequence"),
        ("offer: {English: Hello}", "offer:", "'English' is not a language code"),
        ("offer: {text: Hi, file: hi.wav}", "offer:", "a prompt is either 'file: name.wav'"),
        ("accepted: {file: ../secret.wav}", "accepted:", "must be a relative path"),
        ("unavailable: []", "unavailable:", "a prompt needs at least one text or file"),
        ("offer: 'Press {key'", "offer:", "braces must enclose a variable name"),
        ("choice_timeout: 0", "choice_timeout:", "greater than 0"),
        ("ofer: Hello", "ofer:", "queues.sales.callbacks.ofer: unknown setting"),
    ],
)
def test_each_mistake_in_the_callback_prompts_names_file_and_line(
    tmp_path: Path, setting: str, needle: str, message: str
) -> None:
    text = f"""
queues:
  sales:
    callbacks:
      attempts: 2
      {setting}
"""
    (found,) = problems(tmp_path, text)
    assert found.startswith(f"{tmp_path / 'queues.yaml'}:{line_of(text, needle)}: "), found
    assert message in found
