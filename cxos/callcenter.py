"""The call center: every call telephony answers runs through dial plan, IVR, queue and agent.

`CallCenter` is the component that owns the call flow. It becomes telephony's call handler on
start: each answered call gets a :class:`~cxos.call_flow.CallFlow` built on the configuration in
force when the call arrived. It runs the ACD service (:class:`acd.service.AcdService`, on the
in-process store, or on Redis when ``storage.redis_url`` is set) with the telephony port of
:mod:`cxos.telephony_port`, and is that port's `CallerSide`: announcements, exits from a queue
and bridges reach the waiting caller's flow through it.

Telephony events it needs are handed to :meth:`CallCenter.observe` as they are published:
``call.started`` carries the dialled number and the caller's number of a call not yet answered,
``call.ringing`` tells the ACD that an agent's phone rings.

Agents start logged out, as in app_queue (dynamic members) and mod_callcenter: a registered phone
is not an agent at work. Agents log in, pause and log out through the API
(``POST /api/agents/{id}/login``...). Feature codes (``*45``...) need telephony to accept calls
from registered phones, which it does not yet (it accepts INVITEs from trunks only).

Reload: new calls take the new dial plan, IVR trees, prompts and queue announcements at once;
the ACD keeps the queues and agents it started with until a restart (its engine is built once),
which is logged when ``queues.yaml`` or the agents changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

from acd.actions import RouteReason
from acd.config_adapter import build_engine, feature_code_map, service_settings
from acd.service import AcdService
from acd.store import AcdStore, InProcessAcdStore
from config.loader import Configuration
from cxos.call_flow import CallFlow, FlowServices
from cxos.telephony_port import CallTelephonyPort
from ivr.ports import CustomerLookup, PromptRenderer, SpeechRecognizer
from ivr.prompts import SpokenPrompts
from ivr.runner import RunnerSettings
from speech.tts import PromptRenderer as TextToSpeech
from speech.tts import TtsError
from telephony.calls import AgentLeg, Call
from telephony.events import CallEnded, CallRinging, CallStarted
from telephony.media.calls import MediaCall
from telephony.service import TelephonyService

__all__ = ["CallCenter", "build_call_center"]

logger = logging.getLogger(__name__)

#: Calls announced by ``call.started`` and not yet answered that are remembered (a flood of
#: INVITEs that are never answered must not grow memory without bound).
MAX_STARTING_CALLS = 10_000


class _Unspoken:
    """The renderer when text-to-speech is not installed: every text prompt fails (and is
    skipped by the IVR and the announcements, which go on without it)."""

    def __init__(self, reason: str) -> None:
        self._reason = reason

    async def render(self, text: str, *, language: str) -> Path:
        raise TtsError(self._reason)


def prompt_renderer(cache_dir: Path) -> PromptRenderer:
    """Text-to-speech (espeak-ng) caching its WAV files in ``cache_dir``."""
    try:
        return SpokenPrompts(TextToSpeech(cache_dir))
    except TtsError as exc:
        logger.warning("text prompts will be silent: %s", exc)
        return _Unspoken(str(exc))


class CallCenter:
    """Telephony's call handler, the ACD service and the flows of the calls in progress."""

    name = "call-center"

    def __init__(
        self,
        configuration: Configuration,
        telephony: TelephonyService,
        *,
        store: AcdStore,
        publish: Callable[[object], None],
        data_dir: Path,
        renderer: PromptRenderer,
        speech: SpeechRecognizer | None = None,
        crm: CustomerLookup | None = None,
        wall_clock: Callable[[], datetime] | None = None,
        close_store: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.configuration = configuration
        self.telephony = telephony
        self.data_dir = data_dir
        self.port = CallTelephonyPort(self)
        queue_file = configuration.queue_file
        self.acd = AcdService(
            build_engine(queue_file, configuration.agents),
            store,
            self.port,
            publish,
            node_id=configuration.server.node,
            feature_codes=feature_code_map(queue_file, configuration.agents),
            settings=service_settings(queue_file),
        )
        self.port.acd = self.acd
        self.services = FlowServices(
            acd=self.acd,
            renderer=renderer,
            publish=publish,
            ivr_settings=RunnerSettings(voicemail_dir=data_dir / "voicemail"),
            speech=speech,
            crm=crm,
            wall_clock=wall_clock,
        )
        self._close_store = close_store
        self._starting: OrderedDict[str, CallStarted] = OrderedDict()
        self._flows: dict[str, CallFlow] = {}
        self._idle = asyncio.Event()

    # ------------------------------------------------------------------ Component

    async def start(self) -> None:
        await self.acd.start()
        self.telephony.call_handler = self.handle_call

    async def stop(self, grace: float) -> None:
        """No new calls reach the flow; callers on the line are hung up and their flows given
        ``grace`` seconds to end, so the ACD hears of each before it stops."""
        if self.telephony.call_handler == self.handle_call:
            self.telephony.call_handler = None
        for flow in list(self._flows.values()):
            flow.call.hangup()
        if self._flows:
            self._idle.clear()
            try:
                await asyncio.wait_for(self._idle.wait(), grace)
            except TimeoutError:
                logger.warning("%d call(s) still in progress at shutdown", len(self._flows))
        self.port.close()
        await self.acd.stop()
        if self._close_store is not None:
            await self._close_store()

    def reconfigure(self, configuration: Configuration) -> None:
        previous, self.configuration = self.configuration, configuration
        agents_changed = configuration.agents != previous.agents
        if agents_changed or configuration.queue_file.queues != previous.queue_file.queues:
            logger.warning(
                "queues or agents changed: new calls follow the new dial plan and IVR trees at "
                "once, the ACD keeps its queues and agents until the server restarts"
            )
        if not agents_changed:
            self.acd.feature_codes = feature_code_map(
                configuration.queue_file, configuration.agents
            )

    # ------------------------------------------------------------------ telephony

    async def handle_call(self, media: MediaCall) -> None:
        """Telephony's call handler: runs one answered call until it ends."""
        call = self.telephony.call(media.call_id)
        if call is None:
            logger.error("call %s: answered without a call API object", media.call_id)
            media.hangup()
            return
        started = self._starting.pop(call.call_id, None)
        flow = CallFlow(
            call,
            configuration=self.configuration,
            services=self.services,
            did=started.did if started is not None else "",
            caller_id=started.caller_id if started is not None else call.caller_id,
        )
        self._flows[call.call_id] = flow
        try:
            await flow.run()
        finally:
            self._flows.pop(call.call_id, None)
            if not self._flows:
                self._idle.set()

    def observe(self, event: object) -> None:
        """Every event published on the node, as it is published."""
        if isinstance(event, CallStarted):
            self._starting[event.call_id] = event
            while len(self._starting) > MAX_STARTING_CALLS:
                self._starting.popitem(last=False)
        elif isinstance(event, CallEnded):
            self._starting.pop(event.call_id, None)
        elif isinstance(event, CallRinging):
            self.port.on_ringing(event.call_id, event.sip_user)

    # ------------------------------------------------------------------ queries

    def flow(self, call_id: str) -> CallFlow | None:
        return self._flows.get(call_id)

    def call(self, call_id: str) -> Call | None:
        """A caller's call in progress on this node."""
        return self.telephony.call(call_id)

    @property
    def calls_in_progress(self) -> int:
        return len(self._flows)

    # ------------------------------------------------------------------ CallerSide

    def waiting_call(self, call_id: str) -> Call | None:
        flow = self._flows.get(call_id)
        return flow.call if flow is not None and flow.waiting else None

    def connect(self, call_id: str, agent: AgentLeg) -> bool:
        flow = self._flows.get(call_id)
        return flow is not None and flow.connect(agent)

    def agent_lost(self, call_id: str) -> None:
        flow = self._flows.get(call_id)
        if flow is not None:
            flow.agent_lost()

    def announce(
        self, call_id: str, queue_id: str, position: int | None, ewt_seconds: float | None
    ) -> None:
        flow = self._flows.get(call_id)
        if flow is not None:
            flow.announce(queue_id, position, ewt_seconds)

    def route(
        self, call_id: str, queue_id: str, destination: str | None, reason: RouteReason
    ) -> None:
        flow = self._flows.get(call_id)
        if flow is None:
            # Not a caller of this node: it is gone; the ACD hears of it from its hang-up.
            logger.info("call %s: routed out of %s but no longer here", call_id, queue_id)
            return
        flow.route(queue_id, destination, reason)

    def offer_callback(self, call_id: str, queue_id: str) -> None:
        logger.info(
            "call %s: callback not offered in queue %s: calling customers back needs calls out "
            "through a trunk, which the call API cannot place yet",
            call_id,
            queue_id,
        )


def build_call_center(
    configuration: Configuration,
    telephony: TelephonyService,
    *,
    publish: Callable[[object], None],
    data_dir: Path,
    speech: SpeechRecognizer | None = None,
    crm: CustomerLookup | None = None,
) -> CallCenter:
    """The call center of a configuration: the ACD's state in process, or in Redis when
    ``storage.redis_url`` is set (several nodes share queues and agents)."""
    store: AcdStore
    close_store: Callable[[], Awaitable[None]] | None = None
    redis_url = configuration.server.storage.redis_url
    if redis_url:
        from acd.redis_store import RedisAcdStore

        redis_store = RedisAcdStore.from_url(redis_url)
        store, close_store = redis_store, redis_store.close
    else:
        store = InProcessAcdStore()
    return CallCenter(
        configuration,
        telephony,
        store=store,
        publish=publish,
        data_dir=data_dir,
        renderer=prompt_renderer(data_dir / "tts"),
        speech=speech,
        crm=crm,
        close_store=close_store,
    )
