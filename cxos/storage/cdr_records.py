"""The CDR of a call as values: the call and its segments, with derived totals.

Built by the fold in ``cxos.storage.cdr``; stored by ``cxos.storage.cdr_store``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Segment:
    """One stretch of a call. Durations are in seconds; ``ended_at`` is None while open."""

    index: int
    """1-based position in the call."""
    kind: str
    """``ivr``, ``queue``, ``agent`` or ``transfer``."""
    started_at: datetime
    ended_at: datetime | None
    outcome: str | None
    """ivr: the exit destination (``queue``, ``transfer``, ``hangup``...); queue: the reason
    the caller left (``answered``, ``abandoned``, ``timeout``...); agent: ``completed`` or
    ``transferred``; transfer: ``connected`` or ``completed``. None while open."""
    ivr_tree_id: str | None = None
    queue_id: str | None = None
    agent_id: str | None = None
    destination: str | None = None
    """The IVR exit target or the transfer target."""
    wait_seconds: float = 0.0
    """queue: time the caller waited in it."""
    ring_seconds: float = 0.0
    """agent: time the agent's phone rang before the answer."""
    talk_seconds: float = 0.0
    """agent: time connected to the caller, hold excluded."""
    hold_seconds: float = 0.0
    wrap_up_seconds: float | None = None
    """agent: after-call work, known once the agent leaves wrap-up."""
    offers: int = 0
    """queue: how many times the call was offered to an agent."""
    position: int | None = None
    """queue: the caller's position on joining."""

    @property
    def duration_seconds(self) -> float | None:
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


@dataclass(frozen=True, slots=True, kw_only=True)
class CallDetailRecord:
    call_id: str
    node: str
    trunk_id: str
    did: str
    caller_id: str
    caller_name: str
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    """``call.ended``'s cause (``normal``, ``cancelled``...) or ``server restart``."""
    hangup_by: str | None
    segments: tuple[Segment, ...]
    problems: tuple[str, ...] = ()
    """Events that arrived where the fold did not expect them, for an operator to look at."""

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    @property
    def duration_seconds(self) -> float | None:
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    def _total(self, kind: str, value: Callable[[Segment], float | None]) -> float:
        return sum((value(s) or 0.0) for s in self.segments if s.kind == kind)

    @property
    def ivr_seconds(self) -> float:
        return self._total("ivr", lambda s: s.duration_seconds)

    @property
    def wait_seconds(self) -> float:
        return self._total("queue", lambda s: s.wait_seconds)

    @property
    def talk_seconds(self) -> float:
        return self._total("agent", lambda s: s.talk_seconds)

    @property
    def hold_seconds(self) -> float:
        return self._total("agent", lambda s: s.hold_seconds)

    @property
    def wrap_up_seconds(self) -> float:
        return self._total("agent", lambda s: s.wrap_up_seconds)

    @property
    def agents(self) -> tuple[str, ...]:
        """Agents who answered, in order, each once."""
        return tuple(
            dict.fromkeys(s.agent_id for s in self.segments if s.agent_id and s.kind == "agent")
        )

    @property
    def disposition(self) -> str:
        """``in_progress``; ``answered`` if an agent took the call; else how it ended, e.g.
        ``queue_abandoned``, ``ivr_hangup``, ``transfer_completed``; ``unrouted`` if no segment."""
        if not self.ended:
            return "in_progress"
        if any(s.kind == "agent" for s in self.segments):
            return "answered"
        if not self.segments:
            return "unrouted"
        last = self.segments[-1]
        return f"{last.kind}_{last.outcome}"
