"""Trunk settings for calls out and inbound digest: the shipped example, the checks with file and
line, and how a number is written for the carrier."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from config.loader import default_config_dir, load_configuration
from config.settings import Trunk, TrunkOutbound
from config.source import ConfigError
from telephony.trunks import dial_string, outbound_trunk


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    target = tmp_path / "conf"
    shutil.copytree(default_config_dir(), target)
    return target


def problems(directory: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_configuration(directory)
    return [str(p) for p in caught.value.problems]


def test_the_shipped_carrier_example_is_valid_once_uncommented(config_dir: Path) -> None:
    shipped = (config_dir / "trunks.yaml").read_text()
    lines = []
    for line in shipped.splitlines():
        # "#  - id: carrier" and everything indented under it, and "# default_outbound".
        if line.startswith("#  ") or line.startswith("# default_outbound"):
            lines.append(line[2:] if line.startswith("# default_outbound") else line[1:])
        elif not line.startswith("#"):
            lines.append(line)
    (config_dir / "trunks.yaml").write_text("\n".join(lines) + "\n")
    configuration = load_configuration(config_dir)
    carrier = next(t for t in configuration.trunks if t.id == "carrier")
    assert carrier.outbound is not None and carrier.outbound.auth is not None
    assert carrier.outbound.host == "sip.carrier.example" and carrier.outbound.max_calls == 30
    assert carrier.inbound_auth is not None and carrier.inbound_auth.username == "carrier-in"
    assert configuration.default_outbound == "carrier"


def test_default_outbound_must_name_a_trunk_that_calls_out(config_dir: Path) -> None:
    path = config_dir / "trunks.yaml"
    path.write_text("trunks:\n  - id: a\n    sources: [10.0.0.1]\ndefault_outbound: b\n")
    assert problems(config_dir) == [f"{path}:4: default_outbound: no trunk with id 'b'"]
    path.write_text("trunks:\n  - id: a\n    sources: [10.0.0.1]\ndefault_outbound: a\n")
    assert problems(config_dir) == [
        f"{path}:4: default_outbound: trunk 'a' has no 'outbound' section"
    ]


def test_a_bad_outbound_setting_names_file_and_line(config_dir: Path) -> None:
    path = config_dir / "trunks.yaml"
    path.write_text(
        "trunks:\n  - id: a\n    sources: [10.0.0.1]\n    outbound:\n"
        "      host: sip.example\n      transport: tls\n"
    )
    (found,) = problems(config_dir)
    assert found.startswith(f"{path}:6: trunks.0.outbound.transport")


def test_a_dtmf_mode_that_does_not_exist_names_file_line_and_the_modes(config_dir: Path) -> None:
    path = config_dir / "trunks.yaml"
    path.write_text("trunks:\n  - id: a\n    sources: [10.0.0.1]\n    dtmf: rfc2833\n")
    (found,) = problems(config_dir)
    assert found.startswith(f"{path}:4: trunks.0.dtmf")
    assert all(mode in found for mode in ("'auto'", "'rfc4733'", "'inband'"))


def trunk(**outbound: Any) -> Trunk:
    return Trunk(
        id="t", sources=("10.0.0.1",), outbound=TrunkOutbound(host="sip.example", **outbound)
    )


@pytest.mark.parametrize(
    ("settings", "number", "dialled"),
    [
        ({}, "+49 (30) 123-4567", "+49301234567"),
        ({"strip_plus": "00"}, "+49 30 1234567", "0049301234567"),
        ({"strip_plus": ""}, "+15550100", "15550100"),
        ({"prefix": "9"}, "5550100", "95550100"),
        ({"prefix": "9", "strip_plus": "011"}, "+4930", "90114930"),
        ({}, "*72#", "*72#"),
    ],
)
def test_numbers_are_written_as_the_carrier_wants(
    settings: dict[str, object], number: str, dialled: str
) -> None:
    assert dial_string(trunk(**settings), number) == dialled


@pytest.mark.parametrize("number", ["", "+", "alice", "12a4", "sip:100@example.com", "١٢٣"])
def test_what_is_no_number_is_refused(number: str) -> None:
    with pytest.raises(ValueError, match="not a number"):
        dial_string(trunk(), number)


def test_the_outbound_trunk_is_the_named_one_else_the_default_else_the_first() -> None:
    inbound_only = Trunk(id="in", sources=("10.0.0.2",))
    first, second = (
        trunk(),
        Trunk(id="u", sources=("10.0.0.3",), outbound=TrunkOutbound(host="other.example")),
    )
    trunks = (inbound_only, first, second)
    assert outbound_trunk(trunks, None, None) is first
    assert outbound_trunk(trunks, "u", None) is second
    assert outbound_trunk(trunks, "u", "t") is first
    assert outbound_trunk(trunks, None, "in") is None  # it cannot call out
    assert outbound_trunk(trunks, None, "nope") is None
