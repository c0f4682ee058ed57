"""Configuration checks that every language an IVR question listens in has a recogniser: an
error naming the file and line when an answer can only be spoken, a logged warning when every
answer also has a key."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from config.loader import load_configuration
from config.source import ConfigError

MENU_TREE = """\
trees:
  main:
    start: menu
    languages: [en, ko]
    nodes:
      menu:
        type: menu
        greet_long: {{en: "Sales or billing?", ko: "영업 또는 청구?"}}
        choices:
          - {{{sales_keys}phrases: [sales, 영업], next: bye}}
          - {{dtmf: 2, phrases: [billing, 청구], next: bye}}
        on_failure: bye
      bye: {{type: hangup}}
"""


def configure(directory: Path, server: str, *, sales_keys: bool) -> Path:
    (directory / "ivr").mkdir()
    tree = directory / "ivr" / "main.yaml"
    tree.write_text(MENU_TREE.format(sales_keys="dtmf: 1, " if sales_keys else ""))
    (directory / "server.yaml").write_text(server)
    return tree


def test_a_spoken_only_answer_in_a_language_without_a_model_is_an_error(tmp_path: Path) -> None:
    tree = configure(tmp_path, "speech:\n  workers: 1\n", sales_keys=False)
    with pytest.raises(ConfigError) as failure:
        load_configuration(tmp_path)
    message = str(failure.value)
    # Line 10 is the first choice with phrases.
    assert f"{tree}:10: trees.main.nodes.menu: listens for speech in 'ko'" in message
    assert "speech.language_models.ko" in message
    assert "give every answer a key" in message


def test_answers_that_also_have_keys_only_warn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tree = configure(tmp_path, "speech:\n  workers: 1\n", sales_keys=True)
    with caplog.at_level(logging.WARNING, logger="config.speech_languages"):
        configuration = load_configuration(tmp_path)
    assert "main" in configuration.ivr.trees
    assert any(
        f"{tree}:10:" in record.getMessage()
        and "callers can still press keys" in record.getMessage()
        for record in caplog.records
    )


@pytest.mark.parametrize(
    "server",
    [
        "speech:\n  language_models:\n    ko: /models/ko\n",
        "speech:\n  vosk_model_path: /models/any\n",
        "speech:\n  enabled: false\n",
    ],
    ids=["ko-model", "general-model", "speech-off"],
)
def test_a_model_for_the_language_or_a_general_model_or_no_speech_is_fine(
    tmp_path: Path, server: str
) -> None:
    configure(tmp_path, server, sales_keys=False)
    assert "main" in load_configuration(tmp_path).ivr.trees


def test_a_regional_model_does_not_serve_its_primary_language(tmp_path: Path) -> None:
    # A "ko" model serves "ko-KR" questions; a "ko-KR" model does not serve plain "ko" ones.
    configure(tmp_path, "speech:\n  language_models:\n    ko-KR: /models/ko\n", sales_keys=False)
    with pytest.raises(ConfigError, match="listens for speech in 'ko'"):
        load_configuration(tmp_path)


def test_english_variants_use_the_built_in_engine(tmp_path: Path) -> None:
    (tmp_path / "ivr").mkdir()
    (tmp_path / "ivr" / "main.yaml").write_text(
        MENU_TREE.format(sales_keys="")
        .replace("[en, ko]", "[en-GB, en-US]")
        .replace('{en: "Sales or billing?", ko: "영업 또는 청구?"}', "Sales or billing?")
    )
    assert "main" in load_configuration(tmp_path).ivr.trees
