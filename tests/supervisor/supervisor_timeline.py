"""A scripted contact-center day: real domain events published on a bus with a settable clock."""

from __future__ import annotations

import random
from typing import cast

from acd import events as acd
from cxos.bus import DomainEvent, EventBus, Published
from supervisor_api.kpi import EventRecord
from supervisor_api.projection import record_of
from telephony import events as tel
from telephony.media.mix import MonitorMode

T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z


class Timeline:
    """Publishes events at chosen times (seconds after ``T0``) and keeps what was published."""

    def __init__(self, bus: EventBus | None = None) -> None:
        self.now = T0
        self.bus = bus if bus is not None else EventBus(clock=lambda: self.now)
        self.published: list[Published] = []

    def at(self, offset: float, *events: DomainEvent) -> list[Published]:
        self.now = T0 + offset
        out = [self.bus.publish(event) for event in events]
        self.published.extend(out)
        return out

    @property
    def records(self) -> list[EventRecord]:
        return [record_of(p) for p in self.published]


def state(
    agent: str,
    previous: str,
    new: str,
    seconds: float,
    call: str | None = None,
    reason: str = "test",
) -> acd.AgentStateChanged:
    return acd.AgentStateChanged(
        agent_id=agent,
        state=cast(acd.AgentStateName, new),
        previous_state=cast(acd.AgentStateName, previous),
        reason=reason,
        seconds_in_previous=seconds,
        call_id=call,
    )


def started(call: str) -> tel.CallStarted:
    return tel.CallStarted(
        call_id=call,
        trunk_id="carrier",
        did="100",
        caller_id="+4930123",
        caller_name="",
        sip_call_id=f"{call}@sip",
    )


def ended(call: str, talk: float = 0.0) -> tel.CallEnded:
    return tel.CallEnded(
        call_id=call, cause="normal", hangup_by="caller", duration_seconds=talk, talk_seconds=talk
    )


def joined(
    call: str, queue: str = "sales", position: int = 1, priority: int = 0
) -> acd.QueueJoined:
    return acd.QueueJoined(call_id=call, queue_id=queue, priority=priority, position=position)


def left(
    call: str, reason: str, wait: float, agent: str | None = None, queue: str = "sales"
) -> acd.QueueLeft:
    return acd.QueueLeft(
        call_id=call,
        queue_id=queue,
        reason=reason,  # type: ignore[arg-type]
        wait_seconds=wait,
        agent_id=agent,
    )


def offered(call: str, agent: str, wait: float, queue: str = "sales") -> acd.AgentOffered:
    return acd.AgentOffered(
        call_id=call, agent_id=agent, queue_id=queue, lease_seconds=15, wait_seconds=wait
    )


def answered(call: str, agent: str, wait: float, queue: str = "sales") -> acd.AgentAnswered:
    return acd.AgentAnswered(
        call_id=call, agent_id=agent, queue_id=queue, wait_seconds=wait, ring_seconds=2
    )


def no_answer(call: str, agent: str, queue: str = "sales") -> acd.AgentNoAnswer:
    return acd.AgentNoAnswer(
        call_id=call, agent_id=agent, queue_id=queue, ring_seconds=15, consecutive_failures=1
    )


def monitoring(
    call: str, mode: str, previous: str | None = None, *, sip_user: str = "1003"
) -> tel.MonitorStarted | tel.MonitorModeChanged:
    """A supervisor's phone joins ``call`` in ``mode``, or changes to it from ``previous``."""
    leg = f"{call}-supervisor"
    if previous is None:
        return tel.MonitorStarted(
            call_id=call, leg_id=leg, sip_user=sip_user, mode=MonitorMode(mode)
        )
    return tel.MonitorModeChanged(
        call_id=call, leg_id=leg, mode=MonitorMode(mode), previous_mode=MonitorMode(previous)
    )


def monitor_ended(call: str, mode: str, seconds: float) -> tel.MonitorEnded:
    return tel.MonitorEnded(
        call_id=call,
        leg_id=f"{call}-supervisor",
        sip_user="1003",
        mode=MonitorMode(mode),
        reason="supervisor",
        monitor_seconds=seconds,
    )


def sales_morning(timeline: Timeline) -> None:
    """Four calls to 'sales' between T0 and T0+200 (see the KPI test for the expected figures).

    a1 answers c1 (waited 9 s, talk 60 s, wrap-up 10 s) and later c4 (waited 45 s, still
    talking); c2 hangs up after 2 s (a short abandon), c3 after 30 s; a2 does not answer c4.
    """
    t = timeline
    t.at(0, state("a1", "logged_out", "available", 0), state("a2", "logged_out", "available", 0))
    t.at(10, started("c1"))
    t.at(11, joined("c1"))
    t.at(15, offered("c1", "a1", 4))
    t.at(
        20,
        answered("c1", "a1", 9),
        left("c1", "answered", 9, "a1"),
        state("a1", "available", "on_call", 20, "c1"),
    )
    t.at(30, started("c2"))
    t.at(31, joined("c2"))
    t.at(33, left("c2", "abandoned", 2), ended("c2"))
    t.at(40, started("c3"), joined("c3"))
    t.at(50, started("c4"), joined("c4", position=2))
    t.at(51, offered("c4", "a2", 1))
    t.at(66, no_answer("c4", "a2"))
    t.at(70, left("c3", "abandoned", 30), ended("c3"))
    t.at(80, state("a1", "on_call", "wrap_up", 60, "c1"), ended("c1", talk=60))
    t.at(90, state("a1", "wrap_up", "available", 10, "c1"), offered("c4", "a1", 40))
    t.at(
        95,
        answered("c4", "a1", 45),
        left("c4", "answered", 45, "a1"),
        state("a1", "available", "on_call", 5, "c4"),
    )


def busy_morning(timeline: Timeline, calls: int = 160, seed: int = 7) -> None:
    """Three agents taking ``calls`` calls to 'sales' over about three hours after ``T0``.

    A fifth of the callers hang up while waiting; the others are answered by the agent free
    first, talk, wrap up, and the agent becomes available again. Talks and wrap-ups run across
    hour boundaries, which is what the history's buckets must get right.
    """
    rng = random.Random(seed)
    agents = ("a1", "a2", "a3")
    free_at = dict.fromkeys(agents, 5.0)
    changed_at = dict.fromkeys(agents, 0.0)
    planned: list[tuple[float, int, DomainEvent]] = []

    def plan(at: float, event: DomainEvent) -> None:
        planned.append((at, len(planned), event))

    for agent in agents:
        plan(0.0, state(agent, "logged_out", "available", 0))
    arrival = 10.0
    for n in range(calls):
        arrival += rng.randint(20, 120)
        call = f"h{n}"
        plan(arrival, started(call))
        plan(arrival + 1, joined(call))
        patience = rng.randint(1, 120)
        agent = min(agents, key=lambda a: free_at[a])
        answer_at = max(arrival + 3, free_at[agent] + 2)
        wait = answer_at - (arrival + 1)
        if wait > patience:
            plan(arrival + 1 + patience, left(call, "abandoned", patience))
            plan(arrival + 1 + patience, ended(call))
            continue
        talk, wrap = rng.randint(30, 600), rng.randint(5, 120)
        plan(answer_at - 1, offered(call, agent, wait - 1))
        plan(answer_at, answered(call, agent, wait))
        plan(answer_at, left(call, "answered", wait, agent))
        plan(answer_at, state(agent, "available", "on_call", answer_at - changed_at[agent], call))
        hangup = answer_at + talk
        plan(hangup, state(agent, "on_call", "wrap_up", talk, call))
        plan(hangup, ended(call, talk=talk))
        plan(hangup + wrap, state(agent, "wrap_up", "available", wrap, call))
        changed_at[agent] = hangup + wrap
        free_at[agent] = hangup + wrap
    for at, _, event in sorted(planned, key=lambda p: (p[0], p[1])):
        timeline.at(at, event)
