"""When each leg reports, sans-IO: RTCP sender/receiver reports and the media timeout.

Every leg has one timer on a heap: at its due time the leg's compound report is produced (sent
to its RTCP destination, `MediaLeg.rtcp_destination`; none while it has none), the leg is checked
for media silence past `LegSettings.media_timeout` (`MediaTimeout`, once; not while on hold),
and the next report is scheduled. The interval is randomised between 0.5 and 1.5 times its mean
(RFC 3550 §6.3.1), so reports of many legs opened together spread out.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Mapping

from telephony.media.bridge import LegSlot
from telephony.media.events import MediaTimeout
from telephony.media.leg import Transmit

__all__ = ["Reports"]


class Reports:
    """The report timers of every leg of one engine."""

    def __init__(
        self, *, interval: float, wallclock_offset: float, rng: random.Random, events: list[object]
    ) -> None:
        self._interval = interval
        self._wallclock_offset = wallclock_offset
        self._rng = rng
        self._events = events
        self._due: list[tuple[float, str]] = []
        self._out: list[Transmit] = []

    def schedule(self, call_id: str, now: float) -> None:
        interval = self._interval * (0.5 + self._rng.random())
        heapq.heappush(self._due, (now + interval, call_id))

    def due(self, now: float) -> bool:
        return bool(self._due) and self._due[0][0] <= now

    def run(self, now: float, slots: Mapping[str, LegSlot]) -> None:
        """Every report due by `now`."""
        heap = self._due
        while heap and heap[0][0] <= now:
            _, call_id = heapq.heappop(heap)
            slot = slots.get(call_id)
            if slot is None:
                continue  # closed since it was scheduled
            leg = slot.leg
            if leg.rtcp_destination is not None:
                report = leg.rtcp_report(now, now + self._wallclock_offset)
                self._out.append((call_id, report, leg.rtcp_destination))
            timeout = leg.settings.media_timeout
            last = leg.last_received if leg.last_received is not None else leg.opened_at
            if timeout and not leg.timed_out and not slot.held and now - last >= timeout:
                leg.timed_out = True
                self._events.append(MediaTimeout(call_id=call_id, silent_seconds=now - last))
            self.schedule(call_id, now)

    def take(self) -> list[Transmit]:
        out, self._out = self._out, []
        return out
