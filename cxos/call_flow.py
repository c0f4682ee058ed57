"""One caller's way through the contact center: dialled number, IVR, queue, agent, hang-up.

A call is a sequence of steps. The dialled number's entry point (``dialplan.yaml``) gives the
first: an IVR tree or a queue. The IVR's hand-off gives the next (a queue; a transfer to an agent
or an extension rings that phone directly), and a queue the caller leaves without an agent (its
maximum wait, a full or empty queue, an escalation's ``route_to``) names a destination resolved
as a dial-plan number, an IVR tree, a queue or an IVR node (``main/voicemail``, or ``voicemail``:
that node of the tree the caller came through), in that order. The configuration in force when the
call arrived is kept for the whole call, so a reload never changes the tree a caller is in.

While the caller waits for an agent they hear music on hold (or comfort silence) and the
queue's announcements (:mod:`cxos.waiting_audio`). When the ACD's chosen agent answers, the
telephony port calls :meth:`CallFlow.connect`, which stops the music and bridges the two; the
call then lasts until either side hangs up (telephony ends the other side). Leaving the call
center is reported to the ACD once, when the caller's leg ends (``caller_hung_up``: an abandon
while waiting, the end of a connected call otherwise).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from acd.actions import RouteReason
from acd.service import AcdService
from config.ivr.schema import Prompt
from config.loader import Configuration
from config.settings import EntryPoint
from crm_bridge.lookup import RoutingAttributes, screen_pop_variables, skills_text
from cxos.recordings import CallRecordings
from cxos.waiting_audio import (
    AnnouncementPart,
    WaitingAudio,
    announcement_parts,
    music_on_hold,
)
from ivr.actions import EnqueueCall, OfferCallback, PromptPart, Transfer
from ivr.ports import CustomerLookup, PromptRenderer, SpeechRecognizer
from ivr.prompts import prompt_files
from ivr.runner import IvrRunner, RunnerSettings
from ivr.templates import prompt_parts
from telephony.calls import AgentLeg, Call, CallOutFailure, RingFailure
from telephony.rtp.audio import RecordingLayout

__all__ = ["CallFlow", "FlowServices", "IvrStep", "QueueStep", "Step", "handoff_step"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Registers a callback: (call id, the queue with what to route it by, number to call back,
#: whether the caller already waits in that queue) -> whether the ACD took it.
RegisterCallback = Callable[[str, "QueueStep", str, bool], Awaitable[bool]]

#: The CRM's routing attributes for a caller joining a queue: (caller id, what the call carries,
#: the IVR's ``crm.*`` variables among it) -> attributes, or None for an unknown caller.
CrmRouting = Callable[[str, Mapping[str, str]], Awaitable[RoutingAttributes | None]]

#: Steps one call may take (IVR → queue → IVR...) before it is ended: a dial plan whose exits
#: lead round in a circle must not keep a caller forever.
MAX_STEPS = 16
DEFAULT_LANGUAGE = "en"


def _frozen(values: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(values))


@dataclass(frozen=True, slots=True)
class IvrStep:
    tree_id: str
    #: The node to begin at (None: the tree's start), for destinations such as ``main/voicemail``.
    node_id: str | None = None


@dataclass(frozen=True, slots=True)
class QueueStep:
    queue_id: str
    priority: int = 0
    #: Routing data and everything the IVR collected; it travels with the call to the agent.
    attributes: Mapping[str, str] = field(default_factory=lambda: _frozen({}))
    language: str = DEFAULT_LANGUAGE
    #: The agent the caller should reach (the CRM's account owner), if any.
    preferred_agent: str | None = None
    #: The caller's own needs (the IVR's, the CRM's language): skill -> minimum proficiency,
    #: required of the agent on top of the queue's skills.
    skills: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


Step = IvrStep | QueueStep


def handoff_step(handoff: EnqueueCall | OfferCallback, language: str) -> QueueStep:
    """The queue the IVR hands the call to, with its routing and the variables it collected
    (the caller id and dialled number among them; empty ones left out)."""
    attributes = {**handoff.variables, **handoff.attributes}
    return QueueStep(
        handoff.queue,
        priority=handoff.priority,
        attributes=_frozen({k: v for k, v in attributes.items() if v}),
        language=language,
        skills=handoff.skills,
    )


def with_crm_routing(step: QueueStep, routing: RoutingAttributes) -> QueueStep:
    """``step`` with what the CRM says about the caller: the higher of the two priorities, the
    preferred agent, its skills required on top of the IVR's (the higher of the two minimum
    proficiencies for a skill both name), and the customer record as ``crm.*`` attributes
    (screen-pop data that travels to the agent; what the IVR set keeps precedence)."""
    attributes = screen_pop_variables(routing)
    if routing.skills:
        attributes["crm.skills"] = skills_text(routing.skills)
    attributes.update(step.attributes)
    skills = dict(step.skills)
    for skill, level in routing.skills.items():
        skills[skill] = max(level, skills.get(skill, 0))
    return replace(
        step,
        priority=max(step.priority, routing.priority),
        attributes=_frozen(attributes),
        preferred_agent=routing.preferred_agent or step.preferred_agent,
        skills=MappingProxyType(skills),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowServices:
    """What every call's flow shares."""

    acd: AcdService
    #: Text-to-speech for IVR prompts and queue announcements.
    renderer: PromptRenderer
    publish: Callable[[object], None]
    ivr_settings: RunnerSettings
    #: Speech recognition for IVR menus that listen (None: keys only).
    speech: SpeechRecognizer | None = None
    #: CRM look-ups of IVR trees (None: every look-up finds nothing).
    crm: CustomerLookup | None = None
    #: The time IVR business hours are judged by (None: now).
    wall_clock: Callable[[], datetime] | None = None
    #: Callbacks with the ACD (None: callbacks are not offered).
    register_callback: RegisterCallback | None = None
    #: The CRM's routing attributes at queue arrival (None: no CRM look-up).
    crm_routing: CrmRouting | None = None
    #: Where calls are recorded (None: queues' ``record`` is not carried out).
    recordings: CallRecordings | None = None


class CallFlow:
    """Runs one answered call from its entry point until it ends."""

    def __init__(
        self,
        call: Call,
        *,
        configuration: Configuration,
        services: FlowServices,
        did: str,
        caller_id: str,
    ) -> None:
        self.call = call
        self.configuration = configuration
        self.services = services
        self.did = did
        self.caller_id = caller_id
        self.variables: dict[str, str] = {}
        #: The queue the caller waits in, while they do.
        self.queue: QueueStep | None = None
        #: The agent the caller is bridged to.
        self.agent: AgentLeg | None = None
        self._next: asyncio.Future[Step | None] | None = None
        self._audio: WaitingAudio | None = None
        self._enqueued = False
        self._last_tree: str | None = None
        #: The queue's recording starting (held: the loop keeps only weak references to tasks).
        self._recording: asyncio.Task[None] | None = None
        call.on_hangup = self._caller_left

    @property
    def call_id(self) -> str:
        return self.call.call_id

    @property
    def waiting(self) -> bool:
        return self.queue is not None and self.agent is None and not self.call.ended

    # ------------------------------------------------------------------ the call's steps

    async def run(self) -> None:
        entry = self.configuration.dialplan.entry_for(self.did)
        step: Step | None = None
        if entry is None:
            logger.info("call %s: no entry point for number %r", self.call_id, self.did)
        else:
            step = self._entry_step(entry)
        try:
            for _ in range(MAX_STEPS):
                if step is None or self.call.ended:
                    break
                if isinstance(step, IvrStep):
                    step = await self._ivr(step)
                else:
                    step = await self._wait_in_queue(step)
            else:
                logger.warning(
                    "call %s: %d steps without an end; hanging up", self.call_id, MAX_STEPS
                )
        finally:
            self._stop_audio()
            if not self.call.ended:
                self.call.hangup()

    def _entry_step(self, entry: EntryPoint) -> Step:
        if entry.ivr is not None:
            return IvrStep(entry.ivr)
        assert entry.queue is not None  # an entry point names one of the two
        return QueueStep(
            entry.queue,
            attributes=_frozen({"caller_id": self.caller_id, "dialed_number": self.did}),
        )

    def resolve(self, destination: str) -> Step | None:
        """Where ``destination`` leads, tried in this order: a dial-plan number, an IVR tree, a
        queue, ``tree/node`` (an IVR tree entered at that node), or a node of the last tree the
        caller went through (``voicemail``: that tree's voicemail node). None if nothing is."""
        configuration = self.configuration
        entry = configuration.dialplan.numbers.get(destination)
        if entry is not None:
            return self._entry_step(entry)
        if destination in configuration.ivr:
            return IvrStep(destination)
        if destination in configuration.queue_file.queues:
            previous = self.queue
            return QueueStep(
                destination,
                priority=previous.priority if previous is not None else 0,
                attributes=previous.attributes if previous is not None else _frozen({}),
                language=previous.language if previous is not None else DEFAULT_LANGUAGE,
                preferred_agent=previous.preferred_agent if previous is not None else None,
                skills=previous.skills if previous is not None else MappingProxyType({}),
            )
        tree_id, slash, node_id = destination.partition("/")
        if not slash:
            tree_id, node_id = self._last_tree or "", destination
        tree = configuration.ivr.get(tree_id)
        if tree is not None and node_id in tree.nodes:
            return IvrStep(tree_id, node_id)
        logger.warning(
            "call %s: no dial-plan number, IVR tree or queue named %r; hanging up",
            self.call_id,
            destination,
        )
        return None

    async def _ivr(self, step: IvrStep) -> Step | None:
        tree = self.configuration.ivr.get(step.tree_id)
        if tree is None:
            logger.error("call %s: IVR tree %r is not configured", self.call_id, step.tree_id)
            return None
        self._last_tree = step.tree_id
        if step.node_id is not None:
            tree = replace(tree, start=step.node_id)
        services = self.services
        runner = IvrRunner(
            tree,
            self.call.media,
            renderer=services.renderer,
            publish=services.publish,
            speech=services.speech,
            crm=services.crm,
            settings=services.ivr_settings,
            wall_clock=services.wall_clock,
        )
        outcome = await runner.run(
            caller_id=self.caller_id, dialed_number=self.did, variables=self.variables
        )
        self.variables.update(outcome.variables)
        language = outcome.variables.get("language") or tree.default_language
        handoff = outcome.handoff
        if isinstance(handoff, EnqueueCall):
            return handoff_step(handoff, language)
        if isinstance(handoff, Transfer):
            await self._transfer(handoff, language)
        elif isinstance(handoff, OfferCallback):
            await self._register_callback(handoff, language)
        return None

    # ------------------------------------------------------------------ waiting for an agent

    async def _wait_in_queue(self, step: QueueStep) -> Step | None:
        loop = asyncio.get_running_loop()
        self._next = loop.create_future()
        self.queue = step
        self._start_audio(step.language)
        try:
            step = await self._crm_routing(step)
            if self.call.ended:
                return None
            self.queue = step
            self._enqueued = True
            try:
                await self.services.acd.enqueue(
                    self.call_id,
                    step.queue_id,
                    priority=step.priority,
                    attributes=step.attributes,
                    preferred_agent=step.preferred_agent,
                    required_skills=step.skills,
                )
            except (LookupError, ValueError, RuntimeError) as exc:
                logger.error("call %s: not queued in %r: %s", self.call_id, step.queue_id, exc)
                return None
            logger.info("call %s: waiting in queue %s", self.call_id, step.queue_id)
            return await self._until_caller_leaves(self._next)
        finally:
            self._next = None
            self.queue = None
            self._stop_audio()

    async def _crm_routing(self, step: QueueStep) -> QueueStep:
        """Ask the CRM about the caller (the caller hears the queue's music meanwhile; the
        look-up gives up after its own timeout) and apply the answer to ``step``."""
        lookup = self.services.crm_routing
        if lookup is None:
            return step
        try:
            routing = await self._until_caller_leaves(lookup(self.caller_id, step.attributes))
        except Exception:
            logger.exception("call %s: CRM routing look-up failed", self.call_id)
            return step
        if routing is None:
            return step
        logger.info(
            "call %s: CRM routing priority %d, preferred agent %s, skills %s",
            self.call_id,
            routing.priority,
            routing.preferred_agent,
            ",".join(routing.skills) or "-",
        )
        return with_crm_routing(step, routing)

    def connect(self, agent: AgentLeg) -> bool:
        """The ACD's agent answered: stop the music and bridge the caller to them."""
        if not self.waiting:
            return False
        self._stop_audio()
        try:
            self.call.bridge(agent)
        except (RuntimeError, LookupError) as exc:
            logger.warning("call %s: not bridged to %s: %s", self.call_id, agent.sip_user, exc)
            return False
        self.agent = agent
        logger.info("call %s: connected to %s", self.call_id, agent.sip_user)
        spec = self.configuration.queue_file.queues.get(self.queue.queue_id if self.queue else "")
        if spec is not None and spec.record is not None:
            self._recording = asyncio.get_running_loop().create_task(self._record(spec.record))
        return True

    async def _record(self, layout: str) -> None:
        """The queue records its calls: from the agent's answer until the call ends."""
        recordings = self.services.recordings
        if recordings is None or self.call.media.recording is not None:
            return  # recorded already: by a supervisor, or by the queue it was moved from
        try:
            _, path = await recordings.start(self.call, layout=RecordingLayout(layout))
        except (OSError, RuntimeError) as exc:  # RuntimeError: recorded already, or ended
            logger.warning("call %s: the queue's recording did not start: %s", self.call_id, exc)
            return
        logger.info("call %s: recorded to %s", self.call_id, path.name)

    def agent_lost(self) -> None:
        """The agent who answered was gone before the bridge: wait in the same queue again."""
        if self.waiting and self._next is not None and not self._next.done():
            logger.info("call %s: the agent left before the bridge; queued again", self.call_id)
            self._next.set_result(self.queue)

    def announce(self, queue_id: str, position: int | None, ewt_seconds: float | None) -> None:
        spec = self.configuration.queue_file.queues.get(queue_id)
        if self._audio is None or not self.waiting or spec is None:
            return
        parts = announcement_parts(
            spec.prompts, position, ewt_seconds, prompts_folder(self.configuration)
        )
        self._audio.announce(parts)

    def route(self, queue_id: str, destination: str | None, reason: RouteReason) -> None:
        """The ACD sends the caller out of ``queue_id`` (its max wait, full, empty...)."""
        if self._next is None or self._next.done() or self.agent is not None:
            return
        logger.info(
            "call %s: leaves queue %s (%s) for %s", self.call_id, queue_id, reason, destination
        )
        self._next.set_result(self.resolve(destination) if destination is not None else None)

    # ------------------------------------------------------------------ transfers from the IVR

    async def _transfer(self, transfer: Transfer, language: str) -> None:
        """Ring the agent or extension the IVR names and bridge the caller on answer.

        This bypasses the ACD (no queue, no agent state): the IVR asked for that phone."""
        if transfer.kind == "external":
            await self._transfer_out(transfer, language)
            return
        sip_user = transfer.target
        if transfer.kind == "agent":
            agent = next(
                (a for a in self.configuration.agents if transfer.target in (a.id, a.sip_user)),
                None,
            )
            if agent is None:
                logger.warning("call %s: no agent %r to transfer to", self.call_id, transfer.target)
                return
            sip_user = agent.sip_user
        self._start_audio(language)
        try:
            ring_timeout = self.configuration.server.sip.ring_timeout
            outcome = await self._until_caller_leaves(
                self.call.originate_agent(sip_user, ring_timeout)
            )
        finally:
            self._stop_audio()
        if outcome is None:
            return
        if isinstance(outcome, RingFailure):
            logger.info("call %s: transfer to %s failed (%s)", self.call_id, sip_user, outcome)
            return
        if self.call.ended:
            outcome.hangup()
            return
        self.call.bridge(outcome)
        self.agent = outcome
        await self.call.wait_ended()

    async def _transfer_out(self, transfer: Transfer, language: str) -> None:
        """Call the external number through the trunk (the IVR's, or the default one) and
        bridge the caller on answer; the caller hears the waiting audio while it rings."""
        self._start_audio(language)
        try:
            ring_timeout = self.configuration.server.sip.ring_timeout
            outcome = await self._until_caller_leaves(
                self.call.transfer_out(transfer.target, transfer.trunk, ring_timeout=ring_timeout)
            )
        finally:
            self._stop_audio()
        if outcome is None:
            return
        if isinstance(outcome, CallOutFailure):
            logger.info(
                "call %s: transfer to %s failed (%s)", self.call_id, transfer.target, outcome
            )
            return
        self.agent = outcome
        await self.call.wait_ended()

    # ------------------------------------------------------------------ callbacks

    async def _register_callback(self, offer: OfferCallback, language: str) -> None:
        """The IVR's callback node: the caller is queued and at once turned into a callback
        that keeps that place (the ACD rings an agent, then calls ``offer.number`` back). The
        CRM is asked about the caller first, as for a caller who waits in the queue: its
        priority, preferred agent and skills route the callback too (a caller who hangs up
        meanwhile still gets the callback they asked for, routed by the IVR alone)."""
        register = self.services.register_callback
        if register is None:
            logger.warning("call %s: callbacks are not available here", self.call_id)
            return
        step = await self._crm_routing(handoff_step(offer, language))
        await register(self.call_id, step, offer.number, False)

    async def offer_callback(self, queue_id: str) -> None:
        """The queue offers the waiting caller a callback (its ``callbacks.offer`` prompt): the
        offer's key takes it, keeping their place, and ends the call after the ``accepted``
        prompt; anything else (or nothing) keeps them waiting."""
        step = self.queue
        spec = self.configuration.queue_file.queues.get(queue_id)
        if not self.waiting or step is None or step.queue_id != queue_id or spec is None:
            return
        options = spec.callbacks
        if self._audio is not None:
            self._audio.announce(self._announcement(options.offer))
        result = await self.call.collect_digits(
            1, terminator=None, first_timeout=options.choice_timeout
        )
        register = self.services.register_callback
        still_here = self.waiting and self.queue is step  # not moved to another queue meanwhile
        if result.digits != options.key or not still_here or register is None:
            return
        if not await register(self.call_id, step, self.caller_id, True):
            if self._audio is not None:
                self._audio.announce(self._announcement(options.unavailable))
            return
        # From now on the ACD keeps the place: the caller's hang-up is no abandon.
        self._enqueued = False
        self._stop_audio()
        await self._until_caller_leaves(self._play(options.accepted))
        if self._next is not None and not self._next.done():
            self._next.set_result(None)

    def _parts(self, prompt: Prompt) -> tuple[PromptPart, ...]:
        """``prompt`` in the waiting caller's language (else its first), variables filled."""
        language = self.queue.language if self.queue is not None else DEFAULT_LANGUAGE
        variables = {"caller_id": self.caller_id, "dialed_number": self.did, **self.variables}
        return prompt_parts(
            (prompt,),
            language=language,
            default_language=language,
            variables=variables,
            folder=prompts_folder(self.configuration),
        )

    def _announcement(self, prompt: Prompt) -> list[AnnouncementPart]:
        return [
            AnnouncementPart(text=part.text)
            if part.text is not None
            else AnnouncementPart(file=Path(part.folder or "") / (part.file or ""))
            for part in self._parts(prompt)
        ]

    async def _play(self, prompt: Prompt) -> None:
        """Play ``prompt`` to the caller (text through text-to-speech, as the IVR's prompts);
        a prompt that cannot be rendered or played is logged and skipped."""
        language = self.queue.language if self.queue is not None else DEFAULT_LANGUAGE
        try:
            files = await prompt_files(
                self._parts(prompt), language=language, renderer=self.services.renderer
            )
            await self.call.play(files)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("call %s: prompt not played", self.call_id, exc_info=True)

    # ------------------------------------------------------------------ helpers

    async def _until_caller_leaves(self, work: Awaitable[T]) -> T | None:
        """``work``'s result, or None when the caller hangs up first (then it is cancelled)."""
        return await until_call_ends(self.call, work)

    def _start_audio(self, language: str) -> None:
        self._stop_audio()
        queues = self.configuration.queue_file.queues
        spec = queues.get(self.queue.queue_id) if self.queue is not None else None
        audio = WaitingAudio(
            self.call.media,
            renderer=self.services.renderer,
            language=language,
            music=music_on_hold(
                prompts_folder(self.configuration), spec.musiconhold if spec else None
            ),
        )
        audio.start()
        self._audio = audio

    def _stop_audio(self) -> None:
        audio, self._audio = self._audio, None
        if audio is not None:
            audio.stop()

    def _caller_left(self) -> None:
        self._stop_audio()
        if self._enqueued:
            self.services.acd.caller_hung_up(self.call_id)


def prompts_folder(configuration: Configuration) -> Path:
    """The configuration's prompts folder: music on hold, announcement files, digits."""
    return configuration.directory / "prompts"


async def until_call_ends(call: Call, work: Awaitable[T]) -> T | None:
    """``work``'s result, or None when ``call`` ends first (then ``work`` is cancelled)."""
    job: asyncio.Future[T] = asyncio.ensure_future(work)
    ended = asyncio.get_running_loop().create_task(call.wait_ended())
    try:
        pending: set[asyncio.Future[Any]] = {job, ended}
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ended.cancel()
        if not job.done():
            job.cancel()
    if job.done() and not job.cancelled():
        return job.result()
    return None
