"""The CDR of a call as values: the call and its segments, with derived totals.

Built by the fold in ``cxos.storage.cdr``; stored by ``cxos.storage.cdr_store``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

#: Segment kinds of calls placed from agents' softphones that reach someone: a colleague
#: (``internal``) or a number through a trunk (``outbound``).
DIRECT_CALL_KINDS = frozenset({"internal", "outbound"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Segment:
    """One stretch of a call. Durations are in seconds; ``ended_at`` is None while open."""

    index: int
    """1-based position in the call."""
    kind: str
    """``ivr``, ``queue``, ``agent`` or ``transfer``; for a call placed from an agent's phone,
    ``internal`` (to a colleague), ``outbound`` (through a trunk), ``feature_code`` or
    ``unrecognised``."""
    started_at: datetime
    ended_at: datetime | None
    outcome: str | None
    """ivr: the exit destination (``queue``, ``transfer``, ``hangup``...); queue: the reason
    the caller left (``answered``, ``abandoned``, ``timeout``...); agent: ``completed`` or
    ``transferred``; transfer: ``connected`` or ``completed``; internal and outbound:
    ``answered`` (from the answer on), or why not (``no_answer``, ``busy``, ``abandoned``...);
    feature_code: the ACD's result (``done``, ``refused``...). None while open."""
    ivr_tree_id: str | None = None
    queue_id: str | None = None
    agent_id: str | None = None
    destination: str | None = None
    """The IVR exit target or the transfer target; the agent id or number an agent called."""
    wait_seconds: float = 0.0
    """queue: time the caller waited in it."""
    ring_seconds: float = 0.0
    """agent: time the agent's phone rang before the answer; internal and outbound: time the
    other side rang."""
    talk_seconds: float = 0.0
    """agent: time connected to the caller, hold excluded; internal and outbound: the calling
    agent's time connected to the other side."""
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
    direction: str
    """``inbound`` (from a trunk); ``internal`` or ``outbound``: placed from an agent's softphone
    (``caller_id`` its SIP user, ``did`` what it dialled), to a colleague or a feature code, or
    out through a trunk (``trunk_id``)."""
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
        return sum(s.talk_seconds for s in self.segments if s.kind in _TALK_KINDS)

    @property
    def hold_seconds(self) -> float:
        return self._total("agent", lambda s: s.hold_seconds)

    @property
    def wrap_up_seconds(self) -> float:
        return self._total("agent", lambda s: s.wrap_up_seconds)

    @property
    def agents(self) -> tuple[str, ...]:
        """Agents who talked on the call, in order, each once: those who answered it, and on
        an answered call placed from an agent's phone the caller and the colleague called."""
        found: list[str] = []
        for s in self.segments:
            if s.kind == "agent" and s.agent_id:
                found.append(s.agent_id)
            elif s.kind in DIRECT_CALL_KINDS and s.outcome == "answered":
                found += [s.agent_id or ""] + ([s.destination or ""] * (s.kind == "internal"))
        return tuple(agent for agent in dict.fromkeys(found) if agent)

    @property
    def disposition(self) -> str:
        """``in_progress``; ``answered`` if an agent took the call; else how it ended, e.g.
        ``queue_abandoned``, ``ivr_hangup``, ``transfer_completed``; ``unrouted`` if no segment."""
        if not self.ended:
            return "in_progress"
        if any(s.kind == "agent" for s in self.segments) or any(
            s.kind in DIRECT_CALL_KINDS and s.outcome == "answered" for s in self.segments
        ):
            return "answered"
        if not self.segments:
            return "unrouted"
        last = self.segments[-1]
        return f"{last.kind}_{last.outcome}"


#: Segment kinds whose talk time counts in the call's.
_TALK_KINDS = DIRECT_CALL_KINDS | {"agent"}
