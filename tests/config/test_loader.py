"""Configuration loading: the shipped defaults are valid, and every mistake names file and line."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from config.loader import default_config_dir, load_configuration
from config.source import ConfigError


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    target = tmp_path / "conf"
    shutil.copytree(default_config_dir(), target)
    return target


def problems(directory: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_configuration(directory)
    return [str(p) for p in caught.value.problems]


def test_shipped_defaults_load() -> None:
    configuration = load_configuration(default_config_dir())
    assert configuration.server.sip.listen[0].port == 5060
    assert {a.sip_user for a in configuration.agents} == {"1001", "1002", "1003"}
    assert configuration.dialplan.entry_for("100") is not None
    assert configuration.dialplan.entry_for("555") == configuration.dialplan.numbers["*"]


def test_misspelt_setting_names_file_and_line(config_dir: Path) -> None:
    (config_dir / "server.yaml").write_text("node: n1\nsip:\n  max_mesage_bytes: 2000\n")
    where = f"{config_dir / 'server.yaml'}:3"
    assert problems(config_dir) == [
        f"{where}: sip.max_mesage_bytes: unknown setting (check the spelling)"
    ]


def test_out_of_range_value(config_dir: Path) -> None:
    (config_dir / "server.yaml").write_text("rtp:\n  port_min: 30000\n  port_max: 20000\n")
    # A rule across two settings is reported at the section that holds both.
    assert problems(config_dir) == [
        f"{config_dir / 'server.yaml'}:1: rtp: port_min must be lower than port_max"
    ]


def test_yaml_syntax_error_names_line(config_dir: Path) -> None:
    (config_dir / "trunks.yaml").write_text("trunks:\n  - id: a\n    sources: [127.0.0.1\n")
    (found,) = problems(config_dir)
    assert found.startswith(f"{config_dir / 'trunks.yaml'}:")
    assert "YAML syntax" in found


def test_every_problem_of_every_file_is_reported(config_dir: Path) -> None:
    (config_dir / "agents.yaml").write_text(
        "agents:\n"
        "  - {id: a1, sip_user: '2001', password: x, skills: {sales: 9}}\n"
        "  - {id: a1, sip_user: '2002', password: y}\n"
    )
    (config_dir / "dialplan.yaml").write_text("numbers:\n  '200': {queue: nowhere}\n")
    found = problems(config_dir)
    agents = config_dir / "agents.yaml"
    assert any(
        p.startswith(f"{agents}:2:") and "proficiency must be 1 to 5, not 9" in p for p in found
    )
    assert f"{config_dir / 'dialplan.yaml'}:2: number '200': no queue named 'nowhere'" in found


def test_duplicate_agent_ids(config_dir: Path) -> None:
    (config_dir / "agents.yaml").write_text(
        "agents:\n"
        "  - {id: a1, sip_user: '2001', password: x}\n"
        "  - {id: a1, sip_user: '2002', password: y}\n"
    )
    assert f"{config_dir / 'agents.yaml'}:3: duplicate agent id 'a1'" in problems(config_dir)


def test_bad_trunk_network(config_dir: Path) -> None:
    (config_dir / "trunks.yaml").write_text("trunks:\n  - id: t\n    sources: [10.0.0.300/8]\n")
    (found,) = problems(config_dir)
    assert found.startswith(f"{config_dir / 'trunks.yaml'}:3: trunks.0.sources")
    assert "not an address or CIDR network" in found


def test_a_retired_setting_loads_with_a_warning_at_its_line(
    config_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A server.yaml written for an older version still loads: the setting that is gone is
    named, with its line, and the settings around it apply."""
    (config_dir / "server.yaml").write_text(
        "registrar:\n  realm: acme\n  uas_challenge_user_agents: [pyVoIP]\n"
        "  challenge_unregistered_calls: true\n"
    )
    with caplog.at_level(logging.WARNING, logger="config.source"):
        configuration = load_configuration(config_dir)
    registrar = configuration.server.registrar
    assert (registrar.realm, registrar.challenge_unregistered_calls) == ("acme", True)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(
        f"{config_dir / 'server.yaml'}:3: registrar.uas_challenge_user_agents: no longer a setting"
    )


def test_mistakes_after_a_retired_setting_keep_their_lines(config_dir: Path) -> None:
    (config_dir / "server.yaml").write_text(
        "registrar:\n  uas_challenge_user_agents: [pyVoIP]\n  min_expires: soon\n"
    )
    (found,) = problems(config_dir)
    assert found.startswith(f"{config_dir / 'server.yaml'}:3: registrar.min_expires:")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cxos.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_config_cli_accepts_defaults() -> None:
    result = run_cli("check-config", str(default_config_dir()))
    assert result.returncode == 0, result.stderr
    assert "OK (1 trunks, 3 agents" in result.stdout


def test_check_config_cli_prints_problems_and_fails(config_dir: Path) -> None:
    (config_dir / "server.yaml").write_text("sip:\n  listen:\n    - {transport: sctp}\n")
    result = run_cli("check-config", str(config_dir))
    assert result.returncode == 1
    assert f"{config_dir / 'server.yaml'}:3: sip.listen.0.transport:" in result.stderr
    assert "1 problem(s)" in result.stderr


def test_ivr_simulate_is_a_cxos_subcommand() -> None:
    result = run_cli(
        "ivr",
        "simulate",
        "main",
        "--config",
        str(default_config_dir()),
        "--input",
        "3",
        "--at",
        "2026-11-25T10:00",
    )
    assert result.returncode == 0, result.stderr
    assert "Destination: queue billing" in result.stdout


def test_a_broken_ivr_tree_is_reported_by_check_config(config_dir: Path) -> None:
    (config_dir / "ivr" / "main.yaml").write_text(
        "trees:\n  main:\n    start: hello\n    nodes:\n      hello: {type: dance}\n"
    )
    found = problems(config_dir)
    assert found[0].startswith(f"{config_dir / 'ivr' / 'main.yaml'}:5: trees.main.nodes.hello.type")
    # The numbers that lead to the broken tree are reported as well.
    assert f"{config_dir / 'dialplan.yaml'}:3: number '100': no IVR tree named 'main'" in found
