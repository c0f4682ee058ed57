"""RTP/RTCP port allocation over the configured media port range (RFC 3550 §11).

Each leg gets an even port for RTP and the next odd one for RTCP. Free ports are handed out in
least-recently-released order: a port freed by a call that just ended goes to the back of the
line, so packets still in flight towards it (the far end has not processed our BYE yet) do not
land in a new call. The allocator only keeps the books; binding the sockets is the transport's
job, which hands a port back with `release` if the bind fails and asks for another.
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
    port above it inside the range. Released ports are reused last."""

    def __init__(self, *, first_port: int, last_port: int) -> None:
        if not 1 <= first_port <= last_port <= 65535:
            raise ValueError(
                f"media port range {first_port}-{last_port} is not within 1-65535 in order"
            )
        first_even = first_port + (first_port % 2)
        ports = range(first_even, last_port, 2)  # the RTCP port must fit too: p + 1 <= last_port
        if not ports:
            raise ValueError(
                f"media port range {first_port}-{last_port} holds no even RTP port "
                "with its RTCP port"
            )
        self.first_port = first_port
        self.last_port = last_port
        self._free: deque[int] = deque(ports)
        self._in_use: set[int] = set()

    @property
    def capacity(self) -> int:
        """Port pairs in the range."""
        return len(self._free) + len(self._in_use)

    @property
    def available(self) -> int:
        return len(self._free)

    @property
    def in_use(self) -> frozenset[int]:
        return frozenset(self._in_use)

    def allocate(self) -> int:
        """Take the least recently released RTP port; its RTCP port is `rtcp_port(port)`."""
        if not self._free:
            raise PortRangeExhaustedError(self.first_port, self.last_port, self.capacity)
        port = self._free.popleft()
        self._in_use.add(port)
        return port

    def release(self, port: int) -> None:
        """Give back an RTP port from `allocate`; it will be handed out again last."""
        if port not in self._in_use:
            raise PortNotAllocatedError(f"RTP port {port} is not allocated")
        self._in_use.remove(port)
        self._free.append(port)
