"""Rendering events as an Asterisk ``queue_log`` (sans-IO), for existing wallboards and reports.

Each line is ``epoch|callid|queue|agent|EVENT|data1|data2|...``, the pipe-separated layout of
Asterisk's queue log: the Unix time in whole seconds, the call's id (``NONE`` for agent events
about no call), the queue (``NONE`` when not about one), the agent (``NONE`` when none), the
event verb and its parameters. Durations are whole seconds except ``RINGNOANSWER``'s
milliseconds, as in Asterisk.

Events and their lines:

- ``queue.joined`` → ``ENTERQUEUE|url|callerid|position`` (url is always empty)
- ``agent.no_answer`` → ``RINGNOANSWER|ringtime_ms``
- ``agent.answered`` → ``CONNECT|holdtime|bridged_id|ringtime`` (bridged_id: the call id)
- ``queue.left`` abandoned / timeout / empty → ``ABANDON`` / ``EXITWITHTIMEOUT`` /
  ``EXITEMPTY`` ``|position|origposition|waittime``
- ``call.transferred`` while with an agent → ``TRANSFER|destination|context|holdtime|calltime|
  origposition`` (context is ``cxos``)
- ``call.ended`` while with an agent → ``COMPLETECALLER`` when the caller hung up, otherwise
  ``COMPLETEAGENT``, ``|holdtime|calltime|origposition``
- ``agent.state_changed`` → ``AGENTLOGIN|agent`` / ``AGENTLOGOFF|agent|logintime`` /
  ``PAUSE|reason`` / ``UNPAUSE|reason``

Other events (and ``queue.left`` for ``answered``, ``callback``, ``moved``, ``escalated``) have
no queue_log counterpart and produce no line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

NONE = "NONE"
TRANSFER_CONTEXT = "cxos"

_LEAVE_VERBS = {"abandoned": "ABANDON", "timeout": "EXITWITHTIMEOUT", "empty": "EXITEMPTY"}


@dataclass(slots=True)
class _Waiting:
    queue_id: str
    original_position: int
    position: int


@dataclass(slots=True)
class _Connected:
    queue_id: str
    agent_id: str
    since: float
    hold_seconds: float
    original_position: int


@dataclass(slots=True)
class QueueLog:
    """Folds envelopes, in publication order, into queue_log lines."""

    agent_prefix: str = ""
    """Prepended to agent ids, e.g. ``Agent/`` or ``PJSIP/`` to match a wallboard's naming."""
    _callers: dict[str, str] = field(default_factory=dict)
    _waiting: dict[str, _Waiting] = field(default_factory=dict)
    _connected: dict[str, _Connected] = field(default_factory=dict)
    _logged_in: dict[str, float] = field(default_factory=dict)

    def lines(self, envelopes: Iterable[Mapping[str, Any]]) -> Iterator[str]:
        for envelope in envelopes:
            yield from self.apply(envelope)

    def apply(self, envelope: Mapping[str, Any]) -> list[str]:
        event_type = envelope.get("type")
        data = envelope.get("data")
        if not isinstance(event_type, str) or not isinstance(data, Mapping):
            return []
        try:
            at = datetime.fromisoformat(str(envelope["time"])).timestamp()
        except (KeyError, ValueError):
            return []
        handler = _HANDLERS.get(event_type)
        if handler is None:
            return []
        return handler(self, at, str(envelope.get("call_id") or NONE), data)

    # Handlers: (time, call id, data) -> lines --------------------------------------------------

    def _call_started(self, at: float, call_id: str, data: Mapping[str, Any]) -> list[str]:
        self._callers[call_id] = str(data.get("caller_id", ""))
        return []

    def _queue_joined(self, at: float, call_id: str, data: Mapping[str, Any]) -> list[str]:
        queue_id = str(data.get("queue_id", NONE))
        position = _int(data.get("position"))
        self._waiting[call_id] = _Waiting(queue_id, position, position)
        caller = self._callers.get(call_id, "")
        return [_line(at, call_id, queue_id, NONE, "ENTERQUEUE", "", caller, position)]

    def _queue_position(self, at: float, call_id: str, data: Mapping[str, Any]) -> list[str]:
        waiting = self._waiting.get(call_id)
        if waiting is not None:
            waiting.position = _int(data.get("position"))
        return []

    def _agent_no_answer(self, at: float, call_id: str, data: Mapping[str, Any]) -> list[str]:
        ring_ms = round(_float(data.get("ring_seconds")) * 1000)
        return [
            _line(
                at,
                call_id,
                str(data.get("queue_id", NONE)),
                self._agent(data),
                "RINGNOANSWER",
                ring_ms,
            )
        ]

    def _agent_answered(self, at: float, call_id: str, data: Mapping[str, Any]) -> list[str]:
        queue_id = str(data.get("queue_id", NONE))
        hold = _float(data.get("wait_seconds"))
        waiting = self._waiting.pop(call_id, None)
        original = waiting.original_position if waiting is not None else 0
        agent_id = str(data.get("agent_id", ""))
        self._connected[call_id] = _Connected(queue_id, agent_id, at, hold, original)
        ring = _seconds(_float(data.get("ring_seconds")))
        return [
            _line(
                at, call_id, queue_id, self._agent(data), "CONNECT", _seconds(hold), call_id, ring
            )
        ]

    def _queue_left(self, at: float, call_id: str, data: Mapping[str, Any]) -> list[str]:
        waiting = self._waiting.pop(call_id, None)
        verb = _LEAVE_VERBS.get(str(data.get("reason")))
        if verb is None:
            return []
        position = waiting.position if waiting is not None else 0
        original = waiting.original_position if waiting is not None else 0
        wait = _seconds(_float(data.get("wait_seconds")))
        queue_id = str(data.get("queue_id", NONE))
        return [_line(at, call_id, queue_id, NONE, verb, position, original, wait)]

    def _call_transferred(self, at: float, call_id: str, data: Mapping[str, Any]) -> list[str]:
        connected = self._connected.pop(call_id, None)
        if connected is None:
            return []
        destination = str(data.get("destination") or data.get("target") or "")
        return [
            _line(
                at,
                call_id,
                connected.queue_id,
                self.agent_prefix + connected.agent_id,
                "TRANSFER",
                destination,
                TRANSFER_CONTEXT,
                _seconds(connected.hold_seconds),
                _seconds(at - connected.since),
                connected.original_position,
            )
        ]

    def _call_ended(self, at: float, call_id: str, data: Mapping[str, Any]) -> list[str]:
        self._callers.pop(call_id, None)
        # A caller still waiting keeps its entry: the queue reports its own queue.left next.
        connected = self._connected.pop(call_id, None)
        if connected is None:
            return []
        verb = "COMPLETECALLER" if data.get("hangup_by") == "caller" else "COMPLETEAGENT"
        return [
            _line(
                at,
                call_id,
                connected.queue_id,
                self.agent_prefix + connected.agent_id,
                verb,
                _seconds(connected.hold_seconds),
                _seconds(at - connected.since),
                connected.original_position,
            )
        ]

    def _agent_state_changed(self, at: float, call_id: str, data: Mapping[str, Any]) -> list[str]:
        agent_id = str(data.get("agent_id", ""))
        agent = self.agent_prefix + agent_id
        state, previous = data.get("state"), data.get("previous_state")
        reason = str(data.get("reason", ""))
        lines: list[str] = []
        if previous == "logged_out" and state != "logged_out":
            self._logged_in[agent_id] = at
            lines.append(_line(at, NONE, NONE, agent, "AGENTLOGIN", agent))
        if previous == "paused" and state != "paused":
            lines.append(_line(at, NONE, NONE, agent, "UNPAUSE", reason))
        if state == "paused" and previous != "paused":
            lines.append(_line(at, NONE, NONE, agent, "PAUSE", reason))
        if state == "logged_out" and previous != "logged_out":
            since = self._logged_in.pop(agent_id, None)
            login_seconds = _seconds(at - since) if since is not None else 0
            lines.append(_line(at, NONE, NONE, agent, "AGENTLOGOFF", agent, login_seconds))
        return lines

    def _agent(self, data: Mapping[str, Any]) -> str:
        agent_id = data.get("agent_id")
        return self.agent_prefix + str(agent_id) if agent_id else NONE


_Handler = Callable[[QueueLog, float, str, Mapping[str, Any]], list[str]]

_HANDLERS: Mapping[str, _Handler] = MappingProxyType(
    {
        "call.started": QueueLog._call_started,
        "queue.joined": QueueLog._queue_joined,
        "queue.position": QueueLog._queue_position,
        "agent.no_answer": QueueLog._agent_no_answer,
        "agent.answered": QueueLog._agent_answered,
        "queue.left": QueueLog._queue_left,
        "call.transferred": QueueLog._call_transferred,
        "call.ended": QueueLog._call_ended,
        "agent.state_changed": QueueLog._agent_state_changed,
    }
)

#: The event types that can produce a line (or state for one): what an export needs to read.
QUEUE_LOG_TYPES = frozenset(_HANDLERS)


def _line(at: float, call_id: str, queue_id: str, agent: str, verb: str, *params: object) -> str:
    fields = [str(math.floor(at)), call_id, queue_id, agent, verb, *(str(p) for p in params)]
    return "|".join(_clean(value) for value in fields)


def _clean(value: str) -> str:
    """A field may hold neither the separator nor a line break."""
    return value.replace("|", "_").replace("\n", " ").replace("\r", " ")


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _float(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _seconds(value: float) -> int:
    return max(0, round(value))
