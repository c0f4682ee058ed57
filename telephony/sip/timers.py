"""SIP transaction timer values: RFC 3261 §17 Table 4 (timers A–K) and RFC 6026 (timers L, M).

Every timer derives from three base values: T1 (the round-trip estimate, 500 ms), T2 (the longest
retransmit interval for non-INVITE requests and INVITE responses, 4 s) and T4 (how long a message
may linger in the network, 5 s). On a reliable transport (TCP, TLS, SCTP, WebSocket) the transport
itself retransmits, so the request retransmit timers A and E are not armed and the timers that only
exist to soak up network retransmissions (D, G, I, J, K) are zero (RFC 3261 §17.1.1.2, §17.1.2.2,
§17.2.1, §17.2.2).
"""

from __future__ import annotations

from dataclasses import dataclass

# RFC 3261 §18 (and RFC 7118 for WebSocket): every transport but UDP is reliable.
UNRELIABLE_TRANSPORTS = frozenset({"UDP"})


def is_reliable(transport: str) -> bool:
    """True for TCP, TLS, SCTP, WS and WSS; False for UDP (RFC 3261 §17.1.1.2)."""
    return transport.upper() not in UNRELIABLE_TRANSPORTS


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerSettings:
    """Base timer values, in seconds, from which every transaction timer derives.

    Defaults are the RFC 3261 §17 Table 4 recommendations. A node on a LAN may lower T1; RFC 3261
    §17.1.1.1 allows a smaller value on private networks where every element agrees on it.
    """

    t1: float = 0.5
    """RTT estimate, seconds (RFC 3261 §17.1.1.1). Initial retransmit interval of A, E and G."""

    t2: float = 4.0
    """Maximum retransmit interval for non-INVITE requests and INVITE responses, seconds."""

    t4: float = 5.0
    """Maximum time a message stays in the network, seconds (timers I and K)."""

    timer_d_unreliable: float = 32.0
    """Timer D on UDP, seconds: at least 32 s to absorb retransmitted non-2xx responses."""

    def __post_init__(self) -> None:
        if not (self.t1 > 0 and self.t2 >= self.t1 and self.t4 > 0):
            raise ValueError(
                f"timer settings need 0 < T1 <= T2 and T4 > 0, got "
                f"T1={self.t1} T2={self.t2} T4={self.t4}"
            )
        if self.timer_d_unreliable < 32.0:
            raise ValueError("RFC 3261 §17.1.1.2: timer D must be at least 32 s on UDP")

    @property
    def transaction_timeout(self) -> float:
        """64*T1: timers B, F, H, J (UDP), L and M."""
        return 64.0 * self.t1

    def for_transport(self, transport: str) -> TransactionTimers:
        """The concrete timer values for a transaction carried over `transport`."""
        reliable = is_reliable(transport)
        sixty_four_t1 = self.transaction_timeout
        return TransactionTimers(
            reliable=reliable,
            t1=self.t1,
            t2=self.t2,
            a=None if reliable else self.t1,
            b=sixty_four_t1,
            d=0.0 if reliable else self.timer_d_unreliable,
            e=None if reliable else self.t1,
            f=sixty_four_t1,
            # Timer G is armed on UDP only; on a reliable transport the final response is sent
            # once and the transaction waits for the ACK with timer H alone (§17.2.1).
            g=None if reliable else self.t1,
            h=sixty_four_t1,
            i=0.0 if reliable else self.t4,
            j=0.0 if reliable else sixty_four_t1,
            k=0.0 if reliable else self.t4,
            l=sixty_four_t1,
            m=sixty_four_t1,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionTimers:
    """Timer durations for one transport class, seconds. None: the timer is not armed at all.

    A, E and G are *initial* retransmit intervals: A and G double each time (G capped by T2, A
    uncapped and bounded by B in practice), E doubles up to T2 in Trying and stays at T2 in
    Proceeding (RFC 3261 §17.1.2.2).
    """

    reliable: bool
    t1: float
    t2: float
    a: float | None  # INVITE request retransmit, initially T1 (§17.1.1.2)
    b: float  # INVITE transaction timeout, 64*T1
    d: float  # wait time for response retransmits in Completed (INVITE client)
    e: float | None  # non-INVITE request retransmit, initially T1 (§17.1.2.2)
    f: float  # non-INVITE transaction timeout, 64*T1
    g: float | None  # INVITE final-response retransmit, initially T1 (§17.2.1)
    h: float  # wait time for ACK receipt, 64*T1
    i: float  # wait time for ACK retransmits in Confirmed, T4
    j: float  # wait time for non-INVITE request retransmits in Completed, 64*T1
    k: float  # wait time for non-INVITE response retransmits in Completed, T4
    l: float  # noqa: E741  # RFC 6026 §7.1: INVITE server Accepted state, 64*T1
    m: float  # RFC 6026 §7.2: INVITE client Accepted state, 64*T1

    def next_a(self, interval: float) -> float:
        """Timer A after firing: doubled (§17.1.1.2: "reset with a value of 2*T1", and so on)."""
        return 2.0 * interval

    def next_e(self, interval: float, *, proceeding: bool) -> float:
        """Timer E after firing: min(2*E, T2) in Trying, T2 in Proceeding (§17.1.2.2)."""
        return self.t2 if proceeding else min(2.0 * interval, self.t2)

    def next_g(self, interval: float) -> float:
        """Timer G after firing: min(2*G, T2) (§17.2.1)."""
        return min(2.0 * interval, self.t2)

    def next_2xx(self, interval: float) -> float:
        """UAS core 2xx retransmit interval: doubling from T1, capped at T2 (§13.3.1.4)."""
        return min(2.0 * interval, self.t2)
