"""What the API application holds while it runs, and what it is built from."""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from aiohttp import web
from prometheus_client.registry import Collector

from config.api import ApiAccessSettings
from cxos.bus import EventBus, OverflowPolicy, Published, ReplayUnavailableError, Subscription
from cxos.envelope import EnvelopeError
from cxos.storage.database import Pool
from supervisor_api.actions import Administration, SupervisorActions
from supervisor_api.auth import TokenTable
from supervisor_api.metrics import ApiMetrics
from supervisor_api.projection import LiveProjection, record_of
from supervisor_api.websocket import StreamHub

logger = logging.getLogger(__name__)

#: The projection's own bus queue: large, and dropping the oldest if the loop ever falls far
#: behind (counted in the bus stats) rather than holding up publishers.
PROJECTION_BUFFER = 100_000


@dataclass(slots=True, kw_only=True)
class ApiDependencies:
    """Everything the API needs from the rest of the server."""

    bus: EventBus
    node: str
    settings: ApiAccessSettings
    actions: SupervisorActions
    administration: Administration | None = None
    #: Queue and agent ids from the configuration, shown even before any event mentions them.
    queues: Iterable[str] = ()
    agents: Iterable[str] = ()
    #: Agents' phones: SIP user -> agent id, to name the supervisor whose phone monitors a call.
    phones: Mapping[str, str] = field(default_factory=dict)
    #: Wall clock (seconds since the epoch), the same clock the bus stamps events with.
    clock: Callable[[], float] = time.time
    #: More Prometheus collectors to expose (e.g. SIP and RTP counters of telephony).
    extra_collectors: Sequence[Collector] = ()
    #: The database holding the event log and CDRs, for ``/api/history/*``; None: no history.
    history: Pool | None = None


@dataclass(slots=True)
class ApiState:
    deps: ApiDependencies
    settings: ApiAccessSettings = field(init=False)
    tokens: TokenTable = field(init=False)
    projection: LiveProjection = field(init=False)
    metrics: ApiMetrics = field(init=False)
    hub: StreamHub = field(init=False)
    #: The agents of the configuration: KPIs list each of them, with zeros if idle.
    configured_agents: tuple[str, ...] = field(init=False)
    subscription: Subscription | None = None

    def __post_init__(self) -> None:
        deps = self.deps
        self.settings = deps.settings
        self.tokens = TokenTable(deps.settings.tokens)
        self.configured_agents = tuple(deps.agents)
        self.projection = LiveProjection(
            queues=list(deps.queues) + list(deps.settings.queues),
            agents=self.configured_agents,
            journal_size=deps.settings.kpi_journal_events,
            exits_per_queue=deps.settings.kpi_queue_exits,
        )
        self.hub = StreamHub(
            bus=deps.bus,
            node=deps.node,
            settings=lambda: self.settings.stream,
            clock=deps.clock,
            on_disconnect=lambda reason: self.metrics.websocket_disconnects.labels(reason).inc(),
        )
        self.metrics = ApiMetrics(
            projection=lambda: self.projection,
            bus=deps.bus,
            clock=deps.clock,
            websocket_clients=lambda: len(self.hub.sockets),
            extra_collectors=deps.extra_collectors,
        )

    def reconfigure(self, settings: ApiAccessSettings) -> None:
        """Adopt new tokens, targets and thresholds (already validated)."""
        self.settings = settings
        self.tokens = TokenTable(settings.tokens)
        for queue_id in settings.queues:
            self.projection.queue(queue_id)

    def adopt_agents(self, agents: Iterable[str], phones: Mapping[str, str]) -> None:
        """Adopt the agents and phones of a reloaded configuration."""
        self.configured_agents = tuple(agents)
        self.deps.phones = phones
        for agent_id in self.configured_agents:
            self.projection.agent(agent_id)

    @property
    def ready(self) -> bool:
        return self.subscription is not None and not self.subscription.closed

    def now(self) -> float:
        return self.deps.clock()

    def day_start(self, now: float) -> float:
        """Midnight of ``now``'s day in the configured time zone."""
        zone = ZoneInfo(self.settings.timezone)
        local = datetime.datetime.fromtimestamp(now, zone)
        return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()

    def subscribe(self) -> Subscription:
        """Join the bus, replaying what its ring still holds so the picture starts complete."""
        bus = self.deps.bus
        try:
            resume = 1 if bus.next_seq > 1 else None
            self.subscription = bus.subscribe(
                "supervisor-projection",
                maxsize=PROJECTION_BUFFER,
                overflow_policy=OverflowPolicy.DROP_OLDEST,
                resume_from=resume,
            )
        except ReplayUnavailableError as exc:
            self.subscription = bus.subscribe(
                "supervisor-projection",
                maxsize=PROJECTION_BUFFER,
                overflow_policy=OverflowPolicy.DROP_OLDEST,
                resume_from=exc.oldest,  # None when the ring keeps nothing
            )
        return self.subscription

    def catch_up(self) -> None:
        """Fold every event published so far, so a snapshot includes all of them."""
        subscription = self.subscription
        if subscription is None:
            return
        while (published := subscription.get_nowait()) is not None:
            self._fold(published)

    def _fold(self, published: Published) -> None:
        try:
            record = record_of(published)
        except EnvelopeError:
            logger.exception("event seq %d cannot be rendered; not projected", published.seq)
            return
        self.projection.apply(record)
        self.metrics.observe(record)

    async def run_projection(self) -> None:
        # Not ``or``: a Subscription with an empty queue is falsy (it has a length).
        subscription = self.subscribe() if self.subscription is None else self.subscription
        async for published in subscription:
            self._fold(published)
            self.catch_up()


STATE = web.AppKey("supervisor_state", ApiState)
