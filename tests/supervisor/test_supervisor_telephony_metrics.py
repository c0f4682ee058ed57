"""SIP, RTP and security counters on /metrics: read from telephony's snapshot at each scrape."""

from __future__ import annotations

from dataclasses import replace

from prometheus_client.parser import text_string_to_metric_families

from supervisor_api.telephony_metrics import TelephonyCollector
from telephony.stats import RtpStats, SipStats, TelephonyStats
from tests.supervisor.supervisor_app import SUPERVISOR, bearer, build, client_for
from tests.supervisor.supervisor_timeline import Timeline

SNAPSHOT = TelephonyStats(
    sip=SipStats(
        requests_received={"INVITE": 12, "REGISTER": 30, "other": 2},
        responses_received={200: 5, 486: 1},
        requests_sent={"BYE": 4, "INVITE": 5},
        responses_sent={100: 12, 200: 20, 401: 9, 403: 2},
        malformed_dropped=1500,
        malformed_answered=3,
        transactions_client=2,
        transactions_server=7,
        transaction_timeouts=1,
        retransmissions_sent=6,
        overload_rejections=0,
        registrations=3,
        registered_users=2,
        auth_failures=5,
        sources_blocked=1,
        dropped_blocked=40,
        dropped_rate_limited=900,
        sources_blocked_now=1,
    ),
    rtp=RtpStats(
        packets_received=10_000,
        packets_sent=9_990,
        packets_dropped={"foreign_address": 250, "late": 4, "malformed": 1},
        packets_lost=7,
        send_errors=0,
        legs=4,
        ports_in_use=4,
        ports_capacity=200,
        port_bind_failures=3,
        ports_refused=2,
        ports_unavailable=1,
        comfort_noise_received=11,
    ),
)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(
    snapshots: list[TelephonyStats],
) -> list[dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    timeline = Timeline()
    pending = list(snapshots)
    current = [pending[0]]

    def snapshot() -> TelephonyStats:
        return current[0]

    harness = build(timeline.bus, lambda: timeline.now, collectors=[TelephonyCollector(snapshot)])
    scraped = []
    async for client in client_for(harness):
        for value in pending:
            current[0] = value
            response = await client.get("/metrics", headers=bearer(SUPERVISOR))
            assert response.status == 200
            scraped.append(samples(await response.text()))
    return scraped


async def test_sip_rtp_and_security_counters_are_exposed() -> None:
    (metrics,) = await scrape([SNAPSHOT])
    assert metrics[("cxos_sip_requests_received_total", (("method", "INVITE"),))] == 12
    assert metrics[("cxos_sip_requests_received_total", (("method", "other"),))] == 2
    assert metrics[("cxos_sip_responses_sent_total", (("status", "401"),))] == 9
    assert metrics[("cxos_sip_requests_sent_total", (("method", "BYE"),))] == 4
    assert metrics[("cxos_sip_malformed_messages_total", (("outcome", "dropped"),))] == 1500
    assert metrics[("cxos_sip_transactions", (("kind", "server"),))] == 7
    assert metrics[("cxos_sip_registrations", ())] == 3
    assert metrics[("cxos_sip_requests_dropped_total", (("reason", "rate_limited"),))] == 900
    assert metrics[("cxos_sip_requests_dropped_total", (("reason", "blocked"),))] == 40
    assert metrics[("cxos_sip_sources_blocked_now", ())] == 1
    assert metrics[("cxos_rtp_packets_dropped_total", (("reason", "foreign_address"),))] == 250
    assert metrics[("cxos_rtp_packets_lost_total", ())] == 7
    assert metrics[("cxos_rtp_ports_in_use", ())] == 4
    assert metrics[("cxos_media_legs", ())] == 4
    assert metrics[("cxos_rtp_port_bind_failures_total", ())] == 3
    assert metrics[("cxos_rtp_ports_refused_total", ())] == 2
    assert metrics[("cxos_rtp_ports_unavailable", ())] == 1
    assert metrics[("cxos_rtp_comfort_noise_received_total", ())] == 11


async def test_each_scrape_reads_a_fresh_snapshot() -> None:
    later = replace(SNAPSHOT, rtp=replace(SNAPSHOT.rtp, packets_received=12_345, legs=0))
    first, second = await scrape([SNAPSHOT, later])
    assert first[("cxos_rtp_packets_received_total", ())] == 10_000
    assert second[("cxos_rtp_packets_received_total", ())] == 12_345
    assert second[("cxos_media_legs", ())] == 0
