"""Agent control from the softphone: dialled feature codes mapped to agent commands.

An agent dials a short code instead of a number, as on a PBX (Asterisk's ``*45``-style agent
codes): log in, log out, pause, unpause. A pause may carry a reason code after the pause code,
``*47*2`` or ``*472`` (``#`` at the end is ignored), looked up in ``pause_reasons``. The SIP side
asks :class:`FeatureCodeMap` about every number an agent's softphone dials; ``None`` means "not a
feature code, route it as a normal call".
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from acd.model import AgentProfile, ConfigError


class AgentCommandKind(enum.StrEnum):
    LOGIN = "login"
    LOGOUT = "logout"
    PAUSE = "pause"
    UNPAUSE = "unpause"


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentCommand:
    """What an agent asked for; ``reason`` is set for a pause."""

    agent_id: str
    kind: AgentCommandKind
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureCodes:
    """The dialled codes. ``pause_reasons`` maps a reason code (digits) to the pause reason."""

    login: str = "*45"
    logout: str = "*46"
    pause: str = "*47"
    unpause: str = "*48"
    default_pause_reason: str = "break"
    pause_reasons: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        codes = [self.login, self.logout, self.pause, self.unpause]
        if any(not code for code in codes) or len(set(codes)) != len(codes):
            raise ConfigError(f"feature codes must be distinct and not empty: {codes}")
        for code in codes:
            if any(other != code and other.startswith(code) for other in codes):
                raise ConfigError(f"feature code {code!r} is the start of another code")
        if not self.default_pause_reason:
            raise ConfigError("feature codes: default_pause_reason is empty")
        for code, reason in self.pause_reasons.items():
            if not code.isdigit() or not reason:
                raise ConfigError(
                    f"pause reason code {code!r} -> {reason!r}: codes are digits, reasons text"
                )
        object.__setattr__(self, "pause_reasons", MappingProxyType(dict(self.pause_reasons)))


class FeatureCodeMap:
    """Maps ``(sip_user, dialled)`` from an agent's softphone to an :class:`AgentCommand`."""

    __slots__ = ("_agents", "_codes")

    def __init__(self, codes: FeatureCodes, agents: Iterable[AgentProfile]) -> None:
        self._codes = codes
        self._agents: dict[str, str] = {}
        for agent in agents:
            if agent.sip_user is None:
                continue
            if agent.sip_user in self._agents:
                raise ConfigError(
                    f"agents {self._agents[agent.sip_user]!r} and {agent.agent_id!r} share "
                    f"SIP user {agent.sip_user!r}"
                )
            self._agents[agent.sip_user] = agent.agent_id

    def agent_for(self, sip_user: str) -> str | None:
        return self._agents.get(sip_user)

    def is_feature_code(self, dialled: str) -> bool:
        """Whether ``dialled`` starts with one of the codes (so it is not a normal number)."""
        return self._split(dialled.strip()) is not None

    def command(self, sip_user: str, dialled: str) -> AgentCommand | None:
        """The command, or None when ``dialled`` is no feature code or the user no agent.

        Raises :class:`ValueError` for a feature code with an unknown pause reason or trailing
        digits, so the softphone can be told the code was wrong rather than have it dialled out.
        """
        agent_id = self._agents.get(sip_user)
        kind_and_rest = self._split(dialled.strip().removesuffix("#"))
        if agent_id is None or kind_and_rest is None:
            return None
        kind, rest = kind_and_rest
        if kind is AgentCommandKind.PAUSE:
            return AgentCommand(agent_id=agent_id, kind=kind, reason=self._pause_reason(rest))
        if rest:
            raise ValueError(f"feature code {dialled!r}: unexpected digits {rest!r} after it")
        return AgentCommand(agent_id=agent_id, kind=kind)

    def _split(self, dialled: str) -> tuple[AgentCommandKind, str] | None:
        codes = self._codes
        for kind, code in (
            (AgentCommandKind.LOGIN, codes.login),
            (AgentCommandKind.LOGOUT, codes.logout),
            (AgentCommandKind.PAUSE, codes.pause),
            (AgentCommandKind.UNPAUSE, codes.unpause),
        ):
            if dialled.startswith(code):
                return kind, dialled[len(code) :]
        return None

    def _pause_reason(self, rest: str) -> str:
        code = rest.removeprefix("*")
        if not code:
            return self._codes.default_pause_reason
        reason = self._codes.pause_reasons.get(code)
        if reason is None:
            known = ", ".join(sorted(self._codes.pause_reasons)) or "none configured"
            raise ValueError(f"pause reason code {code!r} is unknown (known: {known})")
        return reason
