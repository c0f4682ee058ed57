"""RTP/RTCP port allocation over the configured media port range (RFC 3550 §11).

Each leg gets an even port for RTP and the next odd one for RTCP. Free ports are handed out in
least-recently-released order: a port freed by a call that just ended goes to the back of the
line, so packets still in flight towards it (the far end has not processed our BYE yet) do not
land in a new call. The allocator only keeps the books; binding the sockets is the transport's
job.

Ports other programs hold. The range is shared with the rest of the machine: a bind may fail.
The transport then reports the port with `mark_unavailable` and asks for another. The port is
set aside for `unavailable_for` seconds (counted in `bind_failures`), so later calls do not try
it again one after the other, and comes back at the end of the line afterwards. When no free
pair is left, the ports set aside at least `retry_exhausted_after` seconds ago are tried again,
oldest first, before refusing: the other program may have let them go. The allocator refuses
(`PortRangeExhaustedError`, counted in `refused`) only when every pair of the range is in use
by our calls or was found taken within that time. So a range where many ports are held
elsewhere still gives every remaining pair, a pair costs at most one failed bind per
`unavailable_for` while others are free, and an exhausted range at most one per pair per
`retry_exhausted_after`. Time is passed in (`now`, monotonic seconds).
"""

from __future__ import annotations

from collections import deque


class PortRangeExhaustedError(RuntimeError):
    """Every RTP/RTCP pair of the range is in use; the call cannot get media ports."""

    def __init__(self, first_port: int, last_port: int, pairs: int) -> None:
        super().__init__(
            f"all {pairs} RTP/RTCP port pairs in {first_port}-{last_port} are in use; "
            "widen the media port range or lower the call limit"
        )
        self.first_port = first_port
        self.last_port = last_port
        self.pairs = pairs


class PortNotAllocatedError(ValueError):
    """`release` was given a port this allocator did not hand out (or already took back)."""


def rtcp_port(rtp_port: int) -> int:
    """The RTCP port paired with an RTP port: the next higher one (RFC 3550 §11)."""
    return rtp_port + 1


class RtpPortAllocator:
    """Hands out even RTP ports from `first_port`..`last_port` (inclusive), each with its RTCP
    port above it inside the range. Released ports are reused last; ports found taken by other
    programs are skipped for `unavailable_for` seconds."""

    def __init__(
        self,
        *,
        first_port: int,
        last_port: int,
        unavailable_for: float = 60.0,
        retry_exhausted_after: float = 1.0,
    ) -> None:
        if not 1 <= first_port <= last_port <= 65535:
            raise ValueError(
                f"media port range {first_port}-{last_port} is not within 1-65535 in order"
            )
        if not 0 <= retry_exhausted_after <= unavailable_for:
            raise ValueError("need 0 <= retry_exhausted_after <= unavailable_for")
        first_even = first_port + (first_port % 2)
        ports = range(first_even, last_port, 2)  # the RTCP port must fit too: p + 1 <= last_port
        if not ports:
            raise ValueError(
                f"media port range {first_port}-{last_port} holds no even RTP port "
                "with its RTCP port"
            )
        self.first_port = first_port
        self.last_port = last_port
        self.unavailable_for = unavailable_for
        self.retry_exhausted_after = retry_exhausted_after
        self._free: deque[int] = deque(ports)
        self._in_use: set[int] = set()
        # Ports a bind failed on, oldest failure first: (when they may be tried again, port).
        self._unavailable: deque[tuple[float, int]] = deque()
        self.bind_failures = 0
        """Ports reported taken by another program (`mark_unavailable`) since start."""
        self.refused = 0
        """Allocations refused because no pair of the range was left."""

    @property
    def capacity(self) -> int:
        """Port pairs in the range."""
        return len(self._free) + len(self._in_use) + len(self._unavailable)

    @property
    def available(self) -> int:
        """Pairs that can be handed out now (not in use, not set aside as taken)."""
        return len(self._free)

    @property
    def unavailable(self) -> int:
        """Pairs set aside because another program held them when last tried."""
        return len(self._unavailable)

    @property
    def in_use(self) -> frozenset[int]:
        return frozenset(self._in_use)

    def allocate(self, now: float) -> int:
        """Take the least recently released RTP port; its RTCP port is `rtcp_port(port)`."""
        unavailable = self._unavailable
        while unavailable and unavailable[0][0] <= now:
            # Set aside long enough: the other program may have let it go. Back of the line.
            self._free.append(unavailable.popleft()[1])
        if self._free:
            port = self._free.popleft()
        elif unavailable and unavailable[0][0] - self.unavailable_for <= (
            now - self.retry_exhausted_after
        ):
            # Nothing free: before refusing, try again the port found taken the longest ago.
            port = unavailable.popleft()[1]
        else:
            self.refused += 1
            raise PortRangeExhaustedError(self.first_port, self.last_port, self.capacity)
        self._in_use.add(port)
        return port

    def release(self, port: int) -> None:
        """Give back an RTP port from `allocate`; it will be handed out again last."""
        if port not in self._in_use:
            raise PortNotAllocatedError(f"RTP port {port} is not allocated")
        self._in_use.remove(port)
        self._free.append(port)

    def mark_unavailable(self, port: int, now: float) -> None:
        """Give back a port from `allocate` whose RTP or RTCP port could not be bound (another
        program holds it): it is not handed out again for `unavailable_for` seconds."""
        if port not in self._in_use:
            raise PortNotAllocatedError(f"RTP port {port} is not allocated")
        self._in_use.remove(port)
        self._unavailable.append((now + self.unavailable_for, port))
        self.bind_failures += 1
