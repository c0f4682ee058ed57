"""The asyncio layer around the ACD engine: timers, the shared store, telephony, the event bus.

One worker task applies every input to the engine and carries out the resulting actions, one
input at a time and in order, so the engine's view and the store's never interleave halfway (an
answer is checked against the store and applied to the engine with nothing in between). One
``call_at`` timer is armed for the earlier of ``engine.next_timer()`` and the heartbeat (claims
of busy agents renewed, this node's lease renewed, lost nodes' callbacks adopted:
:mod:`acd.service_restore`). The service is assembled from parts (:mod:`acd.service_base`):
restore and takeover, the reports of transfers and agents' own calls (:mod:`acd.service_calls`)
and the agents' shared statuses, written by compare-and-set (:mod:`acd.shared_status`).

Claims: before ringing an agent the service claims them in the store (:mod:`acd.claims`). A
refused claim means another node holds the agent: not the agent's failure, so nothing counts
toward auto-pause; the engine re-routes the caller and leaves the agent out of its decisions
until the other node's lease ends (``offer_claimed_elsewhere``).

Restart: :meth:`AcdService.start` first puts the engine back as the store last saw it (with the
Redis store, what this node's previous run left there: the statuses and entries it saved, named
by its node id; other nodes' are left alone). Agents come back logged in, paused with
their reason or in wrap-up until it ends; an agent who was offered a call or talking comes back
available, since that call was on the node that went away, and the claims that node's previous
run held are released at once rather than left to their leases. The node's callbacks go back to
their queues keeping their place; its waiting callers are gone with their calls, and their
entries are removed from the store.

Connections: an answer is bridged only after ``store.connect_call`` accepted it (recorded as
``<node>/<agent>``). If the caller is already connected (the same call queued on another node),
the answer is dropped: the agent's leg is hung up and this node forgets the caller without
reporting a queue exit (the node that connected the call reports it). A connection is forgotten
when the caller's leg ends, so a copy of the caller still waiting elsewhere can never connect.

Reports from telephony (``ringing``, ``answered``...) are plain methods that queue the input and
return at once; API methods (``enqueue``, ``login``...) are coroutines that return once the input
was applied, raising what the engine raised. The input queue is bounded: when it is full a report
is dropped and logged (the engine's leases recover a lost ring outcome) and an API call waits.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping

from acd.actions import (
    Announce,
    CancelOffer,
    DialCallback,
    OfferCall,
    OfferCallbackChoice,
    RouteCall,
)
from acd.agent_state import OFFER_STATES, AgentState, IllegalTransitionError
from acd.claims import BUSY_STATES, FREE_STATES, NodeClaims
from acd.engine import CUSTOMER_KEY, AcdEngine, Output
from acd.events import (
    AcdEvent,
    AgentStateChanged,
    CallbackCompleted,
    CallbackFailed,
    CallbackRequested,
    QueueJoined,
    QueueLeft,
    QueuePriorityChanged,
)
from acd.feature_codes import AgentCommandKind, FeatureCodeMap
from acd.model import AgentProfile, EngineSettings, OfferFailure, QueueConfig
from acd.presence import DevicePresence, PresenceAction, PresenceChange
from acd.service_base import ServiceSettings
from acd.service_calls import OwnCallReports
from acd.service_restore import StoreRestore
from acd.shared_status import SharedStatuses, is_command
from acd.store import AcdStore, AgentStatus, QueueEntry
from acd.telephony_port import TelephonyPort
from acd.worker import Job, SerialWorker

logger = logging.getLogger(__name__)

__all__ = ["AcdService", "FeatureCodeResult", "ServiceSettings"]


class FeatureCodeResult(enum.StrEnum):
    """What became of a number dialled from an agent's softphone."""

    NOT_A_CODE = "not_a_code"  # route it as a normal call
    UNKNOWN_AGENT = "unknown_agent"  # a feature code, but the SIP user is no agent
    INVALID = "invalid"  # a feature code with an unknown pause reason or extra digits
    REFUSED = "refused"  # not possible in the agent's state (e.g. unpause while logged out)
    DONE = "done"


class AcdService(StoreRestore, OwnCallReports, SharedStatuses):
    """Runs one :class:`AcdEngine` against a store, a telephony port and an event publisher.

    ``clock`` is the engine's monotonic clock; ``shared_clock`` the clock every node shares, used
    for store leases. Both default to the system clocks; tests pass a fake one for both.
    """

    def __init__(
        self,
        engine: AcdEngine,
        store: AcdStore,
        telephony: TelephonyPort,
        publish: Callable[[AcdEvent], object],
        *,
        node_id: str = "cxos-1",
        feature_codes: FeatureCodeMap | None = None,
        clock: Callable[[], float] = time.monotonic,
        shared_clock: Callable[[], float] = time.time,
        settings: ServiceSettings | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.telephony = telephony
        self.feature_codes = feature_codes
        self.settings = settings or ServiceSettings()
        self.claims_refused = 0  # offers given up because another node held the agent
        self.connects_refused = 0  # answers dropped because the caller was connected elsewhere
        self._publish = publish
        self._clock = clock
        self._shared_clock = shared_clock
        self._worker = SerialWorker("acd-service", self.settings.max_pending, self._arm)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._next_heartbeat: float | None = None
        self._claims = NodeClaims(
            store,
            node_id,
            shared_clock,
            heartbeat=self.settings.heartbeat,
            ring_margin=self.settings.ring_margin,
        )
        self.presence = DevicePresence(a.profile for a in engine.agents.values())
        self._offers: dict[tuple[str, str], OfferCall] = {}  # (call, agent) -> pending offer
        self._connected: set[str] = set()  # calls this node connected, until the caller leaves
        self._status_versions: dict[str, int] = {}

    # Life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._worker.start()
        await self._worker.call(self._flushing(self._restore))
        self._arm()

    async def stop(self) -> None:
        """Stop after the inputs already queued; claims stay until their leases end."""
        await self._worker.stop()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None

    @property
    def running(self) -> bool:
        return self._worker.running

    async def drain(self) -> None:
        """Return once every input queued before this call has been applied."""
        await self._call(lambda now: [])

    # Callers (API) ---------------------------------------------------------------------------

    async def enqueue(
        self,
        call_id: str,
        queue_id: str,
        *,
        priority: int = 0,
        attributes: Mapping[str, str] | None = None,
        preferred_agent: str | None = None,
        required_skills: Mapping[str, int] | None = None,
    ) -> None:
        """Queue a caller; ``required_skills`` (skill -> minimum proficiency) are their own
        needs on top of the queue's (see :meth:`AcdEngine.enqueue`)."""
        await self._call(
            lambda now: self.engine.enqueue(
                call_id,
                queue_id,
                now,
                priority=priority,
                attributes=attributes,
                preferred_agent=preferred_agent,
                required_skills=required_skills,
            )
        )

    async def set_priority(self, call_id: str, priority: int) -> None:
        await self._call(lambda now: self.engine.set_priority(call_id, priority, now))

    async def move_call(self, call_id: str, queue_id: str) -> None:
        await self._call(lambda now: self.engine.move_call(call_id, queue_id, now))

    async def request_callback(self, call_id: str, destination: str) -> None:
        await self._call(lambda now: self.engine.request_callback(call_id, destination, now))

    # Agents (API and feature codes) ----------------------------------------------------------

    async def login(self, agent_id: str) -> None:
        await self._call(lambda now: self.engine.agent_login(agent_id, now))

    async def logout(self, agent_id: str, reason: str = "logout") -> None:
        await self._call(lambda now: self.engine.agent_logout(agent_id, now, reason))

    async def pause(self, agent_id: str, reason: str) -> None:
        await self._call(lambda now: self.engine.agent_pause(agent_id, reason, now))

    async def unpause(self, agent_id: str) -> None:
        await self._call(lambda now: self.engine.agent_unpause(agent_id, now))

    async def feature_code(self, sip_user: str, dialled: str) -> FeatureCodeResult:
        """Apply a feature code dialled from ``sip_user``'s softphone (see acd.feature_codes)."""
        codes = self.feature_codes
        if codes is None or not codes.is_feature_code(dialled):
            return FeatureCodeResult.NOT_A_CODE
        try:
            command = codes.command(sip_user, dialled)
        except ValueError as exc:
            logger.info("feature code %r from %s refused: %s", dialled, sip_user, exc)
            return FeatureCodeResult.INVALID
        if command is None:
            return FeatureCodeResult.UNKNOWN_AGENT
        actions = {
            AgentCommandKind.LOGIN: lambda: self.login(command.agent_id),
            AgentCommandKind.LOGOUT: lambda: self.logout(command.agent_id),
            AgentCommandKind.PAUSE: lambda: self.pause(command.agent_id, command.reason),
            AgentCommandKind.UNPAUSE: lambda: self.unpause(command.agent_id),
        }
        try:
            await actions[command.kind]()
        except IllegalTransitionError as exc:
            logger.info("feature code %r from %s refused: %s", dialled, sip_user, exc)
            return FeatureCodeResult.REFUSED
        return FeatureCodeResult.DONE

    # Configuration ---------------------------------------------------------------------------

    def reconfigure(
        self,
        queues: Iterable[QueueConfig],
        agents: Iterable[AgentProfile],
        settings: EngineSettings | None = None,
    ) -> None:
        """Apply a reloaded configuration (see :mod:`acd.reconfigure`) after the inputs queued
        before it; a failure is logged and the engine keeps its configuration."""
        queues, agents = tuple(queues), tuple(agents)
        self.presence.configure(agents)
        self._report(
            lambda: self._apply(
                lambda now: self.engine.reconfigure(queues, agents, now, settings=settings)
            )
        )

    # Softphone registrations (login_on_register) ---------------------------------------------

    def contact_added(self, sip_user: str, contact: str) -> None:
        """The registrar bound a new contact for ``sip_user`` (RFC 3261 §10.3)."""
        self._follow_phone(self.presence.contact_added(sip_user, contact))

    def contact_refreshed(self, sip_user: str, contact: str) -> None:
        self.presence.contact_refreshed(sip_user, contact)

    def contact_gone(self, sip_user: str, contact: str) -> None:
        """A contact of ``sip_user`` was unregistered or expired."""
        self._follow_phone(self.presence.contact_gone(sip_user, contact))

    def _follow_phone(self, action: PresenceAction | None) -> None:
        if action is not None:
            self._report(lambda: self._apply(lambda now: self._presence_change(action, now)))

    def _presence_change(self, action: PresenceAction, now: float) -> list[Output]:
        engine = self.engine
        agent_id = action.agent_id
        if agent_id not in engine.agents or agent_id in engine.retiring_agents:
            return []
        logged_out = engine.agent_state(agent_id) is AgentState.LOGGED_OUT
        if action.change is PresenceChange.LOGIN:
            return engine.agent_login(agent_id, now, "registered") if logged_out else []
        return [] if logged_out else engine.agent_logout(agent_id, now, "unregistered")

    # Reports from telephony ------------------------------------------------------------------

    def ringing(self, call_id: str, agent_id: str) -> None:
        self._report(
            lambda: self._apply(lambda now: self.engine.offer_ringing(call_id, agent_id, now))
        )

    def answered(self, call_id: str, agent_id: str) -> None:
        self._report(lambda: self._answered(call_id, agent_id))

    def ring_failed(self, call_id: str, agent_id: str, reason: OfferFailure) -> None:
        self._report(
            lambda: self._apply(
                lambda now: self.engine.offer_failed(call_id, agent_id, reason, now)
            )
        )

    def agent_hung_up(self, agent_id: str) -> None:
        """The agent's leg of a connected call ended: wrap-up, then the next caller."""
        self._report(lambda: self._apply(lambda now: self.engine.call_ended(agent_id, now)))

    def caller_hung_up(self, call_id: str) -> None:
        """The caller's leg ended: an abandon while waiting, the end of a connected call."""
        self._report(lambda: self._caller_hung_up(call_id))

    def callback_result(self, call_id: str, connected: bool) -> None:
        self._report(lambda: self._callback_result(call_id, connected))

    # The worker ------------------------------------------------------------------------------

    async def _call(self, step: Callable[[float], list[Output]]) -> None:
        await self._worker.call(self._flushing(lambda: self._apply(step)))

    def _report(self, job: Job) -> None:
        self._worker.submit(self._flushing(job), "report")

    def _flushing(self, job: Job) -> Job:
        """``job``, then the store's held-back writes: other nodes see each input whole."""

        async def run() -> object:
            try:
                return await job()
            finally:
                await self.store.flush()

        return run

    async def _apply(self, step: Callable[[float], list[Output]]) -> None:
        await self._perform(step(self._clock()))

    def _arm(self) -> None:
        deadline = self.engine.next_timer()
        # The heartbeat always runs: it renews this node's lease (see acd.service_restore)
        # and the claims of its busy agents.
        if self._next_heartbeat is None:
            self._next_heartbeat = self._clock() + self.settings.heartbeat
        if deadline is None or self._next_heartbeat < deadline:
            deadline = self._next_heartbeat
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
        if deadline is None or not self._worker.running:
            return
        loop = asyncio.get_running_loop()
        # The engine's clock and the loop's may differ in origin: convert the delay, not the time.
        delay = max(0.0, deadline - self._clock())
        self._timer = loop.call_at(loop.time() + delay, self._on_timer)
        self._timer_at = deadline

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        # When the queue is full the timer job is dropped, but the worker re-arms the timer
        # after each input it finishes, so the due timers run then.
        self._worker.submit(self._flushing(self._timers_due), "timer")

    async def _timers_due(self) -> None:
        now = self._clock()
        await self._perform(self.engine.on_timer(now))
        if self._next_heartbeat is not None and self._next_heartbeat <= now:
            self._next_heartbeat = now + self.settings.heartbeat
            await self._heartbeat()

    async def _heartbeat(self) -> None:
        engine = self.engine
        await self._claims.renew_busy(lambda a: engine.agent_state(a).value in BUSY_STATES)
        await self._keep_alive()
        await self._catch_up()

    async def _held_until(self, agent_id: str) -> float:
        """When the claim another node holds on ``agent_id`` ends, on the engine's clock."""
        shared_now = self._shared_clock()
        claim = await self.store.claim_of(agent_id, shared_now)
        left = 0.0 if claim is None else claim.lease_until - shared_now
        return self._clock() + max(0.0, left)

    # Outcomes needing the store first --------------------------------------------------------

    async def _answered(self, call_id: str, agent_id: str) -> None:
        engine = self.engine
        if engine.agent_call(agent_id) != call_id or engine.agent_state(agent_id) not in (
            OFFER_STATES
        ):
            await self._perform(engine.offer_answered(call_id, agent_id, self._clock()))
            return  # stale: the engine answers with a CancelOffer that hangs the leg up
        if not await self.store.connect_call(call_id, self._claims.holder(agent_id)):
            self.connects_refused += 1
            logger.info("call %s: answered by %s but connected elsewhere", call_id, agent_id)
            await self._drop_duplicate(call_id)
            return
        self._connected.add(call_id)
        offer = self._offers.pop((call_id, agent_id), None)
        outputs = engine.offer_answered(call_id, agent_id, self._clock())
        if offer is None or offer.callback_destination is None:
            # A callback is connected by dial_callback once the customer answers.
            await self._port(self.telephony.bridge(call_id, agent_id))
        await self._perform(outputs)
        customer = offer.attributes.get(CUSTOMER_KEY) if offer is not None else None
        if customer is not None:
            await self.store.remember_agent(customer, agent_id)

    async def _drop_duplicate(self, call_id: str) -> None:
        kept: list[Output] = []
        for output in self.engine.caller_abandoned(call_id, self._clock()):
            if isinstance(output, QueueLeft | CallbackFailed) and output.call_id == call_id:
                continue  # the node that connected the caller reports their exit
            if isinstance(output, CancelOffer) and output.call_id == call_id:
                output = CancelOffer(
                    call_id=call_id, agent_id=output.agent_id, reason="answered_elsewhere"
                )
            kept.append(output)
        await self._perform(kept)

    async def _caller_hung_up(self, call_id: str) -> None:
        if call_id in self._connected:
            self._connected.discard(call_id)
            await self.store.finish_call(call_id)
            return
        await self._perform(self.engine.caller_abandoned(call_id, self._clock()))

    async def _callback_result(self, call_id: str, connected: bool) -> None:
        outputs = self.engine.callback_result(call_id, connected, self._clock())
        if not connected:
            # The next attempt may be answered by another agent: the connection starts afresh.
            self._connected.discard(call_id)
            await self.store.finish_call(call_id)
        await self._perform(outputs)

    # Carrying out the engine's output --------------------------------------------------------

    async def _perform(self, outputs: list[Output]) -> None:
        """Each output in order; what the engine answers to an outcome is carried out after."""
        pending = deque(outputs)
        while pending:
            output = pending.popleft()
            pending.extend(await self._perform_one(output))

    async def _perform_one(self, output: Output) -> list[Output]:
        port = self.telephony
        if isinstance(output, OfferCall):
            return await self._offer(output)
        if isinstance(output, CancelOffer):
            self._offers.pop((output.call_id, output.agent_id), None)
            await self._port(port.cancel_ring(output.call_id, output.agent_id, output.reason))
        elif isinstance(output, Announce):
            await self._port(
                port.announce(output.call_id, output.queue_id, output.position, output.ewt_seconds)
            )
        elif isinstance(output, RouteCall):
            await self._port(
                port.route_call(output.call_id, output.queue_id, output.destination, output.reason)
            )
        elif isinstance(output, OfferCallbackChoice):
            await self._port(port.offer_callback(output.call_id, output.queue_id))
        elif isinstance(output, DialCallback):
            await self._port(
                port.dial_callback(
                    output.call_id, output.agent_id, output.destination, output.attempt
                )
            )
        else:
            await self._event(output)
        return []

    async def _offer(self, offer: OfferCall) -> list[Output]:
        engine = self.engine
        now = self._clock()
        sip_user = engine.agents[offer.agent_id].profile.sip_user
        if sip_user is None:
            return engine.offer_failed(
                offer.call_id, offer.agent_id, OfferFailure.UNREGISTERED, now
            )
        lease = max(0.0, offer.lease_expires - now)
        if not await self._claims.claim(offer.agent_id, offer.call_id, lease):
            self.claims_refused += 1
            logger.debug(
                "agent %s is held elsewhere: %s not offered", offer.agent_id, offer.call_id
            )
            held_until = await self._held_until(offer.agent_id)
            return engine.offer_claimed_elsewhere(
                offer.call_id, offer.agent_id, held_until, self._clock()
            )
        if engine.agent_call(offer.agent_id) != offer.call_id or (
            engine.agent_state(offer.agent_id) not in OFFER_STATES
        ):
            await self._claims.release(offer.agent_id)
            return []
        self._offers[(offer.call_id, offer.agent_id)] = offer
        ring_timeout = engine.queues[offer.queue_id].config.ring_timeout
        await self._port(
            self.telephony.ring_agent(
                offer.call_id, offer.agent_id, sip_user, ring_timeout, offer.attributes
            )
        )
        return []

    async def _event(self, event: AcdEvent) -> None:
        if isinstance(event, AgentStateChanged):
            await self._follow_agent(event)
        elif isinstance(event, QueueJoined | QueuePriorityChanged | CallbackRequested) or (
            isinstance(event, CallbackFailed) and not event.final
        ):
            await self._save_entry(event.call_id)
        elif isinstance(event, QueueLeft | CallbackCompleted | CallbackFailed):
            await self.store.remove_entry(event.queue_id, event.call_id)
        try:
            self._publish(event)
        except Exception:
            logger.exception("publishing %s failed", event.TYPE)

    async def _follow_agent(self, event: AgentStateChanged) -> None:
        """Keep the agent's claim and shared status in step with their state here."""
        agent_id = event.agent_id
        if event.state == AgentState.RINGING.value:
            queue_id = self.engine.agents[agent_id].queue_id or ""
            await self._claims.ringing(agent_id, self.engine.queues[queue_id].config.ring_timeout)
        else:
            await self._claims.follow(agent_id, event.state, event.call_id)
        if event.state in FREE_STATES and event.call_id is not None:
            self._offers.pop((event.call_id, agent_id), None)  # the offer ended unanswered
        agent = self.engine.agents.get(agent_id)
        if agent is not None and agent.state.value != event.state:
            return  # passed through within the input: the state it ended in is shared
        shared_now = self._shared_clock()
        wrap_up_until = None
        if event.state == AgentState.WRAP_UP.value:
            ends = self.engine.agents[agent_id].wrap_up_until
            if ends is not None:
                wrap_up_until = shared_now + (ends - self._clock())
        await self._share_status(
            AgentStatus(
                agent_id=agent_id,
                state=event.state,
                reason=event.reason,
                call_id=event.call_id if event.state not in FREE_STATES else None,
                since=shared_now,
                wrap_up_until=wrap_up_until,
                node=self._claims.node_id,
                commanded=is_command(event.state, event.previous_state),
            )
        )

    async def _save_entry(self, call_id: str) -> None:
        call = self.engine.calls.get(call_id)
        if call is None:
            return
        # Arrival on the shared clock, so that entries compare across nodes and restarts.
        arrival = self._shared_clock() - (self._clock() - call.anchor)
        await self.store.put_entry(
            QueueEntry(
                call_id=call_id,
                queue_id=call.queue_id,
                priority=call.priority,
                rank=self.engine.queues[call.queue_id].rank_of(call.priority, arrival),
                arrival=arrival,
                attributes=dict(call.attributes),
                callback_destination=call.callback_destination,
                callback_attempts=call.callback_attempts,
                node=self._claims.node_id,
                required_skills=call.required_skills,
            )
        )

    async def _port(self, operation: Awaitable[None]) -> None:
        # A failing telephony operation must not stop the ACD: the engine's leases and timers
        # bring every offer and caller back to a known state.
        try:
            await operation
        except Exception:
            logger.exception("telephony operation failed")
