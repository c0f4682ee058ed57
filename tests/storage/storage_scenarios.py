"""Calls told as events for the storage tests, published on a real bus with a settable clock."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from acd.events import (
    AgentAnswered,
    AgentNoAnswer,
    AgentOffered,
    AgentStateChanged,
    QueueJoined,
    QueueLeft,
    QueuePosition,
)
from cxos.bus import DomainEvent, EventBus, Published
from cxos.envelope import JsonValue, to_envelope
from ivr.events import IvrEntered, IvrExited, IvrInput
from telephony.events import CallAnswered, CallEnded, CallStarted

#: 2024-05-01T12:00:00Z
T0 = 1_714_564_800.0
NODE = "node-a"


@dataclass(frozen=True, slots=True, kw_only=True)
class CallTransferred:
    """The shape the CDR fold expects of a transfer by an agent."""

    TYPE: ClassVar[str] = "call.transferred"
    VERSION: ClassVar[int] = 1
    call_id: str
    agent_id: str
    destination: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallHeld:
    TYPE: ClassVar[str] = "call.held"
    VERSION: ClassVar[int] = 1
    call_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallResumed:
    TYPE: ClassVar[str] = "call.resumed"
    VERSION: ClassVar[int] = 1
    call_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorNote:
    """An event type the CDR fold has never heard of."""

    TYPE: ClassVar[str] = "supervisor.note"
    VERSION: ClassVar[int] = 1
    call_id: str
    text: str


class SettableClock:
    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class Teller:
    """Publishes events at chosen offsets (seconds after ``T0``) and keeps their envelopes."""

    def __init__(self, bus: EventBus | None = None, clock: SettableClock | None = None) -> None:
        self.clock = clock or SettableClock()
        self.bus = bus or EventBus(clock=self.clock)
        self.published: list[Published] = []

    def at(self, offset: float, event: DomainEvent) -> Published:
        self.clock.now = T0 + offset
        published = self.bus.publish(event)
        self.published.append(published)
        return published

    def envelopes(self) -> list[dict[str, JsonValue]]:
        return [to_envelope(p, NODE) for p in self.published]


def started(call_id: str) -> CallStarted:
    return CallStarted(
        call_id=call_id,
        trunk_id="carrier",
        did="+33100000000",
        caller_id="+33611111111",
        caller_name="Ada",
        sip_call_id=f"{call_id}@192.0.2.10",
    )


def agent_state(
    agent_id: str, previous: str, state: str, seconds: float, call_id: str | None
) -> AgentStateChanged:
    return AgentStateChanged(
        agent_id=agent_id,
        previous_state=previous,  # type: ignore[arg-type]
        state=state,  # type: ignore[arg-type]
        reason="test",
        seconds_in_previous=seconds,
        call_id=call_id,
    )


def tell_transfer_call(teller: Teller, call_id: str = "call-1") -> None:
    """IVR → queue "sales" → agent a1 (with hold) → transfer → queue "support" → agent a2.

    Offsets: IVR 2–14 s; sales queue 14–44 s (a1 rang 5 s, one no-answer from a0); a1 talks
    44–104 s with 10 s of hold; transfer 104–106 s; support queue 106–126 s; a2 talks 126–186
    s; the caller hangs up at 186 s; a1's wrap-up lasts 15 s, a2's 20 s.
    """
    tell = teller.at
    tell(0, started(call_id))
    tell(1, CallAnswered(call_id=call_id, codec="PCMU"))
    tell(2, IvrEntered(call_id=call_id, tree_id="main", node_id="welcome", language="en"))
    tell(
        8,
        IvrInput(
            call_id=call_id,
            tree_id="main",
            node_id="menu",
            kind="dtmf",
            digits="1",
            outcome="accepted",
            attempt=1,
        ),
    )
    tell(
        14,
        IvrExited(
            call_id=call_id,
            tree_id="main",
            node_id="to-sales",
            destination="queue",
            target="sales",
            route=("welcome", "menu", "to-sales"),
            seconds_in_ivr=12.0,
        ),
    )
    tell(14, QueueJoined(call_id=call_id, queue_id="sales", priority=5, position=3))
    tell(20, QueuePosition(call_id=call_id, queue_id="sales", position=1, ewt_seconds=10.0))
    tell(
        24,
        AgentOffered(
            call_id=call_id, agent_id="a0", queue_id="sales", lease_seconds=15, wait_seconds=10
        ),
    )
    tell(
        39,
        AgentNoAnswer(
            call_id=call_id,
            agent_id="a0",
            queue_id="sales",
            ring_seconds=15.0,
            consecutive_failures=1,
        ),
    )
    tell(
        39,
        AgentOffered(
            call_id=call_id, agent_id="a1", queue_id="sales", lease_seconds=15, wait_seconds=25
        ),
    )
    tell(44, agent_state("a1", "ringing", "on_call", 5.0, call_id))
    tell(
        44,
        AgentAnswered(
            call_id=call_id, agent_id="a1", queue_id="sales", wait_seconds=30.0, ring_seconds=5.0
        ),
    )
    tell(
        44,
        QueueLeft(
            call_id=call_id, queue_id="sales", reason="answered", wait_seconds=30.0, agent_id="a1"
        ),
    )
    tell(60, CallHeld(call_id=call_id))
    tell(70, CallResumed(call_id=call_id))
    tell(80, SupervisorNote(call_id=call_id, text="upsell"))
    tell(104, CallTransferred(call_id=call_id, agent_id="a1", destination="support"))
    tell(104, agent_state("a1", "on_call", "wrap_up", 60.0, call_id))
    tell(106, QueueJoined(call_id=call_id, queue_id="support", priority=5, position=1))
    tell(119, agent_state("a1", "wrap_up", "available", 15.0, call_id))
    tell(126, agent_state("a2", "ringing", "on_call", 4.0, call_id))
    tell(
        126,
        AgentAnswered(
            call_id=call_id, agent_id="a2", queue_id="support", wait_seconds=20.0, ring_seconds=4.0
        ),
    )
    tell(
        126,
        QueueLeft(
            call_id=call_id,
            queue_id="support",
            reason="answered",
            wait_seconds=20.0,
            agent_id="a2",
        ),
    )
    tell(
        186,
        CallEnded(
            call_id=call_id,
            cause="normal",
            hangup_by="caller",
            duration_seconds=186.0,
            talk_seconds=170.0,
        ),
    )
    tell(186, agent_state("a2", "on_call", "wrap_up", 60.0, call_id))
    tell(206, agent_state("a2", "wrap_up", "available", 20.0, call_id))


def tell_abandoned_call(teller: Teller, call_id: str = "call-2", start: float = 0.0) -> None:
    """Straight into queue "sales" at position 2; the caller hangs up after 40 s.

    The ACD reports ``queue.left`` only after telephony reported ``call.ended``.
    """
    teller.at(start, started(call_id))
    teller.at(start + 1, QueueJoined(call_id=call_id, queue_id="sales", priority=1, position=2))
    teller.at(
        start + 41,
        CallEnded(
            call_id=call_id,
            cause="normal",
            hangup_by="caller",
            duration_seconds=41.0,
            talk_seconds=0.0,
        ),
    )
    teller.at(
        start + 41,
        QueueLeft(call_id=call_id, queue_id="sales", reason="abandoned", wait_seconds=40.0),
    )


def numbered_events(count: int, calls: int = 50) -> Iterator[DomainEvent]:
    """Queue events spread over ``calls`` calls, for volume tests."""
    for n in range(count):
        yield QueuePosition(
            call_id=f"vol-{n % calls}", queue_id="sales", position=1 + n % 9, ewt_seconds=None
        )


def envelope_ids(envelopes: list[dict[str, Any]]) -> list[uuid.UUID]:
    return [uuid.UUID(str(e["id"])) for e in envelopes]
