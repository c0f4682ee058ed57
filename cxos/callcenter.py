"""The call center: every call telephony answers runs through dial plan, IVR, queue and agent.

`CallCenter` is the component that owns the call flow. It becomes telephony's call handler on
start: each answered call gets a :class:`~cxos.call_flow.CallFlow` built on the configuration in
force when the call arrived. It runs the ACD service (:class:`acd.service.AcdService`, on the
in-process store, or on Redis when ``storage.redis_url`` is set) with the telephony port of
:mod:`cxos.telephony_port`, and is that port's `CallerSide`: announcements, exits from a queue
and bridges reach the waiting caller's flow through it.

Telephony events it needs are handed to :meth:`CallCenter.observe` as they are published:
``call.started`` carries the dialled number and the caller's number of a call not yet answered,
``call.ringing`` tells the ACD that an agent's phone rings, ``call.transferred`` that an agent's
phone moved its caller to another agent (the ACD then puts that agent on the call).

Callbacks: a caller who asks to be called back (the IVR's ``callback`` node, or ``1`` when a
queue offers it) keeps their place in the queue; the ACD rings an agent when that place comes
up, then the customer is called out through the trunk (`TelephonyService.call_out`) and
connected to the agent (see :mod:`cxos.telephony_port`).

Agents start logged out, as in app_queue (dynamic members) and mod_callcenter: a registered phone
is not an agent at work, unless the agent has ``login_on_register`` (then the registrar's
``registration.*`` events log them in, and out with ``logout_on_unregister``: acd.presence).
Agents log in, pause and log out through the API (``POST /api/agents/{id}/login``...).
Agents' softphones also place calls (``call.agent_started``): feature codes (``*45``...),
other agents' extensions and numbers out through a trunk, run by :mod:`cxos.agent_calls`.

Reload: new calls take the new dial plan, IVR trees, prompts and queue announcements at once;
the ACD adopts added, changed and removed queues and agents without dropping a waiting caller
(:mod:`acd.reconfigure` says what changes when).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

from acd.actions import RouteReason
from acd.config_adapter import (
    agent_profiles,
    build_engine,
    engine_settings,
    feature_code_map,
    queue_configs,
    service_settings,
)
from acd.events import CallbackCompleted, CallbackFailed
from acd.service import AcdService
from acd.store import AcdStore, InProcessAcdStore
from config.loader import Configuration
from config.settings import Agent
from cxos.agent_calls import AgentCallFlow, rings_a_colleague
from cxos.call_flow import CallFlow, CrmRouting, FlowServices, QueueStep
from cxos.recordings import CallRecordings
from cxos.telephony_port import CallTelephonyPort
from ivr.ports import CustomerLookup, PromptRenderer, SpeechRecognizer
from ivr.prompts import SpokenPrompts
from ivr.runner import RunnerSettings
from speech.tts import PromptRenderer as TextToSpeech
from speech.tts import TtsError
from telephony.calls import AgentLeg, Call, CallOutFailure, RingFailure
from telephony.events import (
    AgentCallStarted,
    AgentLegAnswered,
    AgentLegEnded,
    CallEnded,
    CallRinging,
    CallStarted,
    CallTransferred,
)
from telephony.media.calls import MediaCall
from telephony.service import TelephonyService
from telephony.sip.core_types import IncomingCall
from telephony.sip.registrar_events import (
    RegistrationAdded,
    RegistrationExpired,
    RegistrationRefreshed,
    RegistrationRemoved,
)

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
        crm_routing: CrmRouting | None = None,
        wall_clock: Callable[[], datetime] | None = None,
        close_store: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.configuration = configuration
        self.telephony = telephony
        self.data_dir = data_dir
        self.recordings = CallRecordings(data_dir / "recordings")
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
            register_callback=self.register_callback,
            acd=self.acd,
            renderer=renderer,
            publish=publish,
            ivr_settings=RunnerSettings(voicemail_dir=data_dir / "voicemail"),
            speech=speech,
            crm=crm,
            crm_routing=crm_routing,
            wall_clock=wall_clock,
            recordings=self.recordings,
        )
        self._close_store = close_store
        self._starting: OrderedDict[str, CallStarted | AgentCallStarted] = OrderedDict()
        #: Calls placed from agents' softphones in progress.
        self._agent_calls: dict[str, AgentCallFlow] = {}
        self._flows: dict[str, CallFlow] = {}
        #: Ring seconds of the agent legs in progress, for the agent a transfer reaches.
        self._ring_seconds: dict[str, float] = {}
        self._idle = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ Component

    async def start(self) -> None:
        await self.acd.start()
        self.telephony.call_handler = self.handle_call
        self.telephony.ring_first = self.rings_first

    def rings_first(self, call: IncomingCall) -> bool:
        """A call from an agent's softphone to a colleague rings until the colleague answers."""
        if call.agent is None:
            return False
        codes = self.acd.feature_codes
        return rings_a_colleague(self.configuration, codes, call.agent, call.did)

    async def stop(self, grace: float) -> None:
        """No new calls reach the flow; callers on the line are hung up and their flows given
        ``grace`` seconds to end, so the ACD hears of each before it stops."""
        if self.telephony.call_handler == self.handle_call:
            self.telephony.call_handler = None
            self.telephony.ring_first = None
        calls = [f.call for f in self._flows.values()]
        for call in calls + [f.call for f in self._agent_calls.values()]:
            call.hangup()
        if self._flows or self._agent_calls:
            self._idle.clear()
            try:
                await asyncio.wait_for(self._idle.wait(), grace)
            except TimeoutError:
                logger.warning("%d call(s) still in progress at shutdown", len(self._flows))
        for task in list(self._tasks):
            task.cancel()
        self.port.close()
        await self.acd.stop()
        if self._close_store is not None:
            await self._close_store()

    def reconfigure(self, configuration: Configuration) -> None:
        previous, self.configuration = self.configuration, configuration
        queue_file = configuration.queue_file
        if (
            configuration.agents != previous.agents
            or queue_file.queues != previous.queue_file.queues
            or queue_file.acd != previous.queue_file.acd
        ):
            # Applied by the ACD's worker after the inputs already queued (acd.reconfigure).
            self.acd.reconfigure(
                queue_configs(queue_file),
                agent_profiles(configuration.agents),
                engine_settings(queue_file),
            )
        self.acd.feature_codes = feature_code_map(queue_file, configuration.agents)

    # ------------------------------------------------------------------ telephony

    async def handle_call(self, media: MediaCall) -> None:
        """Telephony's call handler: runs one answered call until it ends."""
        call = self.telephony.call(media.call_id)
        if call is None:
            logger.error("call %s: answered without a call API object", media.call_id)
            media.hangup()
            return
        started = self._starting.pop(call.call_id, None)
        if isinstance(started, AgentCallStarted):
            await self._agent_call(call, started)
            return
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
            if not self._flows and not self._agent_calls:
                self._idle.set()

    async def _agent_call(self, call: Call, started: AgentCallStarted) -> None:
        flow = AgentCallFlow(
            call,
            configuration=self.configuration,
            services=self.services,
            sip_user=started.sip_user,
            dialled=started.dialled,
        )
        self._agent_calls[call.call_id] = flow
        try:
            await flow.run()
        finally:
            self._agent_calls.pop(call.call_id, None)
            if not self._flows and not self._agent_calls:
                self._idle.set()

    def observe(self, event: object) -> None:
        """Every event published on the node, as it is published."""
        if isinstance(event, CallStarted | AgentCallStarted):
            self._starting[event.call_id] = event
            while len(self._starting) > MAX_STARTING_CALLS:
                self._starting.popitem(last=False)
        elif isinstance(event, CallEnded):
            self._starting.pop(event.call_id, None)
        elif isinstance(event, CallRinging):
            self.port.on_ringing(event.call_id, event.sip_user)
            self._transfer_ringing(event)
        elif isinstance(event, RegistrationAdded):  # agents with login_on_register follow it
            self.acd.contact_added(event.aor, event.contact)
        elif isinstance(event, RegistrationRefreshed):
            self.acd.contact_refreshed(event.aor, event.contact)
        elif isinstance(event, RegistrationRemoved | RegistrationExpired):
            self.acd.contact_gone(event.aor, event.contact)
        elif isinstance(event, CallbackCompleted) or (
            isinstance(event, CallbackFailed) and event.final
        ):
            self.port.forget_callback(event.call_id)
        elif isinstance(event, AgentLegAnswered):
            self._ring_seconds[event.leg_id] = event.ring_seconds
        elif isinstance(event, AgentLegEnded):
            self._ring_seconds.pop(event.leg_id, None)
        elif isinstance(event, CallTransferred) and event.succeeded:
            self._transferred(event)
        elif isinstance(event, CallTransferred):
            agent = self._agent_named(event.target)
            if agent is not None:
                self.acd.transfer_failed(event.call_id, agent.id)

    def _agent_named(self, target: str) -> Agent | None:
        return next((a for a in self.configuration.agents if target in (a.sip_user, a.id)), None)

    def _transfer_ringing(self, event: CallRinging) -> None:
        """A phone rings for a caller who is with an agent: a transfer (REFER, or the call
        API). When it is another agent's phone, the ACD reserves them until the transfer is
        answered or fails, so that no queue call rings it meanwhile."""
        call = self.telephony.call(event.call_id)
        if call is None or call.agent is None or call.agent.sip_user == event.sip_user:
            return
        agent = self._agent_named(event.sip_user)
        if agent is not None and event.call_id in self._flows:
            ring_seconds = self.configuration.server.sip.ring_timeout
            self.acd.transfer_ringing(event.call_id, agent.id, ring_seconds)

    def _transferred(self, event: CallTransferred) -> None:
        """The caller is now bridged to the phone the transfer named: when it is an agent's,
        the ACD puts them on the call in the queue the caller came from."""
        agent = self._agent_named(event.target)
        call = self.telephony.call(event.call_id)
        leg = call.agent if call is not None else None
        flow = self._flows.get(event.call_id)
        queue = flow.queue if flow is not None else None
        if agent is None or leg is None or leg.leg_id != event.to_leg_id or queue is None:
            logger.info(
                "call %s: transferred to %s, not an agent's call from a queue",
                event.call_id,
                event.target,
            )
            return
        ring_seconds = self._ring_seconds.get(leg.leg_id, 0.0)
        self.port.transferred(event.call_id, agent.id, leg, queue.queue_id, ring_seconds)

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
        flow = self._flows.get(call_id)
        if flow is None:
            return
        task = asyncio.get_running_loop().create_task(flow.offer_callback(queue_id))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    async def ring_for_callback(
        self, call_id: str, sip_user: str, ring_timeout: float
    ) -> AgentLeg | RingFailure:
        return await self.telephony.originate(sip_user, ring_timeout=ring_timeout, call_id=call_id)

    async def call_customer(self, call_id: str, destination: str) -> Call | CallOutFailure:
        return await self.telephony.call_out(destination)

    # ------------------------------------------------------------------ callbacks

    async def register_callback(
        self, call_id: str, step: QueueStep, number: str, queued: bool
    ) -> bool:
        """Make ``call_id`` a callback to ``number`` in ``step``'s queue (queued there first,
        with the step's priority, skills and attributes, unless ``queued``); False when the ACD
        did not take it (unknown queue, full, no number...)."""
        queue_id = step.queue_id
        if not number or number == "anonymous":
            logger.info("call %s: no number to call back", call_id)
            return False
        self.port.expect_callback(call_id)
        try:
            if not queued:
                await self.acd.enqueue(
                    call_id,
                    queue_id,
                    priority=step.priority,
                    attributes=step.attributes,
                    preferred_agent=step.preferred_agent,
                    required_skills=step.skills,
                )
            await self.acd.request_callback(call_id, number)
        except (LookupError, ValueError, RuntimeError) as exc:
            self.port.forget_callback(call_id)
            logger.warning("call %s: callback in %s not registered: %s", call_id, queue_id, exc)
            return False
        logger.info("call %s: callback to %s registered in %s", call_id, number, queue_id)
        return True

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("call center task failed", exc_info=task.exception())


def build_call_center(
    configuration: Configuration,
    telephony: TelephonyService,
    *,
    publish: Callable[[object], None],
    data_dir: Path,
    speech: SpeechRecognizer | None = None,
    crm: CustomerLookup | None = None,
    crm_routing: CrmRouting | None = None,
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
        crm_routing=crm_routing,
        close_store=close_store,
    )
