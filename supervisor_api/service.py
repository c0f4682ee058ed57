"""The supervisor API as a server component: started, stopped and reconfigured by the app.

Listens on ``server.api`` host/port of the configuration; reads its own settings (tokens,
targets, wallboard thresholds) from ``api.yaml`` in the configuration directory. On reload a
valid ``api.yaml`` is swapped in at once; an invalid one is logged and the running settings stay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client.registry import Collector

from config.api import ApiAccessSettings, load_api_settings
from config.loader import Configuration
from config.source import ConfigError
from cxos.bus import EventBus
from cxos.storage.database import Pool
from supervisor_api.actions import Administration, SupervisorActions
from supervisor_api.app import create_app
from supervisor_api.state import STATE, ApiDependencies

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class SupervisorService:
    """REST, event stream, metrics and wallboard of one node."""

    configuration: Configuration
    bus: EventBus
    actions: SupervisorActions
    administration: Administration | None = None
    #: Settings to use instead of reading ``api.yaml`` (tests, embedding).
    api_settings: ApiAccessSettings | None = None
    clock: Callable[[], float] = time.time
    extra_collectors: Sequence[Collector] = ()
    #: The database with the event log and CDRs, for the history endpoints.
    history: Pool | None = None
    name: str = "supervisor-api"
    app: web.Application | None = field(default=None, init=False)
    _runner: web.AppRunner | None = field(default=None, init=False)

    async def start(self) -> None:
        """Raises ``ConfigError`` if ``api.yaml`` is invalid, ``OSError`` if the port is taken."""
        settings = self.api_settings or load_api_settings(self.configuration.directory)
        if not settings.tokens:
            logger.warning("api.yaml defines no tokens: every API request will be refused")
        self.app = create_app(
            ApiDependencies(
                bus=self.bus,
                node=self.configuration.server.node,
                settings=settings,
                actions=self.actions,
                administration=self.administration,
                queues=sorted(self.configuration.queues),
                agents=[agent.id for agent in self.configuration.agents],
                phones=_phones(self.configuration),
                clock=self.clock,
                extra_collectors=self.extra_collectors,
                history=self.history,
            )
        )
        listen = self.configuration.server.api
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            shutdown_timeout=self.configuration.server.shutdown_grace,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, listen.host, listen.port)
        await site.start()
        logger.info("supervisor API listening on %s", ", ".join(self.urls))

    @property
    def urls(self) -> list[str]:
        if self._runner is None:
            return []
        urls = []
        for address in self._runner.addresses:
            host, port = address[0], address[1]
            urls.append(f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}")
        return urls

    async def stop(self, grace: float) -> None:
        """Close event streams ("going away"), finish requests in progress within ``grace``."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self.app is not None:
            try:
                await asyncio.wait_for(self.app[STATE].hub.close_all(), grace)
            except TimeoutError:
                logger.warning("event stream clients did not close within %.1fs", grace)
        await runner.cleanup()

    def reconfigure(self, configuration: Configuration) -> None:
        previous = self.configuration.server.api
        self.configuration = configuration
        if configuration.server.api != previous:
            logger.warning("server.api changed: the API keeps its address until a restart")
        if self.app is None:
            return
        self.app[STATE].adopt_agents([a.id for a in configuration.agents], _phones(configuration))
        if self.api_settings is not None:
            return
        try:
            settings = load_api_settings(configuration.directory)
        except ConfigError as exc:
            for problem in exc.problems:
                logger.error("api.yaml not reloaded: %s", problem)
            return
        self.app[STATE].reconfigure(settings)
        logger.info("api.yaml reloaded")


def _phones(configuration: Configuration) -> dict[str, str]:
    """Each agent's SIP user -> agent id (a supervisor's phone is an agent entry's)."""
    return {agent.sip_user: agent.id for agent in configuration.agents}
