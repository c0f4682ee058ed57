"""SIP, RTP and security counters of telephony on ``/metrics``, read when Prometheus scrapes.

Telephony keeps plain integer counters on its hot paths; this collector asks for one snapshot
(`telephony.stats.TelephonyStats`) per scrape and turns it into metric families, so nothing is
updated per message or per packet for the sake of metrics. The API depends on that snapshot's
shape only, never on the SIP or media engines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from telephony.stats import TelephonyStats


def _counter(name: str, documentation: str, value: int) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _gauge(name: str, documentation: str, value: int) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _labelled(
    name: str, documentation: str, label: str, values: Mapping[str, int] | Mapping[int, int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, count in sorted(values.items()):
        family.add_metric([str(key)], count)
    return family


class TelephonyCollector(Collector):
    """The metric families of one `TelephonyStats` snapshot, taken at each scrape."""

    def __init__(self, snapshot: Callable[[], TelephonyStats]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        stats = self._snapshot()
        sip, rtp = stats.sip, stats.rtp
        yield _labelled(
            "cxos_sip_requests_received",
            "SIP requests received that parsed, by method",
            "method",
            sip.requests_received,
        )
        yield _labelled(
            "cxos_sip_responses_received",
            "SIP responses received that parsed, by status",
            "status",
            sip.responses_received,
        )
        yield _labelled(
            "cxos_sip_requests_sent", "SIP requests sent, by method", "method", sip.requests_sent
        )
        yield _labelled(
            "cxos_sip_responses_sent",
            "SIP responses sent (retransmissions included), by status",
            "status",
            sip.responses_sent,
        )
        malformed = CounterMetricFamily(
            "cxos_sip_malformed_messages",
            "SIP messages that did not parse: answered with their error, or dropped",
            labels=["outcome"],
        )
        malformed.add_metric(["answered"], sip.malformed_answered)
        malformed.add_metric(["dropped"], sip.malformed_dropped)
        yield malformed
        transactions = GaugeMetricFamily(
            "cxos_sip_transactions", "Live SIP transactions", labels=["kind"]
        )
        transactions.add_metric(["client"], sip.transactions_client)
        transactions.add_metric(["server"], sip.transactions_server)
        yield transactions
        yield _counter(
            "cxos_sip_transaction_timeouts", "Transactions ended by timer", sip.transaction_timeouts
        )
        yield _counter(
            "cxos_sip_retransmissions_sent",
            "Requests and responses retransmitted by their transaction",
            sip.retransmissions_sent,
        )
        yield _counter(
            "cxos_sip_overload_rejections",
            "Requests answered 503 because the transaction table was full",
            sip.overload_rejections,
        )
        yield _gauge(
            "cxos_sip_registrations", "Contacts registered by agents' phones", sip.registrations
        )
        yield _gauge(
            "cxos_sip_registered_users",
            "Agents' SIP users with at least one registered contact",
            sip.registered_users,
        )
        yield _counter("cxos_sip_auth_failures", "Failed digest authentications", sip.auth_failures)
        yield _counter(
            "cxos_sip_sources_blocked",
            "Sources blocked after repeated authentication failures",
            sip.sources_blocked,
        )
        yield _gauge(
            "cxos_sip_sources_blocked_now", "Sources blocked at the moment", sip.sources_blocked_now
        )
        guard = CounterMetricFamily(
            "cxos_sip_requests_dropped",
            "Requests dropped unanswered by the per-source guard",
            labels=["reason"],
        )
        guard.add_metric(["blocked"], sip.dropped_blocked)
        guard.add_metric(["rate_limited"], sip.dropped_rate_limited)
        yield guard
        yield _counter("cxos_rtp_packets_received", "RTP packets accepted", rtp.packets_received)
        yield _counter("cxos_rtp_packets_sent", "RTP packets sent", rtp.packets_sent)
        yield _labelled(
            "cxos_rtp_packets_dropped",
            "RTP packets received and thrown away, by reason",
            "reason",
            rtp.packets_dropped,
        )
        yield _counter(
            "cxos_rtp_packets_lost",
            "RTP packets expected but never received (RFC 3550 cumulative lost)",
            rtp.packets_lost,
        )
        yield _counter(
            "cxos_rtp_send_errors", "RTP/RTCP datagrams the socket refused", rtp.send_errors
        )
        yield _gauge("cxos_media_legs", "Media legs open", rtp.legs)
        yield _gauge("cxos_rtp_ports_in_use", "RTP/RTCP port pairs in use", rtp.ports_in_use)
        yield _gauge(
            "cxos_rtp_ports_capacity", "RTP/RTCP port pairs in the range", rtp.ports_capacity
        )
        yield _gauge(
            "cxos_rtp_ports_unavailable",
            "RTP/RTCP port pairs set aside because another program held them",
            rtp.ports_unavailable,
        )
        yield _counter(
            "cxos_rtp_port_bind_failures",
            "RTP/RTCP ports of the range found held by another program",
            rtp.port_bind_failures,
        )
        yield _counter(
            "cxos_rtp_ports_refused",
            "Calls refused media ports because no pair of the range was left",
            rtp.ports_refused,
        )
        yield _counter(
            "cxos_rtp_comfort_noise_received",
            "Comfort-noise packets (RFC 3389) received",
            rtp.comfort_noise_received,
        )
