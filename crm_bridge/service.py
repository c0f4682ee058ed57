"""The CRM bridge component: webhook delivery workers, the CRM look-up, the Redis stream.

Started after storage (it needs the database pool and the bus) and stopped before it:

- ``start()``: write the configured endpoints into ``webhook_endpoints`` (from then on the
  database enqueues a delivery for each subscribed event it stores), take back the leases this
  node held when it last stopped, and start one ``DeliveryWorker`` per endpoint; open the look-up
  client; with a bus, start the Redis Stream publisher.
- ``stop(grace)``: let requests in flight finish within ``grace``; what is left stays in the
  outbox for the next start.
- ``reconfigure(configuration)``: adopt a new ``crm.yaml`` without a restart. Workers of
  unchanged endpoints keep running; changed ones are replaced; removed ones stop (their pending
  deliveries wait in the outbox).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Protocol

import aiohttp

from config.crm import CrmSettings, WebhookEndpoint
from crm_bridge.deadletters import replay, replay_all
from crm_bridge.delivery import DeliveryWorker, WorkerStats
from crm_bridge.lookup import CrmLookupClient, RoutingAttributes
from crm_bridge.outbox import Outbox
from crm_bridge.redis_streams import RedisStreamPublisher
from cxos.bus import EventBus
from cxos.storage.database import Pool

logger = logging.getLogger(__name__)

#: Seconds a worker replaced on reload may take to finish its requests in flight.
RECONFIGURE_GRACE = 5.0


class HasCrmSettings(Protocol):
    """The part of the server's configuration this component reads."""

    @property
    def crm(self) -> CrmSettings: ...


class CurrentLookup:
    """The CRM look-up of the configuration in force, for what is built once at start-up (the
    IVR's ``CustomerLookup``, the queue arrival's routing): after a reload that changes
    ``lookup`` the next call uses the new one. Without a look-up nobody is found."""

    def __init__(self, service: CrmBridgeService) -> None:
        self._service = service

    async def lookup(self, key: str, fields: tuple[str, ...]) -> Mapping[str, str] | None:
        client = self._service.lookup
        return None if client is None else await client.lookup(key, fields)

    async def routing_for(
        self, caller_id: str, variables: Mapping[str, str]
    ) -> RoutingAttributes | None:
        client = self._service.lookup
        return None if client is None else await client.routing_for(caller_id, variables)


class CrmBridgeService:
    """The component ``cxos.app`` starts after storage."""

    name = "crm"

    def __init__(
        self,
        settings: CrmSettings,
        *,
        node: str,
        pool: Pool | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self.settings = settings
        self._node = node
        self._pool = pool
        self._bus = bus
        self._session: aiohttp.ClientSession | None = None
        self._outbox: Outbox | None = None
        self._workers: dict[str, DeliveryWorker] = {}
        self._lookup: CrmLookupClient | None = None
        self._stream: RedisStreamPublisher | None = None
        self._reconfiguring: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def lookup(self) -> CrmLookupClient | None:
        """The CRM look-up (an IVR ``CustomerLookup``), or None when none is configured."""
        return self._lookup

    @property
    def customers(self) -> CurrentLookup:
        """The look-up to hand to components that outlive a reload."""
        return CurrentLookup(self)

    @property
    def workers(self) -> dict[str, DeliveryWorker]:
        return dict(self._workers)

    async def start(self) -> None:
        # For the look-up; each webhook worker keeps its own connections to its endpoint.
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        if self._pool is not None:
            self._outbox = Outbox(self._pool, owner=self._node)
            await self._outbox.release_own_leases()
        elif self.settings.webhooks:
            logger.error("webhooks are configured but there is no database: none will be sent")
        await self._apply(self.settings, first=True)

    def attach(self, bus: EventBus) -> None:
        """The bus to publish to Redis from (when it was not known at construction)."""
        self._bus = bus
        if self._stream is None and self.settings.redis_stream is not None:
            self._start_stream(self.settings)

    async def stop(self, grace: float) -> None:
        if self._reconfiguring is not None:
            await asyncio.wait((self._reconfiguring,))
        workers, self._workers = list(self._workers.values()), {}
        closing = [worker.stop(grace) for worker in workers]
        if self._stream is not None:
            closing.append(self._stream.close(grace))
        await asyncio.gather(*closing, return_exceptions=True)
        self._stream = None
        if self._lookup is not None:
            await self._lookup.close()
            self._lookup = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def reconfigure(self, configuration: HasCrmSettings) -> None:
        """Adopt ``configuration.crm`` (applied in the background, one reload at a time)."""
        settings = configuration.crm
        previous = self._reconfiguring

        async def apply() -> None:
            if previous is not None:
                await asyncio.wait((previous,))
            try:
                await self._apply(settings, first=False)
            except Exception:
                logger.exception("the CRM bridge could not adopt the new configuration")

        self._reconfiguring = asyncio.create_task(apply(), name="crm-reconfigure")

    async def wait_reconfigured(self) -> None:
        """Until the last ``reconfigure`` has been applied."""
        if self._reconfiguring is not None:
            await asyncio.wait((self._reconfiguring,))

    async def replay_dead_letter(self, delivery_id: int) -> None:
        """Send one dead letter again now (the API's replay action)."""
        endpoint = await replay(self._require_pool(), delivery_id)
        worker = self._workers.get(endpoint)
        if worker is not None:
            worker.wake()

    async def replay_dead_letters(self, endpoint: str | None = None) -> int:
        count = await replay_all(self._require_pool(), endpoint=endpoint)
        for name, worker in self._workers.items():
            if endpoint is None or name == endpoint:
                worker.wake()
        return count

    def stats(self) -> list[WorkerStats]:
        return [worker.stats() for worker in self._workers.values()]

    # Applying settings -------------------------------------------------------------------------

    def _require_pool(self) -> Pool:
        if self._pool is None:
            raise RuntimeError("the CRM bridge has no database")
        return self._pool

    async def _apply(self, settings: CrmSettings, *, first: bool) -> None:
        async with self._lock:
            previous, self.settings = self.settings, settings
            if self._outbox is not None:
                await self._outbox.sync_endpoints(settings.webhooks)
                await self._apply_workers(
                    settings.webhooks,
                    delivery_changed=not first and (previous.delivery != settings.delivery),
                )
            if first or previous.lookup != settings.lookup:
                old_lookup, self._lookup = self._lookup, None
                if settings.lookup is not None:
                    self._lookup = CrmLookupClient(settings.lookup, session=self._session)
                if old_lookup is not None:
                    await old_lookup.close()
            if first or previous.redis_stream != settings.redis_stream:
                if self._stream is not None:
                    old_stream, self._stream = self._stream, None
                    await old_stream.close(RECONFIGURE_GRACE)
                if settings.redis_stream is not None and self._bus is not None:
                    self._start_stream(settings)

    async def _apply_workers(
        self, endpoints: tuple[WebhookEndpoint, ...], *, delivery_changed: bool
    ) -> None:
        assert self._outbox is not None
        wanted = {endpoint.name: endpoint for endpoint in endpoints}
        retiring = [
            worker
            for name, worker in self._workers.items()
            if delivery_changed or wanted.get(name) != worker.endpoint
        ]
        for worker in retiring:
            del self._workers[worker.endpoint.name]
        await asyncio.gather(*(worker.stop(RECONFIGURE_GRACE) for worker in retiring))
        for name, endpoint in wanted.items():
            if name not in self._workers:
                worker = DeliveryWorker(endpoint, self._outbox, settings=self.settings.delivery)
                worker.start()
                self._workers[name] = worker
                logger.info("webhooks %r: delivering to %s", name, endpoint.url)

    def _start_stream(self, settings: CrmSettings) -> None:
        assert settings.redis_stream is not None and self._bus is not None
        stream = RedisStreamPublisher(settings.redis_stream, node=self._node)
        stream.attach(self._bus)
        self._stream = stream
        logger.info("publishing events to the Redis stream %r", settings.redis_stream.stream)
