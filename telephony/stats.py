"""What telephony tells the outside about its traffic: one read-only snapshot of its counters.

The SIP core, the transaction layer, the guard, the registrar and the media engine each keep
plain integer counters that their hot paths bump. Nothing here is updated per message or per
packet: `TelephonyService.stats()` reads those counters when asked (a Prometheus scrape) and
returns a `TelephonyStats`, frozen, so that a reader outside this package (the supervisor API)
depends on this module only, never on the engines' internals.

`SipTally` is the one counter kept for this snapshot alone: requests and responses by method
and status, in and out. Method labels are bounded: a flood of invented methods must not grow
the table without limit, so any method outside `COUNTED_METHODS` is counted as ``other``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

#: Methods counted under their own name (RFC 3261 §27.4 and the extensions CXOS serves or
#: meets); anything else is ``other``.
COUNTED_METHODS: Final = frozenset(
    {
        "ACK",
        "BYE",
        "CANCEL",
        "INFO",
        "INVITE",
        "MESSAGE",
        "NOTIFY",
        "OPTIONS",
        "PRACK",
        "PUBLISH",
        "REFER",
        "REGISTER",
        "SUBSCRIBE",
        "UPDATE",
    }
)
OTHER_METHOD: Final = "other"
_SIP_VERSION: Final = b"SIP/2.0 "


def method_label(method: str) -> str:
    return method if method in COUNTED_METHODS else OTHER_METHOD


@dataclass(slots=True)
class SipTally:
    """SIP requests by method and responses by status code, received and sent. Mutable."""

    requests_received: dict[str, int] = field(default_factory=dict)
    responses_received: dict[int, int] = field(default_factory=dict)
    requests_sent: dict[str, int] = field(default_factory=dict)
    responses_sent: dict[int, int] = field(default_factory=dict)

    def request_received(self, method: str) -> None:
        label = method_label(method)
        self.requests_received[label] = self.requests_received.get(label, 0) + 1

    def response_received(self, status: int) -> None:
        self.responses_received[status] = self.responses_received.get(status, 0) + 1

    def sent(self, data: bytes) -> None:
        """Count one message about to be sent, from its start line (RFC 3261 §7.1, §7.2)."""
        if data.startswith(_SIP_VERSION):
            status = data[8:11]
            if status.isdigit():
                code = int(status)
                self.responses_sent[code] = self.responses_sent.get(code, 0) + 1
            return
        method = data[: data.find(b" ")].decode("ascii", "replace")
        label = method_label(method)
        self.requests_sent[label] = self.requests_sent.get(label, 0) + 1


@dataclass(frozen=True, slots=True, kw_only=True)
class SipStats:
    """Counters of the SIP side since start-up (gauges say so)."""

    requests_received: Mapping[str, int]
    responses_received: Mapping[int, int]
    requests_sent: Mapping[str, int]
    responses_sent: Mapping[int, int]
    malformed_dropped: int
    """Messages that did not parse and could not be answered."""
    malformed_answered: int
    """Requests that did not parse but were answered with their error's status."""
    transactions_client: int
    """Gauge: live client transactions."""
    transactions_server: int
    """Gauge: live server transactions."""
    transaction_timeouts: int
    retransmissions_sent: int
    overload_rejections: int
    """Requests answered 503 because the server transaction table was full."""
    registrations: int
    """Gauge: registered contacts (bindings) of every agent."""
    registered_users: int
    """Gauge: agents (addresses of record) with at least one binding."""
    auth_failures: int
    sources_blocked: int
    """Blocks started (after repeated authentication failures)."""
    dropped_blocked: int
    """Requests dropped unanswered because their source is blocked."""
    dropped_rate_limited: int
    """INVITEs and REGISTERs dropped unanswered because their source (or trunk) was over its
    rate."""
    sources_blocked_now: int
    """Gauge: sources blocked at the moment."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpStats:
    """Counters of the media engine since start-up, over every leg, open or closed."""

    packets_received: int
    """RTP packets accepted (after every check below)."""
    packets_sent: int
    packets_dropped: Mapping[str, int]
    """Received packets thrown away, by reason: ``foreign_address`` (from another address than
    the latched peer: RTP bleed or injection), ``flood``, ``malformed``, ``wrong_payload_type``,
    ``foreign_source`` (another SSRC), ``late``, ``duplicate``, ``overflow`` (jitter buffer)."""
    packets_lost: int
    """Expected but never received (RFC 3550 §6.4.1 cumulative lost, summed over legs)."""
    send_errors: int
    """Datagrams the socket refused to send."""
    legs: int
    """Gauge: media legs open."""
    ports_in_use: int
    """Gauge: RTP/RTCP port pairs taken from the configured range."""
    ports_capacity: int
    """Gauge: RTP/RTCP port pairs in the configured range."""
    port_bind_failures: int = 0
    """Ports of the range found held by another program when bound (set aside for a while)."""
    ports_refused: int = 0
    """Calls refused media ports: no pair of the range was left."""
    ports_unavailable: int = 0
    """Gauge: pairs set aside at the moment because another program held them."""
    comfort_noise_received: int = 0
    """Comfort-noise packets (RFC 3389) received; counted in ``packets_received`` too."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TelephonyStats:
    sip: SipStats
    rtp: RtpStats


class StatsSource(Protocol):
    """What can be asked for a snapshot (the telephony service)."""

    def stats(self) -> TelephonyStats: ...
