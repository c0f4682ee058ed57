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
    ports = [allocator.allocate(0.0) for _ in range(5)]
    assert ports == [10000, 10002, 10004, 10006, 10008]
    assert [rtcp_port(port) for port in ports] == [10001, 10003, 10005, 10007, 10009]
    assert allocator.in_use == frozenset(ports)
    assert allocator.available == 0


def test_odd_range_bounds_keep_pairs_whole() -> None:
    # 10001 is odd (an RTCP port at most); 10010 has no RTCP port above it in range.
    allocator = RtpPortAllocator(first_port=10001, last_port=10010)
    assert allocator.capacity == 4
    assert [allocator.allocate(0.0) for _ in range(4)] == [10002, 10004, 10006, 10008]


def test_exhaustion_raises_a_clear_error() -> None:
    allocator = RtpPortAllocator(first_port=20000, last_port=20003)
    allocator.allocate(0.0)
    allocator.allocate(0.0)
    with pytest.raises(PortRangeExhaustedError, match="all 2 RTP/RTCP port pairs in 20000-20003"):
        allocator.allocate(0.0)


def test_released_ports_are_reused_last() -> None:
    allocator = RtpPortAllocator(first_port=30000, last_port=30007)
    first, second = allocator.allocate(0.0), allocator.allocate(0.0)
    allocator.release(first)
    # A new call gets a port never used rather than the one a call just gave back...
    assert allocator.allocate(0.0) == 30004
    assert allocator.allocate(0.0) == 30006
    allocator.release(second)
    # ...and only then the least recently released ones, in release order.
    assert allocator.allocate(0.0) == first
    assert allocator.allocate(0.0) == second


def test_no_double_allocation() -> None:
    allocator = RtpPortAllocator(first_port=40000, last_port=40099)
    taken = set()
    for round_ in range(3):
        while allocator.available:
            port = allocator.allocate(0.0)
            assert port not in taken
            taken.add(port)
        for port in sorted(taken)[round_::2]:
            allocator.release(port)
            taken.remove(port)
        assert allocator.in_use == frozenset(taken)
        assert allocator.available + len(taken) == 50


def test_releasing_a_port_not_allocated_is_an_error() -> None:
    allocator = RtpPortAllocator(first_port=50000, last_port=50003)
    port = allocator.allocate(0.0)
    allocator.release(port)
    with pytest.raises(PortNotAllocatedError, match="50000"):
        allocator.release(port)
    with pytest.raises(PortNotAllocatedError):
        allocator.release(50002)


@pytest.mark.parametrize(("first", "last"), [(0, 100), (2000, 1000), (60000, 70000), (7, 8)])
def test_invalid_ranges_are_refused(first: int, last: int) -> None:
    with pytest.raises(ValueError):
        RtpPortAllocator(first_port=first, last_port=last)


def test_ports_taken_elsewhere_are_skipped_and_the_rest_of_the_range_still_served() -> None:
    allocator = RtpPortAllocator(first_port=41000, last_port=41019)  # 10 pairs
    taken = {41000, 41002, 41004, 41008, 41012, 41014}  # held by another program
    given = []
    for _ in range(4):  # four calls, each binding until a port works
        while (port := allocator.allocate(5.0)) in taken:
            allocator.mark_unavailable(port, 5.0)
        given.append(port)
    assert given == [41006, 41010, 41016, 41018]
    assert allocator.bind_failures == 6 and allocator.unavailable == 6
    # The range is truly full now: refused, without trying the taken ports again at once.
    with pytest.raises(PortRangeExhaustedError):
        allocator.allocate(5.5)
    assert allocator.refused == 1 and allocator.bind_failures == 6
    # A call that ends frees its port for the next call; the taken ones stay skipped.
    allocator.release(41010)
    assert allocator.allocate(6.0) == 41010


def test_with_nothing_free_the_oldest_taken_ports_are_tried_again_before_refusing() -> None:
    allocator = RtpPortAllocator(
        first_port=42000, last_port=42005, unavailable_for=60.0, retry_exhausted_after=1.0
    )  # 3 pairs, all taken elsewhere at first
    for when, port in ((10.0, 42000), (10.5, 42002), (10.5, 42004)):
        assert allocator.allocate(when) == port
        allocator.mark_unavailable(port, when)
    with pytest.raises(PortRangeExhaustedError):
        allocator.allocate(10.9)
    # A second later, the port that failed first is worth another try (its program may be done).
    assert allocator.allocate(11.0) == 42000
    allocator.mark_unavailable(42000, 11.0)  # still taken
    assert allocator.allocate(11.6) == 42002
    allocator.mark_unavailable(42002, 11.6)
    assert allocator.allocate(11.6) == 42004  # free again: this call gets it
    with pytest.raises(PortRangeExhaustedError):
        allocator.allocate(11.7)
    assert allocator.refused == 2


def test_ports_set_aside_come_back_at_the_end_of_the_line() -> None:
    allocator = RtpPortAllocator(first_port=43000, last_port=43007, unavailable_for=30.0)
    allocator.mark_unavailable(allocator.allocate(0.0), 0.0)  # 43000 taken elsewhere
    assert allocator.allocate(1.0) == 43002
    assert allocator.capacity == 4 and allocator.available == 2
    assert [allocator.allocate(30.0) for _ in range(3)] == [43004, 43006, 43000]


def test_only_allocated_ports_can_be_marked_unavailable() -> None:
    allocator = RtpPortAllocator(first_port=44000, last_port=44003)
    with pytest.raises(PortNotAllocatedError):
        allocator.mark_unavailable(44000, 0.0)
    with pytest.raises(ValueError):
        RtpPortAllocator(
            first_port=44000, last_port=44003, unavailable_for=1, retry_exhausted_after=2
        )
