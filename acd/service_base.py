"""What the parts of the ACD service share: its settings, and the members each part uses.

:class:`acd.service.AcdService` is assembled from parts, each in its own module: restoring a
node's previous run (:mod:`acd.service_restore`), the reports of calls that are not queue
offers (:mod:`acd.service_calls`) and the agents' shared statuses (:mod:`acd.shared_status`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from acd.claims import NodeClaims
from acd.core import Output
from acd.engine import AcdEngine
from acd.store import AcdStore
from acd.worker import Job


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceSettings:
    """Durations in seconds."""

    heartbeat: float = 10.0  # renewal period of the claims of agents on a call or in wrap-up
    ring_margin: float = 2.0  # a ringing agent's claim outlives the ring timeout by this
    max_pending: int = 10_000  # inputs waiting for the worker before reports are dropped

    def __post_init__(self) -> None:
        if self.heartbeat <= 0 or self.ring_margin < 0 or self.max_pending < 1:
            raise ValueError("heartbeat > 0, ring_margin >= 0 and max_pending >= 1 are required")


class ServiceParts:
    """The members of :class:`acd.service.AcdService` that its parts use."""

    engine: AcdEngine
    store: AcdStore
    settings: ServiceSettings
    _claims: NodeClaims
    _clock: Callable[[], float]
    _shared_clock: Callable[[], float]

    def _report(self, job: Job) -> None:
        """Queue ``job`` for the worker (a report: returns at once)."""
        raise NotImplementedError

    async def _perform(self, outputs: list[Output]) -> None:
        """Carry out the engine's ``outputs`` in order."""
        raise NotImplementedError
