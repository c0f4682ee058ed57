"""What the API asks the rest of the server to do: the seam between HTTP and the call layers.

The API never touches a call or an agent itself. It validates the request and calls one of
these methods; the application provides the implementation (routing them to the ACD and to
telephony's call API). The outcome is seen as domain events on the bus, so a method returns as
soon as the request is accepted, and raises ``ActionRefusedError`` when it cannot be.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class MonitorMode(enum.StrEnum):
    """How a supervisor joins a live call (through the media relay)."""

    LISTEN = "listen"
    """Hears both parties; nobody hears the supervisor."""
    WHISPER = "whisper"
    """Hears both parties; only the agent hears the supervisor (coaching)."""
    BARGE = "barge"
    """Joins the conversation: both parties hear the supervisor."""


class RefusalKind(enum.Enum):
    """Why an action could not be carried out; decides the HTTP status."""

    UNKNOWN_AGENT = "unknown_agent"
    UNKNOWN_CALL = "unknown_call"
    UNKNOWN_QUEUE = "unknown_queue"
    WRONG_STATE = "wrong_state"
    """E.g. pausing a logged-out agent, moving a call that is no longer waiting."""
    UNAVAILABLE = "unavailable"
    """The part of the server that would do it is not running."""

    @property
    def status(self) -> int:
        if self is RefusalKind.WRONG_STATE:
            return 409
        if self is RefusalKind.UNAVAILABLE:
            return 503
        return 404


class ActionRefusedError(Exception):
    """An action was not carried out; ``field`` names the request input it is about."""

    def __init__(self, kind: RefusalKind, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.field = field


class SupervisorActions(Protocol):
    """Actions on agents and calls. ``by`` is the name of the API token that asked."""

    async def agent_login(self, agent_id: str, *, by: str) -> None: ...

    async def agent_logout(self, agent_id: str, *, by: str) -> None: ...

    async def agent_pause(self, agent_id: str, reason: str, *, by: str) -> None: ...

    async def agent_unpause(self, agent_id: str, *, by: str) -> None: ...

    async def set_priority(self, call_id: str, priority: int, *, by: str) -> None:
        """Change a waiting caller's priority (higher is served first)."""

    async def move_call(self, call_id: str, queue_id: str, *, by: str) -> None:
        """Move a waiting caller to another queue, keeping their wait time."""

    async def hangup(self, call_id: str, *, by: str) -> None: ...

    async def start_recording(self, call_id: str, *, by: str, layout: str = "stereo") -> None:
        """Record the call to a WAV file: ``stereo`` (caller left, agent right) or ``mixed``."""

    async def stop_recording(self, call_id: str, *, by: str) -> None: ...

    async def monitor(self, call_id: str, mode: MonitorMode, agent_id: str, *, by: str) -> None:
        """Ring ``agent_id``'s phone (the supervisor's) and join it to the call in ``mode`` once
        answered; when that supervisor is already on the call, switch it to ``mode``. Refused
        when the call has no agent yet (wrong state) or the phone is not registered
        (unavailable)."""

    async def end_monitor(self, call_id: str, *, by: str) -> None:
        """Take the supervisor off the call (their phone gets BYE; ``call.monitor_ended``
        with reason ``server``), or stop ringing their phone if it has not answered yet.
        Refused when nobody monitors the call (wrong state)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReloadProblem:
    """One reason a configuration reload was refused, as ``file:line: message``."""

    file: str
    line: int | None
    message: str


class Administration(Protocol):
    """Admin operations."""

    async def reload_configuration(self) -> Sequence[ReloadProblem]:
        """Validate the configuration directory and swap it in if valid.

        Returns the problems found (nothing was changed) or an empty sequence (swapped).
        """
