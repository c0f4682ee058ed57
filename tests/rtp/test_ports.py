"""RTP/RTCP port allocation over the media port range (RFC 3550 §11)."""

from __future__ import annotations

import pytest

from telephony.rtp.ports import (
    PortNotAllocatedError,
    PortRangeExhaustedError,
    RtpPortAllocator,
    rtcp_port,
)


def test_allocates_even_rtp_ports_with_rtcp_inside_the_range() -> None:
    allocator = RtpPortAllocator(first_port=10000, last_port=10009)
    ports = [allocator.allocate() for _ in range(5)]
    assert ports == [10000, 10002, 10004, 10006, 10008]
    assert [rtcp_port(port) for port in ports] == [10001, 10003, 10005, 10007, 10009]
    assert allocator.in_use == frozenset(ports)
    assert allocator.available == 0


def test_odd_range_bounds_keep_pairs_whole() -> None:
    # 10001 is odd (an RTCP port at most); 10010 has no RTCP port above it in range.
    allocator = RtpPortAllocator(first_port=10001, last_port=10010)
    assert allocator.capacity == 4
    assert [allocator.allocate() for _ in range(4)] == [10002, 10004, 10006, 10008]


def test_exhaustion_raises_a_clear_error() -> None:
    allocator = RtpPortAllocator(first_port=20000, last_port=20003)
    allocator.allocate()
    allocator.allocate()
    with pytest.raises(PortRangeExhaustedError, match="all 2 RTP/RTCP port pairs in 20000-20003"):
        allocator.allocate()


def test_released_ports_are_reused_last() -> None:
    allocator = RtpPortAllocator(first_port=30000, last_port=30007)
    first, second = allocator.allocate(), allocator.allocate()
    allocator.release(first)
    # A new call gets a port never used rather than the one a call just gave back...
    assert allocator.allocate() == 30004
    assert allocator.allocate() == 30006
    allocator.release(second)
    # ...and only then the least recently released ones, in release order.
    assert allocator.allocate() == first
    assert allocator.allocate() == second


def test_no_double_allocation() -> None:
    allocator = RtpPortAllocator(first_port=40000, last_port=40099)
    taken = set()
    for round_ in range(3):
        while allocator.available:
            port = allocator.allocate()
            assert port not in taken
            taken.add(port)
        for port in sorted(taken)[round_::2]:
            allocator.release(port)
            taken.remove(port)
        assert allocator.in_use == frozenset(taken)
        assert allocator.available + len(taken) == 50


def test_releasing_a_port_not_allocated_is_an_error() -> None:
    allocator = RtpPortAllocator(first_port=50000, last_port=50003)
    port = allocator.allocate()
    allocator.release(port)
    with pytest.raises(PortNotAllocatedError, match="50000"):
        allocator.release(port)
    with pytest.raises(PortNotAllocatedError):
        allocator.release(50002)


@pytest.mark.parametrize(("first", "last"), [(0, 100), (2000, 1000), (60000, 70000), (7, 8)])
def test_invalid_ranges_are_refused(first: int, last: int) -> None:
    with pytest.raises(ValueError):
        RtpPortAllocator(first_port=first, last_port=last)
