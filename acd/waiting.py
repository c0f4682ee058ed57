"""Waiting callers, grouped by who may serve them.

Callers of a queue at the same escalation step share one requirement, so they form a *wait class*
with its own heap; an agent looks only at the heads of the classes they qualify for. The order in a
queue is priority with optional aging: with ``priority_aging`` = A seconds per point, a caller's
effective priority ``p + (now - arrival) / A`` grows at the same rate for everyone, so sorting by
``arrival / A - p`` (a constant per caller) keeps the order right at every instant. Without aging
the key is ``-p``; ties go to the earlier arrival.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from acd.actions import ExitReason
from acd.ewt import HandleTimes, ServiceLevel
from acd.index import RankedAgents
from acd.model import QueueConfig, Requirement, SkillRequirement


class CallStatus(enum.Enum):
    WAITING = "waiting"
    OFFERED = "offered"  # one offer pending (or several for ring-all)
    DIALING = "dialing"  # callback: the agent answered, the customer is being dialled


@dataclass(slots=True, eq=False)
class WaitingCall:
    """A caller (or a callback keeping a caller's place) in a queue."""

    call_id: str
    queue_id: str
    priority: int
    attributes: Mapping[str, str]
    anchor: float  # arrival: the place in line, kept across moves and callbacks
    joined_at: float  # entered the current queue: the escalation and max-wait clock
    seq: int
    wait_class: WaitClass
    rank: float = 0.0
    step: int = 0
    status: CallStatus = CallStatus.WAITING
    pooled: bool = False  # in its class heap, open to every eligible agent
    version: int = 0
    offers: dict[str, float] = field(default_factory=dict)  # agent -> when offered
    excluded: dict[str, float] = field(default_factory=dict)  # agent -> until
    preferred_agent: str | None = None
    sticky_until: float | None = None
    held_until: float | None = None  # callback between attempts
    callback_destination: str | None = None
    callback_attempts: int = 0
    pending_exit: tuple[ExitReason, str | None] | None = (
        None  # (reason, destination) after the offer
    )
    # The caller's own needs (the IVR's, the CRM's), on top of the queue's; sorted by skill.
    required: tuple[SkillRequirement, ...] = ()

    @property
    def required_skills(self) -> dict[str, int]:
        return {need.skill: need.min_proficiency for need in self.required}

    def competes_with(self, other: WaitingCall) -> bool:
        """Whether ``other`` may take the agents this caller waits for: either has no skills
        of their own (then agents able to serve one may serve the other), or they share one."""
        if not self.required or not other.required:
            return True
        mine = {need.skill for need in self.required}
        return any(need.skill in mine for need in other.required)

    @property
    def is_callback(self) -> bool:
        return self.callback_destination is not None

    def order_key(self) -> tuple[float, float, int]:
        return (self.rank, self.anchor, self.seq)

    def effective_priority(self, now: float, aging: float | None) -> float:
        if aging is None:
            return float(self.priority)
        return self.priority + (now - self.anchor) / aging

    def may_offer_to(self, agent_id: str, now: float) -> bool:
        until = self.excluded.get(agent_id)
        return until is None or until <= now


class WaitClass:
    """Callers of one queue at one escalation step: one requirement, one heap.

    A caller with skills of their own waits in a class of their own requirement (the queue's
    step plus theirs), made when the first such caller needs it and dropped when its last one
    leaves (``members``): see :mod:`acd.routing`.
    """

    __slots__ = (
        "_heap",
        "_limit",
        "free",
        "members",
        "own",
        "queue_id",
        "requirement",
        "staffed",
        "step",
    )

    def __init__(
        self,
        queue_id: str,
        step: int,
        requirement: Requirement,
        own: tuple[SkillRequirement, ...] = (),
    ) -> None:
        self.queue_id = queue_id
        self.step = step
        self.requirement = requirement
        self.own = own  # the callers' own skills (relaxed to this step); () for a queue's class
        self.members: set[str] = set()  # call ids, kept for a class of callers' own skills only
        self.staffed = 0  # logged-in, unpaused agents who qualify
        # Available agents who qualify, in the queue strategy's order (the router sets the key).
        self.free = RankedAgents(lambda agent_id: 0.0)
        self._heap: list[tuple[float, float, int, int, WaitingCall]] = []
        self._limit = 64  # compact stale entries when the heap outgrows this (amortised O(1))

    def push(self, call: WaitingCall) -> None:
        call.version += 1
        call.pooled = True
        call.wait_class = self
        heapq.heappush(self._heap, (call.rank, call.anchor, call.seq, call.version, call))
        if len(self._heap) > self._limit:
            self._compact()

    def _valid(self, entry: tuple[float, float, int, int, WaitingCall]) -> bool:
        call = entry[4]
        return call.pooled and call.version == entry[3] and call.wait_class is self

    def head(self) -> WaitingCall | None:
        heap = self._heap
        while heap:
            if self._valid(heap[0]):
                return heap[0][4]
            heapq.heappop(heap)
        return None

    def best(self, accept: Callable[[WaitingCall], bool]) -> WaitingCall | None:
        """The first caller in order that ``accept`` takes (the head, unless it is refused)."""
        head = self.head()
        if head is None or accept(head):
            return head
        chosen: WaitingCall | None = None
        for call in self.pooled_calls():
            if accept(call) and (chosen is None or call.order_key() < chosen.order_key()):
                chosen = call
        return chosen

    def pooled_calls(self) -> Iterator[WaitingCall]:
        return (entry[4] for entry in self._heap if self._valid(entry))

    def _compact(self) -> None:
        self._heap = [entry for entry in self._heap if self._valid(entry)]
        heapq.heapify(self._heap)
        self._limit = max(64, 2 * len(self._heap))


class QueueRuntime:
    """A queue's live state: its callers, classes per escalation step, and recent figures."""

    __slots__ = ("classes", "config", "entries", "last_offered", "order", "service_level", "talk")

    def __init__(
        self,
        config: QueueConfig,
        classes: list[WaitClass],
        order: Mapping[str, int],
        service_level_window: float,
        handle_time_samples: int,
        default_talk_time: float,
    ) -> None:
        self.config = config
        self.classes = classes  # index = escalation step; equal requirements share a class
        self.entries: dict[str, WaitingCall] = {}
        self.order = order
        self.last_offered: int | None = None
        self.service_level = ServiceLevel(config.service_level_seconds, service_level_window)
        self.talk = HandleTimes(handle_time_samples, default_talk_time)

    def rank_of(self, priority: int, anchor: float) -> float:
        aging = self.config.priority_aging
        return -float(priority) if aging is None else anchor / aging - priority

    def position(self, call: WaitingCall) -> int:
        """1 + the callers ahead who compete for the same agents (see ``competes_with``): a
        French speaker is not behind German speakers, whom other agents serve."""
        key = call.order_key()
        if not call.required:
            return 1 + sum(1 for other in self.entries.values() if other.order_key() < key)
        return 1 + sum(
            1
            for other in self.entries.values()
            if other.order_key() < key and call.competes_with(other)
        )

    def handle_time(self, wrapuptime: float) -> float:
        return self.talk.average + wrapuptime

    def service_level_gap(self, now: float) -> float:
        """Current service level minus target, in percent points (negative: below target)."""
        return self.service_level.percent(now) - self.config.service_level_percent
