"""Call detail records as segments, folded from one call's event envelopes (sans-IO).

A call is a sequence of segments: ``ivr``, ``queue``, ``agent``, ``transfer``, ``queue``,
``agent``... each with its start, end, outcome and durations, so a transfer never charges talk
time to the wrong agent. ``CallFold`` consumes the call's envelopes in publication order (the
order of their UUIDv7 ids) and ``record()`` renders the CDR at any point: open while the call is
in progress, complete once ``call.ended`` has been seen. Late events (wrap-up, a queue's own
``queue.left`` after the hang-up) amend the segments they belong to.

The fold is an explicit table of ``(phase, event type) -> handler``. Event types that appear
nowhere in the table are not about CDRs and are ignored, so new event types never break it; a
known type arriving in a phase where the table has no entry is recorded in ``problems`` (and
kept out of the figures) rather than guessed at.

A call placed from an agent's softphone (``call.agent_started``) is an ``internal`` or
``outbound`` call rather than an ``inbound`` one (the record's ``direction``), and has one
segment: ``agent.call_dialled`` opens it (kind ``internal`` to a colleague, ``outbound`` through
a trunk, ``feature_code`` or ``unrecognised``), ``agent.call_connected`` starts its talk time,
and ``agent.call_routed`` closes it with the outcome (``answered``, ``no_answer``, ``busy``...).
The calling agent is the segment's agent, the colleague or number called its destination.

Times come from the envelopes (``time``, RFC 3339); nothing here reads a clock.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from cxos.storage.cdr_records import DIRECT_CALL_KINDS, CallDetailRecord, Segment

#: ``end_reason`` of a call that was in progress when its node stopped without ending it.
SERVER_RESTART = "server restart"

__all__ = [
    "SERVER_RESTART",
    "CallDetailRecord",
    "CallFold",
    "Phase",
    "Segment",
    "fold_call",
    "fold_calls",
    "restart_closure",
]

Envelope = Mapping[str, Any]


class Phase(enum.Enum):
    """Where the call is, as far as the CDR is concerned."""

    NEW = "new"
    """No ``call.started`` seen yet."""
    IDLE = "idle"
    """Started, no segment open (e.g. between an IVR exit and the queue it leads to)."""
    IVR = "ivr"
    QUEUE = "queue"
    AGENT = "agent"
    TRANSFER = "transfer"
    AGENT_CALL = "agent_call"
    """A call placed from an agent's softphone, between what it dialled and how that ended."""
    ENDED = "ended"


@dataclass(slots=True)
class _Working:
    """A segment being built; frozen into a ``Segment`` by ``record()``."""

    kind: str
    started_at: datetime
    ended_at: datetime | None = None
    outcome: str | None = None
    implicit: bool = False
    """Closed by something other than its own end event; that event may still amend it."""
    ivr_tree_id: str | None = None
    queue_id: str | None = None
    agent_id: str | None = None
    destination: str | None = None
    wait_seconds: float | None = None
    ring_seconds: float = 0.0
    hold_seconds: float = 0.0
    hold_started: datetime | None = None
    wrap_up_seconds: float | None = None
    offers: int = 0
    position: int | None = None
    connected_at: datetime | None = None
    """A call placed from an agent's phone: when the other side answered."""

    def close(self, at: datetime, outcome: str, *, implicit: bool = False) -> None:
        if self.hold_started is not None:
            self.hold_seconds += max(0.0, (at - self.hold_started).total_seconds())
            self.hold_started = None
        self.ended_at = max(at, self.started_at)
        self.outcome = outcome
        self.implicit = implicit

    def freeze(self, index: int) -> Segment:
        duration = (
            (self.ended_at - self.started_at).total_seconds() if self.ended_at is not None else 0.0
        )
        wait = self.wait_seconds if self.wait_seconds is not None else 0.0
        if self.kind == "queue" and self.wait_seconds is None:
            wait = duration
        ring, talk = self.ring_seconds, 0.0
        if self.kind == "agent":
            talk = max(0.0, duration - self.hold_seconds)
        elif self.kind in DIRECT_CALL_KINDS:
            # Ringing until the answer, talking from then on; unanswered, it only rang.
            answered = self.connected_at or self.ended_at or self.started_at
            ring = max(0.0, (answered - self.started_at).total_seconds())
            if self.connected_at is not None and self.ended_at is not None:
                talk = (self.ended_at - self.connected_at).total_seconds() - self.hold_seconds
        outcome = self.outcome
        if outcome is None and self.kind in DIRECT_CALL_KINDS and self.connected_at is not None:
            outcome = "answered"  # still talking
        return Segment(
            index=index,
            kind=self.kind,
            started_at=self.started_at,
            ended_at=self.ended_at,
            outcome=outcome,
            ivr_tree_id=self.ivr_tree_id,
            queue_id=self.queue_id,
            agent_id=self.agent_id,
            destination=self.destination,
            wait_seconds=wait,
            ring_seconds=ring,
            talk_seconds=max(0.0, talk),
            hold_seconds=self.hold_seconds,
            wrap_up_seconds=self.wrap_up_seconds,
            offers=self.offers,
            position=self.position,
        )


@dataclass(frozen=True, slots=True)
class _Event:
    type: str
    at: datetime
    data: Mapping[str, Any]
    id: str


@dataclass(slots=True)
class _Call:
    node: str = ""
    direction: str = "inbound"
    trunk_id: str = ""
    did: str = ""
    caller_id: str = ""
    caller_name: str = ""
    started_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None
    hangup_by: str | None = None
    segments: list[_Working] = field(default_factory=list)


class CallFold:
    """Folds one call's envelopes, in publication order, into its CDR."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.phase = Phase.NEW
        self._call = _Call()
        self._problems: list[str] = []

    def apply(self, envelope: Envelope) -> None:
        event_type = envelope.get("type")
        if not isinstance(event_type, str) or event_type not in _KNOWN_TYPES:
            return  # not about CDRs
        try:
            at = datetime.fromisoformat(str(envelope["time"]))
            data = envelope["data"]
            if not isinstance(data, Mapping):
                raise TypeError("data is not an object")
        except (KeyError, TypeError, ValueError) as exc:
            self._problems.append(f"{envelope.get('id')}: {event_type}: unreadable ({exc})")
            return
        event = _Event(type=event_type, at=at, data=data, id=str(envelope.get("id")))
        handler = _TRANSITIONS.get((self.phase, event_type))
        if handler is None:
            self._problems.append(f"{event.id}: {event_type} not expected while {self.phase.value}")
            return
        if self.phase is Phase.NEW:
            self._call.node = str(envelope.get("node") or "")
        handler(self, event)

    def record(self) -> CallDetailRecord | None:
        """The CDR as it stands; None until ``call.started`` has been seen."""
        call = self._call
        if call.started_at is None:
            return None
        return CallDetailRecord(
            call_id=self.call_id,
            node=call.node,
            direction=call.direction,
            trunk_id=call.trunk_id,
            did=call.did,
            caller_id=call.caller_id,
            caller_name=call.caller_name,
            started_at=call.started_at,
            answered_at=call.answered_at,
            ended_at=call.ended_at,
            end_reason=call.end_reason,
            hangup_by=call.hangup_by,
            segments=tuple(s.freeze(i) for i, s in enumerate(call.segments, start=1)),
            problems=tuple(self._problems),
        )

    # Helpers -----------------------------------------------------------------------------------

    def _current(self) -> _Working:
        return self._call.segments[-1]

    def _open(self, kind: str, at: datetime, phase: Phase, **fields: Any) -> _Working:
        segment = _Working(kind=kind, started_at=at, **fields)
        self._call.segments.append(segment)
        self.phase = phase
        return segment

    def _close_current(self, at: datetime, outcome: str, *, implicit: bool = False) -> None:
        if self.phase in _IN_SEGMENT:
            self._current().close(at, outcome, implicit=implicit)
        self.phase = Phase.IDLE

    def _last(self, kind: str, **match: str) -> _Working | None:
        for segment in reversed(self._call.segments):
            if segment.kind == kind and all(getattr(segment, k) == v for k, v in match.items()):
                return segment
        return None

    # Handlers ----------------------------------------------------------------------------------

    def _call_started(self, event: _Event) -> None:
        call, data = self._call, event.data
        call.started_at = event.at
        call.trunk_id = str(data.get("trunk_id", ""))
        call.did = str(data.get("did", ""))
        call.caller_id = str(data.get("caller_id", ""))
        call.caller_name = str(data.get("caller_name", ""))
        self.phase = Phase.IDLE

    def _call_answered(self, event: _Event) -> None:
        if self._call.answered_at is None:
            self._call.answered_at = event.at

    def _call_ended(self, event: _Event) -> None:
        call, data = self._call, event.data
        cause = str(data.get("cause", "normal"))
        hangup_by = data.get("hangup_by")
        end = event.at
        if cause == SERVER_RESTART and call.started_at is not None:
            # The node was down meanwhile: the call ends when the node was last known alive,
            # which the closing event carries as its duration.
            seconds = float(data.get("duration_seconds", 0.0))
            end = max(call.started_at + timedelta(seconds=seconds), self._latest_start())
        if self.phase in _IN_SEGMENT:
            current = self._current()
            outcome = _implicit_outcome(current, cause, hangup_by)
            current.close(end, outcome, implicit=True)
        call.ended_at = end
        call.end_reason = cause
        call.hangup_by = str(hangup_by) if hangup_by is not None else None
        self.phase = Phase.ENDED

    def _latest_start(self) -> datetime:
        starts = [s.started_at for s in self._call.segments]
        assert self._call.started_at is not None
        return max([self._call.started_at, *starts])

    def _agent_state_changed(self, event: _Event) -> None:
        data = event.data
        agent_id = data.get("agent_id")
        previous = data.get("previous_state")
        if previous == "on_call" and self.phase is Phase.AGENT:
            if self._current().agent_id == agent_id:
                # The agent's leg ended; a transfer reported next turns the outcome around.
                self._close_current(event.at, "completed", implicit=True)
        elif previous == "wrap_up" and isinstance(agent_id, str):
            segment = self._last("agent", agent_id=agent_id)
            if segment is not None:
                segment.wrap_up_seconds = float(data.get("seconds_in_previous", 0.0))

    def _ivr_entered(self, event: _Event) -> None:
        if self.phase is Phase.TRANSFER:
            self._close_current(event.at, "connected")
        self._open("ivr", event.at, Phase.IVR, ivr_tree_id=_text(event.data, "tree_id"))

    def _ivr_exited(self, event: _Event) -> None:
        destination = str(event.data.get("destination", ""))
        target = _text(event.data, "target")
        current = self._current()
        current.destination = target
        self._close_current(event.at, destination)
        if destination == "transfer":
            self._open("transfer", event.at, Phase.TRANSFER, destination=target)

    def _ivr_exited_late(self, event: _Event) -> None:
        segment = self._last("ivr")
        if segment is not None and segment.implicit:
            segment.outcome = str(event.data.get("destination", segment.outcome))
            segment.destination = _text(event.data, "target")

    def _queue_joined(self, event: _Event) -> None:
        if self.phase is Phase.IVR:
            self._close_current(event.at, "queue", implicit=True)
        elif self.phase is Phase.TRANSFER:
            self._close_current(event.at, "connected")
        position = event.data.get("position")
        self._open(
            "queue",
            event.at,
            Phase.QUEUE,
            queue_id=_text(event.data, "queue_id"),
            position=position if isinstance(position, int) else None,
        )

    def _queue_join_rejected(self, event: _Event) -> None:
        segment = _Working(
            kind="queue", started_at=event.at, queue_id=_text(event.data, "queue_id")
        )
        segment.close(event.at, f"rejected_{event.data.get('reason', 'unknown')}")
        self._call.segments.append(segment)

    def _queue_offered(self, event: _Event) -> None:
        self._current().offers += 1

    def _queue_left(self, event: _Event) -> None:
        current = self._current()
        current.wait_seconds = _seconds(event.data, "wait_seconds")
        self._close_current(event.at, str(event.data.get("reason", "left")))

    def _queue_left_late(self, event: _Event) -> None:
        segment = self._last("queue", queue_id=str(event.data.get("queue_id")))
        if segment is None:
            return
        segment.wait_seconds = _seconds(event.data, "wait_seconds")
        if segment.implicit:
            segment.outcome = str(event.data.get("reason", segment.outcome))

    def _agent_answered(self, event: _Event) -> None:
        data = event.data
        if self.phase is Phase.QUEUE:
            current = self._current()
            current.wait_seconds = _seconds(data, "wait_seconds")
            current.agent_id = _text(data, "agent_id")
            self._close_current(event.at, "answered")
        elif self.phase is Phase.TRANSFER:
            self._close_current(event.at, "connected")
        elif self.phase is Phase.AGENT:
            self._close_current(event.at, "transferred")
        self._open(
            "agent",
            event.at,
            Phase.AGENT,
            agent_id=_text(data, "agent_id"),
            queue_id=_text(data, "queue_id"),
            ring_seconds=_seconds(data, "ring_seconds") or 0.0,
        )

    def _held(self, event: _Event) -> None:
        current = self._current()
        if current.hold_started is None:
            current.hold_started = event.at

    def _resumed(self, event: _Event) -> None:
        current = self._current()
        if current.hold_started is not None:
            current.hold_seconds += max(0.0, (event.at - current.hold_started).total_seconds())
            current.hold_started = None

    def _transferred(self, event: _Event) -> None:
        data = event.data
        target = _text(data, "destination") or _text(data, "target")
        if self.phase is Phase.AGENT:
            self._close_current(event.at, "transferred")
        else:
            last = self._call.segments[-1] if self._call.segments else None
            if last is None or last.kind != "agent":
                self._problems.append(f"{event.id}: call.transferred with no agent leg before it")
                return
            last.outcome = "transferred"
        self._open("transfer", event.at, Phase.TRANSFER, destination=target)

    def _agent_call_started(self, event: _Event) -> None:
        call, data = self._call, event.data
        call.started_at = event.at
        call.direction = "internal"
        call.did = str(data.get("dialled", ""))
        call.caller_id = str(data.get("sip_user", ""))
        self.phase = Phase.IDLE

    def _agent_call_dialled(self, event: _Event) -> None:
        data = event.data
        route = str(data.get("route", ""))
        kind = _DIRECT_CALL_KIND.get(route, route)
        if kind == "outbound":
            self._call.direction = "outbound"
        self._open(
            kind,
            event.at,
            Phase.AGENT_CALL,
            agent_id=_text(data, "agent_id") or None,
            destination=_text(data, "target") or None,
        )

    def _agent_call_connected(self, event: _Event) -> None:
        current = self._current()
        if current.connected_at is None:
            current.connected_at = event.at
        trunk_id = _text(event.data, "trunk_id")
        if trunk_id:
            self._call.trunk_id = trunk_id

    def _agent_call_routed(self, event: _Event) -> None:
        self._close_current(event.at, str(event.data.get("outcome", "")))

    def _agent_call_routed_late(self, event: _Event) -> None:
        """The call ended before its flow reported the outcome: it amends the segment."""
        last = self._call.segments[-1] if self._call.segments else None
        if last is not None and last.implicit:
            last.outcome = str(event.data.get("outcome", last.outcome))

    def _ignore(self, event: _Event) -> None:
        """In the table on purpose: expected here and of no consequence for the CDR."""


def _implicit_outcome(segment: _Working, cause: str, hangup_by: object) -> str:
    """The outcome of a segment still open when the call ended."""
    if cause == SERVER_RESTART:
        return SERVER_RESTART
    if segment.kind in ("ivr", "queue"):
        return "abandoned" if hangup_by == "caller" else "hangup"
    if segment.kind in DIRECT_CALL_KINDS:
        return "answered" if segment.connected_at is not None else "abandoned"
    return "completed"


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return str(value) if value is not None else None


def _seconds(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    return float(value) if isinstance(value, int | float) else None


_Handler = Callable[[CallFold, _Event], None]

#: Phases in which a segment is open.
_IN_SEGMENT = frozenset({Phase.IVR, Phase.QUEUE, Phase.AGENT, Phase.TRANSFER, Phase.AGENT_CALL})
#: ``agent.call_dialled`` routes -> segment kinds.
_DIRECT_CALL_KIND = MappingProxyType({"agent": "internal", "external": "outbound"})


def _table() -> Mapping[tuple[Phase, str], _Handler]:
    live = (Phase.IDLE, Phase.IVR, Phase.QUEUE, Phase.AGENT, Phase.TRANSFER, Phase.AGENT_CALL)
    rows: list[tuple[tuple[Phase, ...], str, _Handler]] = [
        ((Phase.NEW,), "call.started", CallFold._call_started),
        ((Phase.NEW,), "call.agent_started", CallFold._agent_call_started),
        ((Phase.IDLE,), "agent.call_dialled", CallFold._agent_call_dialled),
        ((Phase.AGENT_CALL,), "agent.call_connected", CallFold._agent_call_connected),
        ((Phase.AGENT_CALL,), "agent.call_routed", CallFold._agent_call_routed),
        ((Phase.IDLE, Phase.ENDED), "agent.call_routed", CallFold._agent_call_routed_late),
        (live, "call.answered", CallFold._call_answered),
        (live, "call.ended", CallFold._call_ended),
        ((*live, Phase.ENDED), "agent.state_changed", CallFold._agent_state_changed),
        ((Phase.IDLE, Phase.TRANSFER), "ivr.entered", CallFold._ivr_entered),
        ((Phase.IVR,), "ivr.exited", CallFold._ivr_exited),
        (
            (Phase.IDLE, Phase.QUEUE, Phase.AGENT, Phase.ENDED),
            "ivr.exited",
            CallFold._ivr_exited_late,
        ),
        ((Phase.IDLE, Phase.IVR, Phase.TRANSFER), "queue.joined", CallFold._queue_joined),
        (
            (Phase.IDLE, Phase.IVR, Phase.TRANSFER),
            "queue.join_rejected",
            CallFold._queue_join_rejected,
        ),
        ((Phase.QUEUE,), "queue.left", CallFold._queue_left),
        (
            (Phase.IDLE, Phase.AGENT, Phase.TRANSFER, Phase.ENDED),
            "queue.left",
            CallFold._queue_left_late,
        ),
        ((Phase.QUEUE,), "agent.offered", CallFold._queue_offered),
        ((Phase.IDLE, Phase.AGENT, Phase.ENDED), "agent.offered", CallFold._ignore),
        ((Phase.QUEUE, Phase.IDLE, Phase.AGENT, Phase.ENDED), "agent.no_answer", CallFold._ignore),
        ((Phase.QUEUE, Phase.IDLE, Phase.AGENT, Phase.ENDED), "agent.rejected", CallFold._ignore),
        (
            (Phase.QUEUE, Phase.IDLE, Phase.TRANSFER, Phase.AGENT),
            "agent.answered",
            CallFold._agent_answered,
        ),
        ((Phase.AGENT, Phase.AGENT_CALL), "call.held", CallFold._held),
        ((Phase.AGENT, Phase.AGENT_CALL), "call.resumed", CallFold._resumed),
        ((Phase.AGENT, Phase.IDLE), "call.transferred", CallFold._transferred),
    ]
    table: dict[tuple[Phase, str], _Handler] = {}
    for phases, event_type, handler in rows:
        for phase in phases:
            table[(phase, event_type)] = handler
    return MappingProxyType(table)


_TRANSITIONS = _table()
_KNOWN_TYPES = frozenset(event_type for _, event_type in _TRANSITIONS)


def fold_call(call_id: str, envelopes: Iterable[Envelope]) -> CallDetailRecord | None:
    """The CDR of ``call_id`` from its envelopes in publication order."""
    fold = CallFold(call_id)
    for envelope in envelopes:
        fold.apply(envelope)
    return fold.record()


def fold_calls(envelopes: Iterable[Envelope]) -> dict[str, CallDetailRecord]:
    """CDRs of every call among ``envelopes`` (in publication order) that has started."""
    folds: dict[str, CallFold] = {}
    for envelope in envelopes:
        call_id = envelope.get("call_id")
        if not isinstance(call_id, str):
            continue
        fold = folds.get(call_id)
        if fold is None:
            fold = folds[call_id] = CallFold(call_id)
        fold.apply(envelope)
    records = {call_id: fold.record() for call_id, fold in folds.items()}
    return {call_id: record for call_id, record in records.items() if record is not None}


def restart_closure(record: CallDetailRecord, last_alive: datetime) -> tuple[float, float]:
    """``(duration_seconds, talk_seconds)`` of a call interrupted by its node stopping.

    The call is taken to have ended when the node was last known alive (its latest stored
    event), never before the call's latest segment started.
    """
    end = max(last_alive, record.started_at, *(s.started_at for s in record.segments))
    segments = tuple(s if s.ended_at is not None else _closed_at(s, end) for s in record.segments)
    closed = replace(record, segments=segments, ended_at=end)
    return (end - record.started_at).total_seconds(), closed.talk_seconds


def _closed_at(segment: Segment, end: datetime) -> Segment:
    duration = (end - segment.started_at).total_seconds()
    talk = max(0.0, duration - segment.hold_seconds) if segment.kind == "agent" else 0.0
    if segment.kind in DIRECT_CALL_KINDS and segment.outcome == "answered":
        # An open direct call that was answered: `ring_seconds` ran until the answer.
        talk = max(0.0, duration - segment.ring_seconds - segment.hold_seconds)
    return replace(segment, ended_at=end, outcome=SERVER_RESTART, talk_seconds=talk)
