"""The live picture of queues, agents and calls: a pure fold over domain events.

``LiveProjection.apply(record)`` takes one event (type string, fields, publication time) and
updates the picture; nothing here reads a clock or touches I/O, so tests feed it events and
times directly. Events are matched on their ``TYPE`` string and read field by field: a type the
projection does not know is counted and ignored, and a known type missing a field it needs is
counted as malformed, so the projection keeps working while the layers that emit events grow.

It also keeps a bounded journal of the recent events KPIs are computed from (the types in
``KPI_EVENT_TYPES``: about 6 of the 15 events of a call answered from a queue), and each
queue's recent exits for the wallboard's service level "now" and "today".
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from config.api import QueueTargets
from cxos.bus import Published
from cxos.envelope import published_data
from supervisor_api.kpi import KPI_EVENT_TYPES, EventRecord, QueueTally, ends_handled_call

#: Seconds of queue exits kept: "today" starts at most 25 hours ago (the day daylight saving
#: time ends is 25 hours long).
EXITS_KEPT_SECONDS = 25 * 3600.0

#: Agent states that make an agent "busy" on a wallboard tile.
BUSY_STATES = frozenset({"reserved", "ringing", "on_call"})


@dataclass(slots=True)
class WaitingCall:
    call_id: str
    queue_id: str
    priority: int
    position: int
    joined_at: float
    offered_to: str | None = None


@dataclass(slots=True)
class Segment:
    """One stretch of a call: ``ivr``, ``queue``, ``agent`` or ``transfer``."""

    kind: str
    started_at: float
    ended_at: float | None = None
    queue_id: str | None = None
    agent_id: str | None = None
    outcome: str | None = None


@dataclass(slots=True)
class MonitorView:
    """A supervisor's phone (``sip_user``) on a call, in ``mode`` since ``since``."""

    leg_id: str
    sip_user: str
    mode: str
    since: float


@dataclass(slots=True)
class CallView:
    call_id: str
    started_at: float
    state: str = "started"
    caller_id: str | None = None
    did: str | None = None
    trunk_id: str | None = None
    queue_id: str | None = None
    agent_id: str | None = None
    segments: list[Segment] = field(default_factory=list)
    #: The supervisor on the call; at a transfer they follow the caller to the new agent.
    monitor: MonitorView | None = None

    @property
    def open_segment(self) -> Segment | None:
        if self.segments and self.segments[-1].ended_at is None:
            return self.segments[-1]
        return None

    def close_segment(self, at: float, outcome: str) -> None:
        segment = self.open_segment
        if segment is not None:
            segment.ended_at = at
            segment.outcome = outcome

    def open(self, segment: Segment, outcome_of_previous: str) -> None:
        self.close_segment(segment.started_at, outcome_of_previous)
        self.segments.append(segment)


@dataclass(slots=True)
class AgentView:
    agent_id: str
    state: str = "logged_out"
    since: float | None = None
    reason: str = ""
    call_id: str | None = None
    calls_handled: int = 0
    talk_seconds: float = 0.0
    wrap_up_seconds: float = 0.0
    pause_seconds: float = 0.0


@dataclass(slots=True)
class QueueView:
    queue_id: str
    waiting: dict[str, WaitingCall] = field(default_factory=dict)
    callbacks_waiting: set[str] = field(default_factory=set)
    #: Most exits kept; the oldest make room beyond it (``kpi_queue_exits`` in ``api.yaml``).
    exits_kept: int = 100_000
    #: Recent exits as (time, reason, wait seconds), oldest first.
    exits: deque[tuple[float, str, float]] = field(init=False)

    def __post_init__(self) -> None:
        self.exits = deque(maxlen=self.exits_kept)

    def record_exit(self, at: float, reason: str, wait_seconds: float) -> None:
        """Keep an exit for the service level "now" and "today", dropping those from before
        any "today" (the tally skips them anyway; this bounds a day's exits by time)."""
        exits = self.exits
        exits.append((at, reason, wait_seconds))
        while exits[0][0] < at - EXITS_KEPT_SECONDS:
            exits.popleft()

    def waiting_in_order(self) -> list[WaitingCall]:
        return sorted(self.waiting.values(), key=lambda w: (w.position, w.joined_at))

    def longest_wait(self, now: float) -> float:
        if not self.waiting:
            return 0.0
        return max(0.0, now - min(w.joined_at for w in self.waiting.values()))

    def tally(self, start: float, end: float, targets: QueueTargets) -> QueueTally:
        tally = QueueTally(targets)
        for at, reason, wait in reversed(self.exits):
            if at < start:
                break
            if at < end:
                tally.add_exit(reason, wait)
        return tally


def record_of(published: Published) -> EventRecord:
    """The projection's view of a published event: type, JSON fields and time."""
    return EventRecord(
        seq=published.seq,
        time=published.time,
        type=published.event.TYPE,
        data=published_data(published),
    )


class MalformedEventError(ValueError):
    """A known event type without a field the projection needs."""


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise MalformedEventError(f"field {name!r} is missing or not a string")
    return value


def _number(data: Mapping[str, Any], name: str, default: float | None = None) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedEventError(f"field {name!r} is missing or not a number")
    return float(value)


def _optional_text(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    return value if isinstance(value, str) else None


#: Ended call ids kept to ignore late events about them (a bounded LRU).
ENDED_CALLS_REMEMBERED = 10_000


class LiveProjection:
    """Queues, agents and calls in progress, folded from events in publication order."""

    def __init__(
        self,
        *,
        queues: Iterable[str] = (),
        agents: Iterable[str] = (),
        journal_size: int = 100_000,
        exits_per_queue: int = 100_000,
    ) -> None:
        self._exits_kept = exits_per_queue
        self.queues: dict[str, QueueView] = {
            q: QueueView(q, exits_kept=exits_per_queue) for q in queues
        }
        self.agents: dict[str, AgentView] = {a: AgentView(a) for a in agents}
        self.calls: dict[str, CallView] = {}
        # Calls that ended recently: a layer may report on a call after its call.ended (the IVR
        # says why it exited once the caller has gone), which must not bring the call back.
        self._ended: OrderedDict[str, None] = OrderedDict()
        self.journal: deque[EventRecord] = deque(maxlen=journal_size)
        self.last_seq = 0
        self.applied = 0
        self.ignored = 0
        self.malformed = 0
        self._handlers: dict[str, Callable[[Mapping[str, Any], float], None]] = {
            "call.started": self._call_started,
            "call.answered": self._call_answered,
            "call.transferred": self._call_transferred,
            "call.ended": self._call_ended,
            "queue.joined": self._queue_joined,
            "queue.position": self._queue_position,
            "queue.priority_changed": self._queue_priority,
            "queue.left": self._queue_left,
            "agent.offered": self._agent_offered,
            "agent.no_answer": self._offer_failed,
            "agent.rejected": self._offer_failed,
            "agent.answered": self._agent_answered,
            "agent.state_changed": self._agent_state,
            "callback.requested": self._callback_requested,
            "callback.completed": self._callback_done,
            "callback.failed": self._callback_failed,
            "call.monitor_started": self._monitor_started,
            "call.monitor_changed": self._monitor_changed,
            "call.monitor_ended": self._monitor_ended,
        }

    def apply(self, record: EventRecord) -> None:
        """Fold one event in. Never raises for unknown or malformed events (it counts them)."""
        if record.seq <= self.last_seq:
            return  # already applied (e.g. a replay overlapping what was seen)
        self.last_seq = record.seq
        if record.type in KPI_EVENT_TYPES:
            # The rest (media, IVR, call set-up) counts for no KPI: the bounded journal then
            # covers about two and a half times the hours in the same memory.
            self.journal.append(record)
        handler = self._handlers.get(record.type)
        if handler is None:
            if record.type.startswith("ivr."):
                self._ivr_activity(record.data, record.time)
                self.applied += 1
            else:
                self.ignored += 1
            return
        try:
            handler(record.data, record.time)
        except MalformedEventError:
            self.malformed += 1
        else:
            self.applied += 1

    # ---------------------------------------------------------------- lookups

    def queue(self, queue_id: str) -> QueueView:
        view = self.queues.get(queue_id)
        if view is None:
            view = self.queues[queue_id] = QueueView(queue_id, exits_kept=self._exits_kept)
        return view

    def agent(self, agent_id: str) -> AgentView:
        view = self.agents.get(agent_id)
        if view is None:
            view = self.agents[agent_id] = AgentView(agent_id)
        return view

    def _call(self, call_id: str, at: float) -> CallView:
        # An event about a call seen mid-way (e.g. after a restart) starts its view there.
        view = self.calls.get(call_id)
        if view is None:
            view = CallView(call_id=call_id, started_at=at)
            if call_id not in self._ended:
                self.calls[call_id] = view
        return view

    # ---------------------------------------------------------------- calls

    def _call_started(self, data: Mapping[str, Any], at: float) -> None:
        call = self._call(_text(data, "call_id"), at)
        call.caller_id = _optional_text(data, "caller_id")
        call.did = _optional_text(data, "did")
        call.trunk_id = _optional_text(data, "trunk_id")

    def _call_answered(self, data: Mapping[str, Any], at: float) -> None:
        call = self._call(_text(data, "call_id"), at)
        if call.state == "started":
            call.state = "answered"

    def _ivr_activity(self, data: Mapping[str, Any], at: float) -> None:
        call_id = _optional_text(data, "call_id")
        if call_id is None:
            return
        call = self._call(call_id, at)
        segment = call.open_segment
        if segment is None or segment.kind != "ivr":
            call.open(Segment(kind="ivr", started_at=at), "ivr")
            call.state = "ivr"

    def _call_transferred(self, data: Mapping[str, Any], at: float) -> None:
        call = self._call(_text(data, "call_id"), at)
        call.open(
            Segment(kind="transfer", started_at=at, agent_id=_optional_text(data, "agent_id")),
            "transferred",
        )
        call.state = "transferred"

    def _call_ended(self, data: Mapping[str, Any], at: float) -> None:
        call_id = _text(data, "call_id")
        call = self.calls.pop(call_id, None)
        self._ended[call_id] = None
        while len(self._ended) > ENDED_CALLS_REMEMBERED:
            self._ended.popitem(last=False)
        for queue in self.queues.values():
            queue.waiting.pop(call_id, None)
        for agent in self.agents.values():
            if agent.call_id == call_id and agent.state in BUSY_STATES:
                agent.call_id = None
        if call is not None:
            call.close_segment(at, _optional_text(data, "cause") or "ended")

    def _monitor_started(self, data: Mapping[str, Any], at: float) -> None:
        call = self.calls.get(_text(data, "call_id"))
        if call is not None:
            call.monitor = MonitorView(
                leg_id=_text(data, "leg_id"),
                sip_user=_text(data, "sip_user"),
                mode=_text(data, "mode"),
                since=at,
            )

    def _monitor_changed(self, data: Mapping[str, Any], at: float) -> None:
        monitor = self._monitor_of(data)
        if monitor is not None:
            monitor.mode = _text(data, "mode")

    def _monitor_ended(self, data: Mapping[str, Any], at: float) -> None:
        if self._monitor_of(data) is not None:
            self.calls[_text(data, "call_id")].monitor = None

    def _monitor_of(self, data: Mapping[str, Any]) -> MonitorView | None:
        """The monitoring an event is about: its call's, if on the event's leg."""
        call = self.calls.get(_text(data, "call_id"))
        monitor = call.monitor if call is not None else None
        return monitor if monitor is not None and monitor.leg_id == _text(data, "leg_id") else None

    # ---------------------------------------------------------------- queues

    def _queue_joined(self, data: Mapping[str, Any], at: float) -> None:
        call_id, queue_id = _text(data, "call_id"), _text(data, "queue_id")
        waiting = WaitingCall(
            call_id=call_id,
            queue_id=queue_id,
            priority=int(_number(data, "priority", 0)),
            position=int(_number(data, "position", 1)),
            joined_at=at,
        )
        self.queue(queue_id).waiting[call_id] = waiting
        call = self._call(call_id, at)
        call.open(Segment(kind="queue", started_at=at, queue_id=queue_id), "queued")
        call.state = "queued"
        call.queue_id = queue_id

    def _waiting(self, data: Mapping[str, Any]) -> WaitingCall | None:
        queue = self.queues.get(_text(data, "queue_id"))
        return queue.waiting.get(_text(data, "call_id")) if queue is not None else None

    def _queue_position(self, data: Mapping[str, Any], at: float) -> None:
        waiting = self._waiting(data)
        if waiting is not None:
            waiting.position = int(_number(data, "position"))

    def _queue_priority(self, data: Mapping[str, Any], at: float) -> None:
        waiting = self._waiting(data)
        if waiting is not None:
            waiting.priority = int(_number(data, "priority"))

    def _queue_left(self, data: Mapping[str, Any], at: float) -> None:
        call_id, queue_id = _text(data, "call_id"), _text(data, "queue_id")
        reason = _text(data, "reason")
        queue = self.queue(queue_id)
        queue.waiting.pop(call_id, None)
        queue.record_exit(at, reason, _number(data, "wait_seconds"))
        call = self.calls.get(call_id)
        if call is None:
            return
        segment = call.open_segment
        if segment is not None and segment.kind == "queue":
            call.close_segment(at, reason)
        agent_id = _optional_text(data, "agent_id")
        if reason == "answered" and agent_id is not None:
            self._connect(call, agent_id, queue_id, at)
        elif reason != "answered":
            call.state = "left_queue"

    def _callback_requested(self, data: Mapping[str, Any], at: float) -> None:
        self.queue(_text(data, "queue_id")).callbacks_waiting.add(_text(data, "call_id"))

    def _callback_done(self, data: Mapping[str, Any], at: float) -> None:
        self.queue(_text(data, "queue_id")).callbacks_waiting.discard(_text(data, "call_id"))

    def _callback_failed(self, data: Mapping[str, Any], at: float) -> None:
        if data.get("final") is True:
            self._callback_done(data, at)

    # ---------------------------------------------------------------- agents

    def _agent_offered(self, data: Mapping[str, Any], at: float) -> None:
        call_id, agent_id = _text(data, "call_id"), _text(data, "agent_id")
        waiting = self._waiting(data)
        if waiting is not None:
            waiting.offered_to = agent_id
        call = self.calls.get(call_id)
        if call is not None:
            call.state = "offered"
            call.agent_id = agent_id

    def _offer_failed(self, data: Mapping[str, Any], at: float) -> None:
        waiting = self._waiting(data)
        if waiting is not None:
            waiting.offered_to = None
        call = self.calls.get(_text(data, "call_id"))
        if call is not None and call.state == "offered":
            call.state = "queued"
            call.agent_id = None

    def _agent_answered(self, data: Mapping[str, Any], at: float) -> None:
        call_id, agent_id = _text(data, "call_id"), _text(data, "agent_id")
        queue_id = _text(data, "queue_id")
        call = self._call(call_id, at)
        self._connect(call, agent_id, queue_id, at)
        self.queue(queue_id).waiting.pop(call_id, None)

    def _connect(self, call: CallView, agent_id: str, queue_id: str, at: float) -> None:
        segment = call.open_segment
        if segment is not None and segment.kind == "agent" and segment.agent_id == agent_id:
            return  # agent.answered and queue.left(answered) both report it
        call.open(
            Segment(kind="agent", started_at=at, queue_id=queue_id, agent_id=agent_id), "answered"
        )
        call.state = "connected"
        call.agent_id = agent_id
        call.queue_id = queue_id

    def _agent_state(self, data: Mapping[str, Any], at: float) -> None:
        agent = self.agent(_text(data, "agent_id"))
        state = _text(data, "state")
        previous = _optional_text(data, "previous_state")
        seconds = _number(data, "seconds_in_previous", 0.0)
        if ends_handled_call(previous, data.get("reason")):
            agent.calls_handled += 1
            agent.talk_seconds += seconds
        elif previous == "wrap_up":
            agent.wrap_up_seconds += seconds
        elif previous == "paused":
            agent.pause_seconds += seconds
        agent.state = state
        agent.since = at
        agent.reason = _optional_text(data, "reason") or ""
        agent.call_id = _optional_text(data, "call_id")

    # ---------------------------------------------------------------- views

    def agents_by_state(self, agent_ids: Iterable[str] | None = None) -> dict[str, int]:
        """Counts for a wallboard tile: available, busy, wrap_up, paused, logged_out."""
        counts = {"available": 0, "busy": 0, "wrap_up": 0, "paused": 0, "logged_out": 0}
        views = (
            self.agents.values()
            if agent_ids is None
            else (self.agents[a] for a in agent_ids if a in self.agents)
        )
        for agent in views:
            key = "busy" if agent.state in BUSY_STATES else agent.state
            if key in counts:
                counts[key] += 1
        return counts
