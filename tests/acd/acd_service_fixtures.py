"""An event loop on virtual time, and an in-memory telephony port, for ACD service tests.

The loop's clock only moves when nothing is ready to run: where a real loop would sleep until its
next timer, this one jumps to it. ``await asyncio.sleep(30)`` in a test therefore takes no real
time while every timer due in those 30 virtual seconds fires in order.
"""

from __future__ import annotations

import asyncio
import random
import selectors
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from acd.actions import CancelReason, RouteReason
from acd.engine import AcdEngine
from acd.events import AcdEvent
from acd.model import AgentProfile, QueueConfig, SkillRequirement
from acd.service import AcdService, ServiceSettings
from acd.store import AcdStore, InProcessAcdStore

T = TypeVar("T")


class VirtualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _VirtualSelector(selectors.DefaultSelector):
    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if not ready and timeout is not None and timeout > 0:
            self._clock.now += timeout  # idle: jump to the next timer instead of sleeping
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.clock = VirtualClock()
        super().__init__(_VirtualSelector(self.clock))

    def time(self) -> float:
        return self.clock.now


def run_virtual(main: Callable[[VirtualClock], Coroutine[Any, Any, T]]) -> T:
    """Run ``main(clock)`` to completion on a virtual-time loop."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        loop = runner.get_loop()
        assert isinstance(loop, VirtualTimeLoop)
        return runner.run(main(loop.clock))


@dataclass
class FakeTelephony:
    """Records what the ACD asked for; ``auto_answer`` answers every ring after a delay."""

    requests: list[tuple[Any, ...]] = field(default_factory=list)
    service: AcdService | None = None
    auto_answer: float | None = None

    async def ring_agent(
        self,
        call_id: str,
        agent_id: str,
        sip_user: str,
        ring_timeout: float,
        attributes: Mapping[str, str],
    ) -> None:
        self.requests.append(("ring", call_id, agent_id, sip_user))
        if self.auto_answer is not None and self.service is not None:
            service = self.service
            loop = asyncio.get_running_loop()
            loop.call_soon(service.ringing, call_id, agent_id)
            loop.call_later(self.auto_answer, service.answered, call_id, agent_id)

    async def cancel_ring(self, call_id: str, agent_id: str, reason: CancelReason) -> None:
        self.requests.append(("cancel", call_id, agent_id, reason))

    async def bridge(self, call_id: str, agent_id: str) -> None:
        self.requests.append(("bridge", call_id, agent_id))

    async def announce(
        self, call_id: str, queue_id: str, position: int | None, ewt_seconds: float | None
    ) -> None:
        self.requests.append(("announce", call_id, position, ewt_seconds))

    async def route_call(
        self, call_id: str, queue_id: str, destination: str | None, reason: RouteReason
    ) -> None:
        self.requests.append(("route", call_id, destination, reason))

    async def offer_callback(self, call_id: str, queue_id: str) -> None:
        self.requests.append(("offer_callback", call_id))

    async def dial_callback(
        self, call_id: str, agent_id: str, destination: str, attempt: int
    ) -> None:
        self.requests.append(("dial", call_id, agent_id, destination, attempt))

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [r[1:] for r in self.requests if r[0] == kind]


def sales_queue() -> QueueConfig:
    """A queue ``sales`` that needs the skill ``sales``."""
    return QueueConfig(queue_id="sales", required_skills=(SkillRequirement(skill="sales"),))


@dataclass
class Node:
    """A running service with its fake telephony, store and published events."""

    service: AcdService
    telephony: FakeTelephony
    store: AcdStore
    events: list[AcdEvent]

    def types(self) -> list[str]:
        return [e.TYPE for e in self.events]


def make_node(
    clock: VirtualClock,
    queues: list[QueueConfig],
    agents: list[AgentProfile],
    *,
    store: AcdStore | None = None,
    settings: ServiceSettings | None = None,
    node_id: str = "node-1",
    **service_options: Any,
) -> Node:
    engine = AcdEngine(queues, agents, rng=random.Random(0))
    telephony = FakeTelephony()
    events: list[AcdEvent] = []
    store = store or InProcessAcdStore()
    service = AcdService(
        engine,
        store,
        telephony,
        events.append,
        node_id=node_id,
        clock=clock,
        shared_clock=clock,
        settings=settings,
        **service_options,
    )
    telephony.service = service
    return Node(service=service, telephony=telephony, store=store, events=events)
