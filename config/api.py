"""Settings of the supervisor API, read from ``api.yaml`` in the configuration directory.

Who may use the API (bearer tokens with a role), the service-level targets the KPIs are measured
against, and the wallboard's colour thresholds. Validated once at the edge like every other
configuration file, so a mistake is reported as ``api.yaml:LINE: problem``.
"""

from __future__ import annotations

import enum
import hashlib
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from config.source import load_yaml, validate

API_FILE = "api.yaml"

#: Characters a token may use: RFC 6750 §2.1 ``b64token`` without ``+``, ``/`` and ``=`` so that a
#: token can also travel as a WebSocket subprotocol name (RFC 6455 §4.1 requires an RFC 2616 token).
TOKEN_PATTERN = r"^[A-Za-z0-9._~-]+$"


class Role(enum.StrEnum):
    """What a token may do; each role includes the rights of the ones before it."""

    AGENT = "agent"
    """Read and change only its own agent's state."""
    SUPERVISOR = "supervisor"
    """Read everything, act on calls and agents."""
    ADMIN = "admin"
    """Everything a supervisor may, plus configuration reload."""

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {Role.AGENT: 0, Role.SUPERVISOR: 1, Role.ADMIN: 2}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiToken(_Strict):
    """One bearer token. Keep only ``token_sha256`` in the file to avoid storing the secret."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: Role
    token: str | None = Field(default=None, min_length=16, pattern=TOKEN_PATTERN)
    #: Hex SHA-256 of the token (``printf %s TOKEN | sha256sum``).
    token_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    #: The agent an ``agent`` token belongs to; required for that role, refused for others.
    agent_id: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ApiToken:
        if (self.token is None) == (self.token_sha256 is None):
            raise ValueError("give exactly one of 'token' or 'token_sha256'")
        if (self.role is Role.AGENT) != (self.agent_id is not None):
            raise ValueError("'agent_id' is required for role 'agent' and only for it")
        return self

    @property
    def digest(self) -> str:
        if self.token_sha256 is not None:
            return self.token_sha256
        assert self.token is not None  # guaranteed by _consistent
        return hashlib.sha256(self.token.encode()).hexdigest()


class QueueTargets(_Strict):
    """Service-level targets of one queue, in seconds unless stated."""

    #: SL counts calls answered within this many seconds of joining the queue.
    service_level_seconds: float = Field(default=20.0, gt=0)
    #: The target percentage the wallboard compares SL with.
    service_level_percent: float = Field(default=80.0, gt=0, le=100)
    #: The second, longer threshold (SL2).
    service_level2_seconds: float = Field(default=60.0, gt=0)
    #: Callers who hang up sooner than this are short abandons (excluded from SL and abandon rate).
    short_abandon_seconds: float = Field(default=5.0, ge=0)
    #: Agents shown on this queue's tile; empty means every agent.
    agents: tuple[str, ...] = ()


class Thresholds(_Strict):
    """A value turns amber at ``warn`` and red at ``alarm``."""

    warn: float = Field(ge=0)
    alarm: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.alarm < self.warn:
            raise ValueError("alarm must be >= warn")
        return self


class WallboardSettings(_Strict):
    """Colour thresholds of the wallboard tiles."""

    #: Callers waiting.
    waiting: Thresholds = Thresholds(warn=3, alarm=8)
    #: Longest current wait, seconds.
    longest_wait: Thresholds = Thresholds(warn=30, alarm=90)
    #: Points of service level below the queue's target percentage.
    service_level_shortfall: Thresholds = Thresholds(warn=5, alarm=15)
    #: Seconds an agent may stay paused or in wrap-up before the row turns amber/red.
    state_seconds: Thresholds = Thresholds(warn=300, alarm=900)
    #: Seconds of recent history for "service level now" (today's figure is kept as well).
    recent_window_seconds: float = Field(default=900.0, gt=0)


class StreamSettings(_Strict):
    """The WebSocket event stream."""

    #: Events queued for one client before it is disconnected as too slow.
    client_buffer: int = Field(default=1000, ge=1, le=100_000)
    #: Seconds between heartbeat frames (and WebSocket pings) on an idle stream.
    heartbeat_seconds: float = Field(default=15.0, gt=0, le=3600)
    #: Most clients connected at once; more are refused with 503 and Retry-After.
    max_clients: int = Field(default=2000, ge=1)


class ApiAccessSettings(_Strict):
    """Everything in ``api.yaml``."""

    tokens: tuple[ApiToken, ...] = ()
    #: Queue id → targets; queues not listed use ``default_targets``.
    queues: dict[str, QueueTargets] = Field(default_factory=dict)
    default_targets: QueueTargets = QueueTargets()
    wallboard: WallboardSettings = WallboardSettings()
    stream: StreamSettings = StreamSettings()
    #: Domain events kept in memory for KPIs over recent intervals (only the types KPIs read:
    #: agent states, offers and answers, queue exits, transfers, callbacks).
    kpi_journal_events: int = Field(default=200_000, ge=1000, le=5_000_000)
    #: Queue exits kept per queue for the wallboard's service level "today" (those of the last
    #: 25 hours at most); a busier queue's "today" covers its most recent exits.
    kpi_queue_exits: int = Field(default=100_000, ge=1000, le=5_000_000)
    #: IANA time zone whose midnight starts "today" on the wallboard.
    timezone: str = "UTC"

    @model_validator(mode="after")
    def _unique_tokens(self) -> ApiAccessSettings:
        names = [t.name for t in self.tokens]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"token name {name!r} is used twice")
        digests = [t.digest for t in self.tokens]
        if len(set(digests)) != len(digests):
            raise ValueError("two tokens have the same secret")
        try:
            ZoneInfo(self.timezone)
        except (KeyError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.timezone!r}") from exc
        return self

    def targets_for(self, queue_id: str) -> QueueTargets:
        return self.queues.get(queue_id, self.default_targets)


def load_api_settings(directory: Path) -> ApiAccessSettings:
    """Read ``api.yaml`` from a configuration directory (defaults when absent).

    Raises ``config.source.ConfigError`` with ``file:line`` problems.
    """
    path = directory / API_FILE
    if not path.exists():
        return ApiAccessSettings()
    return validate(ApiAccessSettings, load_yaml(path))
