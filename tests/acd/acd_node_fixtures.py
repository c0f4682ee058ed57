"""A node's service on a real store, for tests that stop a node and start it again on the same
store, or start another node on it: both store kinds (``store`` fixtures take ``STORES`` as
params, opened by ``open_store``), hand-moved clocks, and services by node id."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest

from acd.engine import AcdEngine
from acd.events import AcdEvent
from acd.model import AgentProfile, QueueConfig
from acd.service import AcdService
from acd.store import AcdStore, InProcessAcdStore
from tests.acd.acd_redis import redis_store
from tests.acd.acd_service_fixtures import FakeTelephony


@asynccontextmanager
async def in_process_store() -> AsyncIterator[AcdStore]:
    yield InProcessAcdStore()


# Each entry opens a fresh, empty store and cleans up after it (the Redis one works under a key
# prefix of its own and deletes its keys at the end).
STORES: list[object] = [
    pytest.param(in_process_store, id="in_process"),
    pytest.param(redis_store, id="redis"),
]


async def open_store(request: pytest.FixtureRequest) -> AsyncIterator[AcdStore]:
    """The body of a ``store`` fixture parametrized with ``STORES``."""
    factory: Callable[[], AbstractAsyncContextManager[AcdStore]] = request.param
    async with factory() as opened:
        yield opened


class Clocks:
    """The engine's monotonic clock and the wall clock nodes share, moved by hand."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.offset = 1.7e9  # the shared clock reads another origin

    def engine(self) -> float:
        return self.mono

    def shared(self) -> float:
        return self.mono + self.offset


def node_service(
    store: AcdStore,
    clocks: Clocks,
    events: list[AcdEvent],
    queues: Sequence[QueueConfig],
    agents: Sequence[AgentProfile],
    node_id: str = "node-1",
) -> tuple[AcdService, FakeTelephony]:
    """A service for node ``node_id`` on ``store`` (not started)."""
    telephony = FakeTelephony()
    service = AcdService(
        AcdEngine(queues, agents, rng=random.Random(0)),
        store,
        telephony,
        events.append,
        node_id=node_id,
        clock=clocks.engine,
        shared_clock=clocks.shared,
    )
    return service, telephony
