"""Prometheus metrics of the node, exposed at ``/metrics`` in the text exposition format.

Counters and histograms are fed from the event stream by the projection consumer (one place
sees every event); gauges are read from the live projection at scrape time, so they are never
stale. Each API instance has its own registry: nothing is registered globally.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cxos.bus import EventBus
from supervisor_api.kpi import EventRecord
from supervisor_api.projection import LiveProjection

#: Bucket bounds (seconds) for queue waits: around common service-level thresholds.
WAIT_BUCKETS = (5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, float("inf"))


class _LiveCollector(Collector):
    """Gauges computed from the projection and the bus when Prometheus scrapes."""

    def __init__(
        self,
        projection: Callable[[], LiveProjection],
        bus: EventBus,
        clock: Callable[[], float],
        websocket_clients: Callable[[], int],
    ) -> None:
        self._projection = projection
        self._bus = bus
        self._clock = clock
        self._websocket_clients = websocket_clients

    def collect(self) -> Iterator[Metric]:
        projection = self._projection()
        now = self._clock()
        active = GaugeMetricFamily("cxos_calls_active", "Calls in progress")
        active.add_metric([], len(projection.calls))
        yield active
        waiting = GaugeMetricFamily("cxos_queue_waiting", "Callers waiting", labels=["queue"])
        longest = GaugeMetricFamily(
            "cxos_queue_longest_wait_seconds", "Longest current wait", labels=["queue"]
        )
        for queue_id, queue in sorted(projection.queues.items()):
            waiting.add_metric([queue_id], len(queue.waiting))
            longest.add_metric([queue_id], queue.longest_wait(now))
        yield waiting
        yield longest
        agents = GaugeMetricFamily("cxos_agents", "Agents by state", labels=["state"])
        counts: dict[str, int] = {}
        for agent in projection.agents.values():
            counts[agent.state] = counts.get(agent.state, 0) + 1
        for state, count in sorted(counts.items()):
            agents.add_metric([state], count)
        yield agents
        clients = GaugeMetricFamily("cxos_websocket_clients", "Event stream clients connected")
        clients.add_metric([], self._websocket_clients())
        yield clients
        seq = GaugeMetricFamily("cxos_bus_next_seq", "Sequence number of the next event")
        seq.add_metric([], self._bus.next_seq)
        yield seq
        dropped = GaugeMetricFamily(
            "cxos_bus_dropped_events", "Events dropped by current bus subscribers"
        )
        dropped.add_metric([], sum(s.dropped for s in self._bus.stats()))
        yield dropped
        malformed = GaugeMetricFamily(
            "cxos_projection_malformed_events", "Known events missing a needed field"
        )
        malformed.add_metric([], projection.malformed)
        yield malformed
        # Scrapes run on the event loop (the API's handler); a task count that keeps growing
        # under steady load is a leak (benchmarks/soak.py watches it).
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:  # collected off the loop: nothing to count
            return
        gauge = GaugeMetricFamily("cxos_asyncio_tasks", "Tasks on the server's event loop")
        gauge.add_metric([], tasks)
        yield gauge


class ApiMetrics:
    """The registry and the metrics fed from events."""

    def __init__(
        self,
        *,
        projection: Callable[[], LiveProjection],
        bus: EventBus,
        clock: Callable[[], float],
        websocket_clients: Callable[[], int],
        extra_collectors: Iterable[Collector] = (),
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.events = Counter("cxos_events", "Domain events published", ["type"], registry=registry)
        # Each event type's child, looked up once: `labels` validates and locks on every call.
        self._event_counters: dict[str, Counter] = {}
        self.calls_started = Counter(
            "cxos_calls_started", "Calls accepted from trunks", registry=registry
        )
        self.calls_ended = Counter("cxos_calls_ended", "Calls ended", ["cause"], registry=registry)
        self.calls_rejected = Counter(
            "cxos_calls_rejected", "INVITEs refused", ["status"], registry=registry
        )
        self.queue_wait = Histogram(
            "cxos_queue_wait_seconds",
            "Time callers waited in a queue, by how they left it",
            ["queue", "outcome"],
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.offers_unanswered = Counter(
            "cxos_agent_offers_unanswered", "Offers an agent did not answer", registry=registry
        )
        self.websocket_disconnects = Counter(
            "cxos_websocket_disconnects",
            "Event stream clients closed",
            ["reason"],
            registry=registry,
        )
        self.http_errors = Counter(
            "cxos_api_errors", "API answers with a 4xx/5xx status", ["status"], registry=registry
        )
        registry.register(_LiveCollector(projection, bus, clock, websocket_clients))
        for collector in extra_collectors:
            registry.register(collector)

    def observe(self, record: EventRecord) -> None:
        """Count one event (called for every event, in order)."""
        kind = record.type
        data = record.data
        counter = self._event_counters.get(kind)
        if counter is None:
            counter = self._event_counters[kind] = self.events.labels(kind)
        counter.inc()
        if kind == "call.started":
            self.calls_started.inc()
        elif kind == "call.ended":
            self.calls_ended.labels(str(data.get("cause", "unknown"))).inc()
        elif kind == "call.rejected":
            self.calls_rejected.labels(str(data.get("status", "unknown"))).inc()
        elif kind == "queue.left":
            wait = data.get("wait_seconds")
            if isinstance(wait, int | float):
                self.queue_wait.labels(str(data.get("queue_id")), str(data.get("reason"))).observe(
                    wait
                )
        elif kind == "agent.no_answer":
            self.offers_unanswered.inc()
