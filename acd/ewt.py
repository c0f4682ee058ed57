"""Estimated wait time, recent handle times and service level, all from figures passed in.

The estimate simulates the agents who can serve a caller: available ones take the first callers at
once; each busy agent frees after their known remaining time (the rest of a wrap-up, or the average
talk time left on a call plus wrap-up) and then takes the next caller, staying busy one average
handle time per caller. The caller at position ``p`` is served when the ``p``-th such slot opens.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable


def estimate_wait(
    position: int, available: int, busy_remaining: Iterable[float], handle_time: float
) -> float | None:
    """Seconds until the caller at 1-based ``position`` reaches an agent; None if nobody could.

    ``available`` agents are free now; ``busy_remaining`` holds, per busy agent, the seconds until
    they are free; afterwards every agent needs ``handle_time`` seconds per caller.
    """
    if position < 1:
        raise ValueError(f"position must be >= 1, got {position}")
    if handle_time <= 0:
        raise ValueError(f"handle_time must be > 0, got {handle_time}")
    if position <= available:
        return 0.0
    slots = [max(0.0, r) for r in busy_remaining]
    slots.extend(handle_time for _ in range(available))  # free agents finish their first caller
    if not slots:
        return None
    heapq.heapify(slots)
    free_at = 0.0
    for _ in range(position - available):
        free_at = heapq.heappop(slots)
        heapq.heappush(slots, free_at + handle_time)
    return free_at


class HandleTimes:
    """The average of the last ``samples`` talk times, or ``default`` before any call."""

    __slots__ = ("_default", "_recent", "_total")

    def __init__(self, samples: int, default: float) -> None:
        self._recent: deque[float] = deque(maxlen=samples)
        self._total = 0.0
        self._default = default

    def record(self, talk_seconds: float) -> None:
        if len(self._recent) == self._recent.maxlen:
            self._total -= self._recent[0]
        self._recent.append(talk_seconds)
        self._total += talk_seconds

    @property
    def average(self) -> float:
        if not self._recent:
            return self._default
        return max(self._total / len(self._recent), 1e-3)


class ServiceLevel:
    """Share of callers answered within the target over a sliding window of ``window`` seconds.

    Answered and abandoned callers count (an abandon is a miss); callbacks and moves do not.
    With no caller in the window the service level is met (100 %).
    """

    __slots__ = ("_met", "_outcomes", "_target", "_window")

    def __init__(self, target_seconds: float, window: float) -> None:
        self._target = target_seconds
        self._window = window
        self._outcomes: deque[tuple[float, bool]] = deque()
        self._met = 0

    def record(self, now: float, wait_seconds: float, answered: bool) -> None:
        self._expire(now)
        met = answered and wait_seconds <= self._target
        self._outcomes.append((now, met))
        self._met += met

    def percent(self, now: float) -> float:
        self._expire(now)
        if not self._outcomes:
            return 100.0
        return 100.0 * self._met / len(self._outcomes)

    def _expire(self, now: float) -> None:
        outcomes = self._outcomes
        while outcomes and outcomes[0][0] <= now - self._window:
            _, met = outcomes.popleft()
            self._met -= met
