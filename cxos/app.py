"""Composition root: builds the whole server from a validated Configuration and runs it.

Start-up order is bottom-up (storage, telephony, the call center with its IVR and ACD, then the
supervisor API that reads their events) and shutdown is the reverse, so nothing is ever handed
work by a layer that has already stopped: the call center ends its calls while telephony and
storage still run, so their last events are stored.
SIGTERM/SIGINT begin a graceful shutdown: stop taking calls, end calls in progress, flush, exit.
SIGHUP reloads the configuration; a configuration that fails validation is logged and the running
one stays in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar, cast

from config.loader import Configuration, load_configuration
from config.source import ConfigError, ConfigProblem
from cxos.bus import DomainEvent, EventBus
from cxos.storage.service import StorageService

logger = logging.getLogger(__name__)


class Component(Protocol):
    """A running part of the server, started and stopped by the application in order."""

    name: str

    async def start(self) -> None: ...

    async def stop(self, grace: float) -> None:
        """Stop taking new work, finish or end what is in progress within ``grace`` seconds."""

    def reconfigure(self, configuration: Configuration) -> None:
        """Adopt a new, already validated configuration."""


ComponentFactory = Callable[["Application"], Component]
#: Sees every domain event as it is published (synchronously, in publication order).
EventListener = Callable[[DomainEvent], None]
C = TypeVar("C")


@dataclass(slots=True)
class Application:
    configuration: Configuration
    #: Where the embedded database, spool and recordings live; None: ``storage.data_dir``.
    data_dir: Path | None = None
    components: list[Component] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    bus: EventBus = field(default_factory=lambda: EventBus(clock=time.time))
    listeners: list[EventListener] = field(default_factory=list)

    def publish(self, event: DomainEvent) -> None:
        """Every domain event of every layer passes here on its way to the event bus."""
        published = self.bus.publish(event)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("event #%d %s", published.seq, event)
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                # A listener's bug must not break the layer that reported the event.
                logger.exception("event listener failed on %s", event.TYPE)

    def component(self, kind: type[C]) -> C:
        """The started component of type ``kind`` (factories use it to wire what they need)."""
        for component in self.components:
            if isinstance(component, kind):
                return component
        raise LookupError(f"no {kind.__name__} has been started")

    async def start(self) -> None:
        # Storage first: the bus continues the node's event sequence where the database left
        # it, and calls a killed server left open are closed before new calls arrive.
        settings = self.configuration.server.storage
        if self.data_dir is not None:
            settings = settings.model_copy(update={"data_dir": str(self.data_dir)})
        storage = StorageService(
            settings, node=self.configuration.server.node, config_dir=self.configuration.directory
        )
        await storage.start()
        self.components.append(storage)
        logger.info("started %s (data in %s)", storage.name, storage.data_dir)
        self.bus = EventBus(clock=time.time, first_seq=storage.next_seq)
        storage.attach(self.bus)
        for factory in _component_factories():
            component = factory(self)
            await component.start()
            self.components.append(component)
            logger.info("started %s", component.name)
        logger.info("CXOS node %s ready", self.configuration.server.node)

    async def stop(self) -> None:
        grace = self.configuration.server.shutdown_grace
        for component in reversed(self.components):
            try:
                await component.stop(grace)
            except Exception:
                logger.exception("error while stopping %s", component.name)
            else:
                logger.info("stopped %s", component.name)
        self.components.clear()
        self.listeners.clear()
        self.bus.close()

    def reload(self) -> bool:
        """Validate the configuration directory again and swap it in; keep the old one on error."""
        return not self.reload_configuration()

    def reload_configuration(self) -> list[ConfigProblem]:
        """Like `reload`; returns the problems that kept the running configuration in force."""
        try:
            configuration = load_configuration(self.configuration.directory)
        except ConfigError as exc:
            for problem in exc.problems:
                logger.error("reload refused: %s", problem)
            return list(exc.problems)
        self.configuration = configuration
        for component in self.components:
            component.reconfigure(configuration)
        logger.info("configuration reloaded from %s", configuration.directory)
        return []


def _component_factories() -> list[ComponentFactory]:
    """Telephony, then the call center (IVR, ACD) on its calls, then the supervisor API."""
    from crm_bridge.service import CrmBridgeService
    from cxos.actions import ApplicationAdministration, CallCenterActions
    from cxos.callcenter import CallCenter, build_call_center
    from cxos.speech_component import SpeechComponent
    from supervisor_api.service import SupervisorService
    from supervisor_api.telephony_metrics import TelephonyCollector
    from telephony.service import TelephonyService

    def publish(app: Application) -> Callable[[object], None]:
        # Lower layers type their sink loosely (they cannot import the bus); every event they
        # emit follows the event convention, which the bus checks on publish.
        return lambda event: app.publish(cast(DomainEvent, event))

    def crm(app: Application) -> Component:
        database = app.component(StorageService).database
        return CrmBridgeService(
            app.configuration.crm,
            node=app.configuration.server.node,
            pool=database.pool,
            bus=app.bus,
        )

    def speech(app: Application) -> Component:
        return SpeechComponent(app.configuration.server.speech, publish=publish(app))

    def telephony(app: Application) -> Component:
        return TelephonyService(app.configuration, publish=publish(app))

    def call_center(app: Application) -> Component:
        center = build_call_center(
            app.configuration,
            app.component(TelephonyService),
            publish=publish(app),
            data_dir=app.component(StorageService).data_dir,
            speech=app.component(SpeechComponent).input,
            crm=app.component(CrmBridgeService).customers,
            crm_routing=app.component(CrmBridgeService).customers.routing_for,
        )
        app.listeners.append(center.observe)
        return center

    def supervisor(app: Application) -> Component:
        center = app.component(CallCenter)
        return SupervisorService(
            app.configuration,
            app.bus,
            CallCenterActions(center, recordings=center.recordings),
            administration=ApplicationAdministration(app, app.configuration.directory),
            # SIP, RTP and security counters, read from telephony at each scrape.
            extra_collectors=[TelephonyCollector(app.component(TelephonyService).stats)],
            history=app.component(StorageService).database.pool,
        )

    return [crm, speech, telephony, call_center, supervisor]


#: Garbage collector thresholds of a running server. The young generations keep the
#: interpreter's (a collection of the youngest every 700 net container allocations, of the middle
#: one every 10 of those: pauses of a few milliseconds); a full collection waits for 1,000 middle
#: ones instead of 10 (and, as always, for the objects promoted since the last full collection
#: to exceed a quarter of the old generation): some minutes apart at hundreds of calls a second.
GC_THRESHOLDS = (700, 10, 1000)


def tune_garbage_collector() -> None:
    """Make full garbage collections rare and short in a started server.

    Nearly everything a call allocates is freed by reference counting when the call ends (no
    per-call reference cycles: tests/integration/test_call_garbage.py), so the collector finds
    next to nothing; yet with the interpreter's thresholds a full collection runs every few
    seconds at a few hundred calls a second and walks the whole heap (calls in progress, the
    transactions kept 32 s after their final response, and everything start-up built): a pause
    of the event loop of 200-350 ms that every call in progress feels (docs/benchmarks.md,
    "SIP call setup rate"). Here, once started: collect what start-up left, move every object
    that exists then into the permanent generation (`gc.freeze`: modules, configuration,
    caches, the components; they live as long as the process and no collection walks them
    again), and make full collections a hundred times rarer with `GC_THRESHOLDS`: what a full
    collection walks then is mostly bounded buffers that live as long as the process (the event
    bus's replay ring, the supervisor's journal) and finds nothing in them. Cyclic garbage made
    later (a failed task's exception with its traceback, say) is still collected, only later; a
    configuration replaced by a reload is freed by reference counting like any other object,
    but a cycle within it would stay in the permanent generation.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    logger.debug(
        "garbage collector: %d objects frozen, thresholds %s", gc.get_freeze_count(), GC_THRESHOLDS
    )


async def serve(configuration: Configuration, data_dir: Path | None = None) -> None:
    """Run until SIGTERM/SIGINT; SIGHUP reloads the configuration."""
    app = Application(configuration, data_dir)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, app.stopping.set)
    loop.add_signal_handler(signal.SIGINT, app.stopping.set)
    loop.add_signal_handler(signal.SIGHUP, app.reload)
    try:
        await app.start()
        if configuration.server.tune_gc:
            tune_garbage_collector()
        await app.stopping.wait()
        logger.info("shutting down: no new calls, ending calls in progress")
    finally:
        await app.stop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)


def run_server(configuration: Configuration, data_dir: Path | None = None) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a Linux/macOS dependency
        runner: Callable[..., None] = asyncio.run
    else:
        runner = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve(configuration, data_dir))
    logger.info("CXOS stopped")
    return 0
