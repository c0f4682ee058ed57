"""Contact-center KPIs over an interval, computed from domain events only.

A pure function of the recorded events, the interval and ``now``; docs/metrics.md gives every
formula in words. Events are read by their ``TYPE`` string and fields, so types this module does
not know are skipped and new fields do not disturb it.

Attribution rules:

- A queue call counts in the interval in which it **left the queue** (``queue.left``): only then
  is its outcome known.
- A handled call counts in the interval in which its **talk ended** (the agent left ``on_call``);
  its handle time is that talk plus the wrap-up that followed, even if the wrap-up ends later.
- Agent state time is clipped to the interval (and to ``now``), so an interval shows exactly the
  seconds spent in it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from config.api import QueueTargets

#: Agent states (as ``agent.state_changed`` names them) grouped by what they mean for the KPIs.
HANDLING_STATES = frozenset({"on_call", "wrap_up"})
#: The reason an agent leaves ``on_call`` after a call of their own (an internal call or a call
#: out from their softphone): time on the phone, but no contact-center call handled.
DIRECT_CALL_ENDED = "direct_call_ended"


def ends_handled_call(previous_state: object, reason: object) -> bool:
    """Whether an agent's state change ends the talk of a handled (queue or transfer) call."""
    return previous_state == "on_call" and reason != DIRECT_CALL_ENDED


READY_STATES = frozenset({"available", "reserved", "ringing"})
#: Queue exits that mean the caller went to another queue: offered there, not here.
TRANSFERRED_OUT = frozenset({"moved", "escalated"})
#: Every event type `compute_kpis` reads; it skips the others, so a reader of the event log
#: (supervisor_api/history.py) needs to fetch only these.
KPI_EVENT_TYPES = frozenset(
    {
        "agent.state_changed",
        "agent.answered",
        "agent.offered",
        "agent.no_answer",
        "agent.rejected",
        "queue.left",
        "call.transferred",
        "callback.requested",
        "callback.completed",
        "callback.failed",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRecord:
    """One published event as the KPIs see it."""

    seq: int
    time: float
    """Wall-clock publication time, seconds since the epoch."""
    type: str
    data: Mapping[str, Any]


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None


def _percent(part: float, whole: float) -> float | None:
    return 100.0 * part / whole if whole > 0 else None


@dataclass(slots=True)
class QueueTally:
    """Counts of queue exits, from which service level, ASA and abandon rate follow."""

    targets: QueueTargets
    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    timeouts: int = 0
    callbacks_chosen: int = 0
    other_exits: int = 0
    transferred_out: int = 0
    answered_within_sl: int = 0
    answered_within_sl2: int = 0
    answer_wait_total: float = 0.0
    longest_answer_wait: float = 0.0
    abandon_wait_total: float = 0.0

    def add_exit(self, reason: str, wait: float) -> None:
        if reason in TRANSFERRED_OUT:
            self.transferred_out += 1
            return
        self.offered += 1
        if reason == "answered":
            self.answered += 1
            self.answer_wait_total += wait
            self.longest_answer_wait = max(self.longest_answer_wait, wait)
            if wait <= self.targets.service_level_seconds:
                self.answered_within_sl += 1
            if wait <= self.targets.service_level2_seconds:
                self.answered_within_sl2 += 1
        elif reason == "abandoned":
            self.abandoned += 1
            self.abandon_wait_total += wait
            if wait < self.targets.short_abandon_seconds:
                self.short_abandoned += 1
        elif reason == "timeout":
            self.timeouts += 1
        elif reason == "callback":
            self.callbacks_chosen += 1
        else:
            self.other_exits += 1

    @property
    def sl_base(self) -> int:
        """Calls the service level is measured on: offered less short abandons and callbacks."""
        return self.offered - self.short_abandoned - self.callbacks_chosen

    @property
    def service_level(self) -> float | None:
        return _percent(self.answered_within_sl, self.sl_base)

    @property
    def service_level2(self) -> float | None:
        return _percent(self.answered_within_sl2, self.sl_base)

    @property
    def asa(self) -> float | None:
        return _ratio(self.answer_wait_total, self.answered)

    @property
    def abandon_rate(self) -> float | None:
        long_abandons = self.abandoned - self.short_abandoned
        return _percent(long_abandons, self.offered - self.short_abandoned)


@dataclass(slots=True)
class HandlingTally:
    """Handled calls and ringing outcomes, kept per agent and per queue."""

    handled: int = 0
    talk_seconds: float = 0.0
    wrap_up_seconds: float = 0.0
    offers: int = 0
    no_answers: int = 0
    rejections: int = 0
    transfers: int = 0

    @property
    def aht(self) -> float | None:
        return _ratio(self.talk_seconds + self.wrap_up_seconds, self.handled)

    @property
    def ring_no_answer_rate(self) -> float | None:
        return _percent(self.no_answers, self.offers)

    @property
    def transfer_rate(self) -> float | None:
        return _percent(self.transfers, self.handled)


@dataclass(slots=True)
class AgentTally:
    handling: HandlingTally = field(default_factory=HandlingTally)
    seconds_by_state: dict[str, float] = field(default_factory=dict)

    def add_state_time(self, state: str, seconds: float) -> None:
        if seconds > 0:
            self.seconds_by_state[state] = self.seconds_by_state.get(state, 0.0) + seconds

    def _sum(self, states: frozenset[str]) -> float:
        return sum(self.seconds_by_state.get(s, 0.0) for s in states)

    @property
    def handling_seconds(self) -> float:
        return self._sum(HANDLING_STATES)

    @property
    def logged_in_seconds(self) -> float:
        return sum(v for k, v in self.seconds_by_state.items() if k != "logged_out")

    @property
    def occupancy(self) -> float | None:
        """Handling time over handling plus ready time (paused time is not offered work)."""
        handling = self.handling_seconds
        return _percent(handling, handling + self._sum(READY_STATES))

    @property
    def utilisation(self) -> float | None:
        """Handling time over all logged-in time, pauses included."""
        return _percent(self.handling_seconds, self.logged_in_seconds)


@dataclass(slots=True)
class CallbackTally:
    requested: int = 0
    completed: int = 0
    failed: int = 0


@dataclass(slots=True)
class QueueReport:
    tally: QueueTally
    handling: HandlingTally = field(default_factory=HandlingTally)
    callbacks: CallbackTally = field(default_factory=CallbackTally)


@dataclass(slots=True)
class KpiReport:
    start: float
    end: float
    queues: dict[str, QueueReport]
    agents: dict[str, AgentTally]


@dataclass(slots=True)
class _PendingWrap:
    """A call whose talk ended in the interval: its wrap-up still belongs to its handle time."""

    queue_id: str | None


def _overlap(a: float, b: float, start: float, end: float) -> float:
    return max(0.0, min(b, end) - max(a, start))


def compute_kpis(
    records: Iterable[EventRecord],
    start: float,
    end: float,
    now: float,
    targets_for: Callable[[str], QueueTargets],
    known_queues: Iterable[str] = (),
    known_agents: Iterable[str] = (),
) -> KpiReport:
    """KPIs per queue and per agent for ``[start, end)``, with ``now`` closing open agent states.

    ``records`` must be in publication order and should reach back before ``start`` far enough
    to know which queue each call came from and which state each agent was in. Every known
    queue and agent has a row, with zeros when no event concerns it; other agents have one when
    a record names them.
    """
    if end < start:
        raise ValueError("the interval ends before it starts")
    until = min(end, now)
    queues: dict[str, QueueReport] = {
        q: QueueReport(QueueTally(targets_for(q))) for q in known_queues
    }
    agents: dict[str, AgentTally] = {a: AgentTally() for a in known_agents}
    call_queue: dict[str, str] = {}
    call_agent: dict[str, str] = {}
    open_state: dict[str, tuple[str, float]] = {}
    pending_wrap: dict[str, _PendingWrap] = {}

    def queue(queue_id: str) -> QueueReport:
        report = queues.get(queue_id)
        if report is None:
            report = queues[queue_id] = QueueReport(QueueTally(targets_for(queue_id)))
        return report

    def agent(agent_id: str) -> AgentTally:
        tally = agents.get(agent_id)
        if tally is None:
            tally = agents[agent_id] = AgentTally()
        return tally

    for record in records:
        kind = record.type
        if kind not in KPI_EVENT_TYPES:
            continue
        data = record.data
        at = record.time
        inside = start <= at < end
        if kind == "agent.state_changed":
            agent_id, state = data.get("agent_id"), data.get("state")
            previous, seconds = data.get("previous_state"), data.get("seconds_in_previous")
            if not isinstance(agent_id, str) or not isinstance(state, str):
                continue
            tally = agent(agent_id)
            if isinstance(previous, str) and isinstance(seconds, int | float):
                tally.add_state_time(previous, _overlap(at - seconds, at, start, until))
                if previous == "wrap_up" and agent_id in pending_wrap:
                    wrap = pending_wrap.pop(agent_id)
                    tally.handling.wrap_up_seconds += seconds
                    if wrap.queue_id is not None:
                        queue(wrap.queue_id).handling.wrap_up_seconds += seconds
                if previous == "on_call":
                    pending_wrap.pop(agent_id, None)
                    if inside and ends_handled_call(previous, data.get("reason")):
                        call_id = data.get("call_id")
                        queue_id = call_queue.get(call_id) if isinstance(call_id, str) else None
                        tally.handling.handled += 1
                        tally.handling.talk_seconds += seconds
                        if queue_id is not None:
                            queue(queue_id).handling.handled += 1
                            queue(queue_id).handling.talk_seconds += seconds
                        if state == "wrap_up":
                            pending_wrap[agent_id] = _PendingWrap(queue_id=queue_id)
            open_state[agent_id] = (state, at)
            continue
        call_id = data.get("call_id")
        queue_id = data.get("queue_id")
        agent_id = data.get("agent_id")
        if kind == "agent.answered" and isinstance(call_id, str):
            if isinstance(queue_id, str):
                call_queue[call_id] = queue_id
            if isinstance(agent_id, str):
                call_agent[call_id] = agent_id
        if not inside:
            continue
        if kind == "queue.left" and isinstance(queue_id, str):
            wait = data.get("wait_seconds")
            reason = data.get("reason")
            if isinstance(wait, int | float) and isinstance(reason, str):
                queue(queue_id).tally.add_exit(reason, float(wait))
        elif kind in {"agent.offered", "agent.no_answer", "agent.rejected"}:
            targets = [agent(agent_id).handling] if isinstance(agent_id, str) else []
            if isinstance(queue_id, str):
                targets.append(queue(queue_id).handling)
            for handling in targets:
                if kind == "agent.offered":
                    handling.offers += 1
                elif kind == "agent.no_answer":
                    handling.no_answers += 1
                else:
                    handling.rejections += 1
        elif kind == "call.transferred" and isinstance(call_id, str):
            by = agent_id if isinstance(agent_id, str) else call_agent.get(call_id)
            if by is not None:
                agent(by).handling.transfers += 1
            if call_id in call_queue:
                queue(call_queue[call_id]).handling.transfers += 1
        elif kind.startswith("callback.") and isinstance(queue_id, str):
            callbacks = queue(queue_id).callbacks
            if kind == "callback.requested":
                callbacks.requested += 1
            elif kind == "callback.completed":
                callbacks.completed += 1
            elif kind == "callback.failed" and data.get("final") is True:
                callbacks.failed += 1

    for agent_id, (state, since) in open_state.items():
        tally = agents[agent_id]
        tally.add_state_time(state, _overlap(since, until, start, until))
        if state == "wrap_up" and agent_id in pending_wrap:
            # Still wrapping up: the handle time so far counts.
            wrap_so_far = max(0.0, now - since)
            tally.handling.wrap_up_seconds += wrap_so_far
            queue_id = pending_wrap[agent_id].queue_id
            if queue_id is not None:
                queue(queue_id).handling.wrap_up_seconds += wrap_so_far
    return KpiReport(start=start, end=end, queues=queues, agents=agents)
