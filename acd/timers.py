"""The engine's timers: one heap of deadlines, each keyed by (kind, agent or call id).

Setting a timer replaces the previous one with the same key; cancelled and replaced entries stay in
the heap until they reach the top, where they are recognised by their sequence number and dropped.
"""

from __future__ import annotations

import enum
import heapq


def elapsed(since: float, now: float) -> float:
    """Seconds from ``since`` to ``now`` as a float, never negative (for event durations)."""
    return max(0.0, float(now) - float(since))


class TimerKind(enum.Enum):
    LEASE = "lease"  # agent: the offer lapses (reserved or ringing too long)
    WRAP_UP = "wrap_up"  # agent: wrap-up time over
    HELD = "held"  # agent: another node's claim on them ends, they may be offered calls again
    ESCALATE = "escalate"  # call: next escalation step
    STICKY = "sticky"  # call: stop waiting for the preferred agent
    ANNOUNCE = "announce"  # call: periodic position / hold time announcement
    MAX_WAIT = "max_wait"  # call: queue timeout
    RETRY = "retry"  # call: an agent who failed it may be offered it again
    CALLBACK_RETRY = "callback_retry"  # call: next attempt to reach a callback customer


class Timers:
    __slots__ = ("_active", "_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerKind, str]] = []
        self._active: dict[tuple[TimerKind, str], int] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._active)

    def set(self, kind: TimerKind, key: str, deadline: float) -> None:
        self._seq += 1
        self._active[(kind, key)] = self._seq
        heapq.heappush(self._heap, (deadline, self._seq, kind, key))

    def cancel(self, kind: TimerKind, key: str) -> None:
        self._active.pop((kind, key), None)

    def is_set(self, kind: TimerKind, key: str) -> bool:
        return (kind, key) in self._active

    def next_deadline(self) -> float | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> tuple[TimerKind, str] | None:
        """The earliest timer due at ``now`` (removed), or None."""
        self._drop_stale()
        if not self._heap or self._heap[0][0] > now:
            return None
        _, _, kind, key = heapq.heappop(self._heap)
        del self._active[(kind, key)]
        return kind, key

    def _drop_stale(self) -> None:
        heap = self._heap
        active = self._active
        while heap:
            _, seq, kind, key = heap[0]
            if active.get((kind, key)) == seq:
                return
            heapq.heappop(heap)
