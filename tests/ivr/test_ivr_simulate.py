"""``cxos ivr simulate``: what an admin sees when walking a tree from the terminal."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from config.loader import default_config_dir
from ivr.simulate import main

TUESDAY_10AM = "2026-11-24T10:00"


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """The shipped configuration plus the queues its default tree sends calls to."""
    target = tmp_path / "conf"
    shutil.copytree(default_config_dir(), target)
    (target / "queues.yaml").write_text(
        "queues:\n  sales: {}\n  support: {}\n  billing: {}\n", encoding="utf-8"
    )
    return target


def simulate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_sales_by_key(capsys: pytest.CaptureFixture[str], config_dir: Path) -> None:
    code, out, err = simulate(
        capsys, "main", "--config", str(config_dir), "--at", TUESDAY_10AM, "--input", "1"
    )
    assert code == 0, err
    assert "call at 2026-11-24 10:00 America/New_York (Tuesday)" in out
    assert '[welcome] caller hears "Thank you for calling Acme."' in out
    assert "[identify_caller] CRM lookup +15555550100: no record" in out
    assert "[main_menu] caller presses 1" in out
    assert "Route: welcome → business_hours → identify_caller → main_menu → sales_queue" in out
    assert "  department = sales\n" in out
    assert out.endswith("Destination: queue sales\n")
    assert err == ""


def test_billing_by_voice_with_account_number(
    capsys: pytest.CaptureFixture[str], config_dir: Path
) -> None:
    code, out, _ = simulate(
        capsys,
        "main",
        "--config",
        str(config_dir),
        "--at",
        TUESDAY_10AM,
        "--input",
        "I have a question about my bill",
        "--input",
        "12345678#",
        "--input",
        "1",
    )
    assert code == 0
    assert '[main_menu] caller says "I have a question about my bill" (confidence 1.00)' in out
    assert '"You entered 12345678. If this is correct, press 1. To enter it again, press 2."' in out
    assert "  account_number = 12345678\n" in out
    assert "Destination: queue billing" in out


def test_vip_caller_gets_priority(capsys: pytest.CaptureFixture[str], config_dir: Path) -> None:
    code, out, _ = simulate(
        capsys,
        "main",
        "--config",
        str(config_dir),
        "--at",
        TUESDAY_10AM,
        "--crm",
        "name=Dana Scully",
        "--crm",
        "tier=vip",
        "--input",
        "support",
        "--input",
        "2",
    )
    assert code == 0
    assert '"Welcome back, Dana Scully. Your call will be given priority."' in out
    assert "enqueue in 'support' with priority 10" in out
    assert "product=mobile, vip=true, customer=Dana Scully" in out


def test_after_hours_silent_caller_reaches_voicemail(
    capsys: pytest.CaptureFixture[str], config_dir: Path
) -> None:
    code, out, _ = simulate(
        capsys, "main", "--config", str(config_dir), "--at", "2026-11-24T22:30", "--input", ""
    )
    assert code == 0
    assert "Our offices are closed." in out
    assert "(no more input: the caller stays silent)" in out
    assert "[voicemail] record voicemail for general after a beep" in out
    assert out.endswith("Destination: voicemail general\n")


def test_low_confidence_is_asked_again(
    capsys: pytest.CaptureFixture[str], config_dir: Path
) -> None:
    code, out, _ = simulate(
        capsys,
        "main",
        "--config",
        str(config_dir),
        "--at",
        TUESDAY_10AM,
        "--input",
        "sales@0.2",
        "--input",
        "sales@0.9",
    )
    assert code == 0
    assert "[main_menu] · answer low_confidence" in out
    assert '"Sorry, I did not understand."' in out
    assert "Destination: queue sales" in out


def test_interactive_session_reads_answers_from_stdin(
    capsys: pytest.CaptureFixture[str], config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("2\ninternet\n"))
    code, out, _ = simulate(capsys, "main", "--config", str(config_dir), "--at", TUESDAY_10AM)
    assert code == 0
    assert "keys or speech (empty for silence)> " in out
    assert (
        "Route: welcome → business_hours → identify_caller → main_menu → support_menu → "
        "support_queue" in out
    )
    assert "  product = internet\n" in out


def test_variables_and_the_tree_timezone(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "ivr").mkdir()
    (tmp_path / "ivr" / "t.yaml").write_text(
        "trees:\n"
        "  check:\n"
        "    start: c\n"
        "    timezone: Asia/Tokyo\n"
        "    nodes:\n"
        "      c:\n"
        "        type: condition\n"
        "        branches:\n"
        "          - when: {variable: segment, equals: gold}\n"
        "            next: gold\n"
        "        otherwise: other\n"
        "      gold: {type: transfer, kind: agent, target: '{agent}'}\n"
        "      other: {type: hangup}\n",
        encoding="utf-8",
    )
    code, out, err = simulate(
        capsys,
        "check",
        "--config",
        str(tmp_path),
        "--at",
        "2026-11-24T10:00",
        "--var",
        "segment=gold",
        "--var",
        "agent=alice",
    )
    assert code == 0
    assert "call at 2026-11-24 10:00 Asia/Tokyo" in out
    assert "[gold] → transfer to agent alice" in out
    assert "queue names are not checked" in err


def test_configuration_problems_are_listed(
    capsys: pytest.CaptureFixture[str], config_dir: Path
) -> None:
    main_yaml = config_dir / "ivr" / "main.yaml"
    main_yaml.write_text(
        main_yaml.read_text(encoding="utf-8").replace("queue: sales", "queue: saless"),
        encoding="utf-8",
    )
    code, _, err = simulate(capsys, "main", "--config", str(config_dir), "--input", "1")
    assert code == 1
    line = main_yaml.read_text(encoding="utf-8").splitlines().index("        queue: saless") + 1
    assert f"{main_yaml}:{line}: trees.main.nodes.sales_queue.queue: no queue named 'saless'" in err
    assert "1 problem(s) in" in err


def test_usage_mistakes(capsys: pytest.CaptureFixture[str], config_dir: Path) -> None:
    code, _, err = simulate(capsys, "nope", "--config", str(config_dir))
    assert code == 2
    assert "no IVR tree named 'nope' (trees: main)" in err
    code, _, err = simulate(capsys, "main", "--config", str(config_dir), "--var", "novalue")
    assert code == 2
    assert "--var 'novalue': write NAME=VALUE" in err
    code, _, err = simulate(capsys, "main", "--config", str(config_dir), "--at", "tomorrow")
    assert (code, "--at: 'tomorrow' is not a date and time like 2026-11-26T10:00") == (
        2,
        err.strip().removeprefix("cxos ivr simulate: "),
    )
    code, _, _ = simulate(capsys, "--bogus")
    assert code == 2


def test_runs_as_a_module(config_dir: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ivr.simulate",
            "main",
            "--config",
            str(config_dir),
            "--at",
            TUESDAY_10AM,
            "--input",
            "3",
            "--input",
            "#",
            "--input",
            "#",
            "--input",
            "#",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count('"That is not a valid account number."') == 2
    assert result.stdout.endswith("Destination: queue billing\n")
