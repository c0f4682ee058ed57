"""Feature codes dialled from an agent's softphone become agent commands."""

from __future__ import annotations

import pytest

from acd.feature_codes import AgentCommand, AgentCommandKind, FeatureCodeMap, FeatureCodes
from acd.model import AgentProfile, ConfigError

AGENTS = [
    AgentProfile(agent_id="alice", sip_user="1001"),
    AgentProfile(agent_id="bob", sip_user="1002"),
    AgentProfile(agent_id="robot"),  # no softphone
]


def mapper(**options: object) -> FeatureCodeMap:
    return FeatureCodeMap(FeatureCodes(**options), AGENTS)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("dialled", "kind", "reason"),
    [
        ("*45", AgentCommandKind.LOGIN, ""),
        ("*46#", AgentCommandKind.LOGOUT, ""),
        ("*47", AgentCommandKind.PAUSE, "break"),
        ("*47*1", AgentCommandKind.PAUSE, "lunch"),
        ("*471#", AgentCommandKind.PAUSE, "lunch"),
        (" *48 ", AgentCommandKind.UNPAUSE, ""),
    ],
)
def test_codes_map_to_commands(dialled: str, kind: AgentCommandKind, reason: str) -> None:
    command = mapper(pause_reasons={"1": "lunch"}).command("1002", dialled)
    assert command == AgentCommand(agent_id="bob", kind=kind, reason=reason)


def test_normal_numbers_and_strangers_are_not_commands() -> None:
    codes = mapper()
    assert not codes.is_feature_code("5551234")
    assert codes.command("1001", "5551234") is None
    assert codes.is_feature_code("*45")
    assert codes.command("9999", "*45") is None
    assert codes.agent_for("1001") == "alice"


def test_wrong_codes_say_what_is_wrong() -> None:
    codes = mapper(pause_reasons={"1": "lunch"})
    with pytest.raises(ValueError, match=r"pause reason code '7' is unknown \(known: 1\)"):
        codes.command("1001", "*47*7")
    with pytest.raises(ValueError, match="unexpected digits '9'"):
        codes.command("1001", "*459")


def test_codes_must_be_told_apart() -> None:
    with pytest.raises(ConfigError, match="distinct"):
        FeatureCodes(login="*45", logout="*45")
    with pytest.raises(ConfigError, match="start of another"):
        FeatureCodes(login="*4")
    with pytest.raises(ConfigError, match="share SIP user"):
        FeatureCodeMap(FeatureCodes(), [*AGENTS, AgentProfile(agent_id="eve", sip_user="1001")])
