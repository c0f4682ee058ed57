"""The call API the upper layers (IVR, ACD) use: a caller's `Call`, the `AgentLeg`s it rings and
the `ExternalLeg`s it calls out through a trunk.

A `Call` wraps the caller's signalling leg and its `MediaCall`: prompts, digits, the speech tap
and recording are the media's; ringing an agent (`originate_agent`), connecting the two
(`bridge`), hold and transfer go through the signalling too. Every call the server answers gets
one; `TelephonyService.call(call_id)` returns it. An `AgentLeg` is a call the server placed to an
agent's softphone and that the agent answered: its own media leg, which `bridge` connects to the
caller's (media flows through the server, B2BUA with media relay).

An `ExternalLeg` (`originate_external`) is a number called out through a trunk and answered; it
is bridged like an agent leg (`transfer_out` does both for an IVR's external transfer). A call out
with no caller behind it (`TelephonyService.call_out`, for callbacks) is a `Call` of its own.

Hangups: when the caller hangs up, a bridged agent leg is hung up; when the agent hangs up, the
caller is hung up too unless `Call.on_agent_hangup` is set (then it decides: wrap up, survey...).

Supervisors (`Call.monitor`): a supervisor's phone is rung like an agent's, and once answered
its leg joins the caller and the agent in a mode (listen, whisper, barge; see
`telephony.media.mix`) that `set_monitor_mode` changes. A supervisor monitors the caller's call,
not one agent: when `transfer_to` or `transfer_out` moves the caller to another phone, the
supervisor stays on, in the same mode, with whoever answered (``call.transferred`` names the new
leg; no ``call.monitor_*`` event, since nothing changed for the supervisor). Monitoring ends when
the supervisor hangs up, when the caller's call ends or the agent leaves it otherwise (the
supervisor's phone gets BYE), or with `end_monitor`; ``call.monitor_*`` events report each step.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from telephony.events import (
    CallHeld,
    CallOutFailure,
    CallResumed,
    CallTransferred,
    MonitorEnd,
    MonitorEnded,
    MonitorFailed,
    MonitorFailure,
    MonitorModeChanged,
    MonitorStarted,
    RingFailure,
    TransferKind,
)
from telephony.media.calls import CallEndedError, MediaCall, PromptSource
from telephony.media.collect import CollectResult
from telephony.media.engine import MediaStateError, UnknownLegError
from telephony.media.events import PlaybackFinished
from telephony.media.mix import MonitorMode
from telephony.media.tap import Pcm
from telephony.rtp.audio import RecordingLayout

if TYPE_CHECKING:
    from telephony.call_control import CallControl

__all__ = [
    "AgentLeg",
    "Call",
    "CallOutFailure",
    "ExternalLeg",
    "MonitorError",
    "MonitorMode",
    "RingFailure",
]

logger = logging.getLogger(__name__)

#: Seconds an agent's phone rings when the caller of `originate_agent` gives no timeout.
DEFAULT_RING_TIMEOUT = 30.0


class AgentLeg:
    """An answered call to an agent's softphone."""

    def __init__(
        self, control: CallControl, *, leg_id: str, sip_user: str, call_id: str, media: MediaCall
    ) -> None:
        self.leg_id = leg_id
        self.sip_user = sip_user
        self.call_id = call_id  # the call it serves
        self.media = media
        #: The caller's call this leg is bridged to, if any.
        self.call: Call | None = None
        #: Called once when the leg ends (a supervisor's leg tells the call it monitors).
        self.on_ended: Callable[[], None] | None = None
        self._control = control
        self._ended = asyncio.Event()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    async def wait_ended(self) -> None:
        await self._ended.wait()

    def hangup(self) -> None:
        """End the agent's call (BYE)."""
        if not self.ended:
            self._control.hangup(self.leg_id)

    def hold(self, held: bool = True) -> None:
        """re-INVITE the agent's phone with a=sendonly (or a=sendrecv to resume), RFC 3264 §8.4."""
        if not self.ended:
            self._control.hold_leg(self.leg_id, held)

    def mark_ended(self) -> None:
        self._ended.set()
        on_ended, self.on_ended = self.on_ended, None
        if on_ended is not None:
            on_ended()

    def __repr__(self) -> str:
        return f"AgentLeg({self.leg_id!r}, sip_user={self.sip_user!r})"


class ExternalLeg(AgentLeg):
    """An answered call out through a trunk to `number` (`sip_user` holds the same number)."""

    def __init__(
        self,
        control: CallControl,
        *,
        leg_id: str,
        number: str,
        trunk_id: str,
        call_id: str,
        media: MediaCall,
    ) -> None:
        super().__init__(control, leg_id=leg_id, sip_user=number, call_id=call_id, media=media)
        self.number = number
        self.trunk_id = trunk_id

    def __repr__(self) -> str:
        return f"ExternalLeg({self.leg_id!r}, number={self.number!r}, trunk={self.trunk_id!r})"


class MonitorError(RuntimeError):
    """A supervisor cannot join the call, or change mode, now. `reason`: ``not_bridged`` (no
    agent on the call), ``monitored`` (a supervisor is on it or being rung), ``own_agent`` (the
    phone to ring is the agent's own), ``unregistered`` (that phone has no live registration),
    ``not_monitored`` (no supervisor whose mode could change)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Call:
    """A caller's call in progress, as the IVR and the ACD drive it."""

    def __init__(
        self,
        control: CallControl,
        *,
        call_id: str,
        media: MediaCall,
        caller_id: str = "",
        caller_name: str = "",
    ) -> None:
        self.call_id = call_id
        self.media = media
        self.caller_id = caller_id
        self.caller_name = caller_name
        #: The agent leg the caller is bridged to, if any.
        self.agent: AgentLeg | None = None
        #: Called when the bridged agent hangs up; None hangs the caller up as well.
        self.on_agent_hangup: Callable[[AgentLeg], None] | None = None
        #: Called once when the caller's side ends (they hung up, or we did).
        self.on_hangup: Callable[[], None] | None = None
        self.held = False
        #: The supervisor's leg joined to the call (`monitor`) and its mode, if any.
        self.monitor_leg: AgentLeg | None = None
        self.monitor_mode: MonitorMode | None = None
        self._monitor_task: asyncio.Task[AgentLeg | None] | None = None
        self._monitor_since = 0.0
        #: Sends the 200 of a call that rings until the upper layer answers it
        #: (`TelephonyService.ring_first`); None once answered.
        self.answer_later: Callable[[], None] | None = None
        self._control = control
        self._ended = asyncio.Event()

    # ------------------------------------------------------------------ the call itself

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    async def wait_ended(self) -> None:
        await self._ended.wait()

    async def answer(self) -> None:
        """Answer the caller's call (200 with SDP). Most calls are answered before they reach
        the upper layers, and this only states it; one that rings first is answered now.
        Raises when the call has ended."""
        if self.ended:
            raise RuntimeError(f"call {self.call_id} has ended")
        answer, self.answer_later = self.answer_later, None
        if answer is not None:
            answer()

    def hangup(self) -> None:
        """End the caller's call (BYE); a bridged agent leg is hung up with it."""
        if not self.ended:
            self._control.hangup(self.call_id)

    def mark_ended(self) -> None:
        if self.ended:
            return
        self._ended.set()
        agent, self.agent = self.agent, None
        if agent is not None:
            agent.call = None
            agent.hangup()
        self._end_monitor("call_ended")
        # Dropped once called: the callbacks are usually bound methods of whoever holds this
        # call, and keeping them would leave that pair in a reference cycle after the call.
        on_hangup, self.on_hangup, self.on_agent_hangup = self.on_hangup, None, None
        if on_hangup is not None:
            on_hangup()

    # ------------------------------------------------------------------ media (MediaCall)

    async def play(
        self, prompts: Sequence[PromptSource], *, barge_in: bool = False
    ) -> PlaybackFinished:
        return await self.media.play(prompts, barge_in=barge_in)

    async def collect_digits(
        self,
        max_digits: int,
        *,
        terminator: str | None = "#",
        first_timeout: float = 5.0,
        inter_digit_timeout: float = 3.0,
    ) -> CollectResult:
        return await self.media.collect_digits(
            max_digits,
            terminator=terminator,
            first_timeout=first_timeout,
            inter_digit_timeout=inter_digit_timeout,
        )

    def listen(self, *, capacity: int = 50) -> AsyncIterator[Pcm]:
        return self.media.listen(capacity=capacity)

    async def record(
        self, path: str | os.PathLike[str], *, layout: RecordingLayout = RecordingLayout.STEREO
    ) -> str:
        return await self.media.record(path, layout=layout)

    # ------------------------------------------------------------------ agents

    async def originate_agent(
        self, sip_user: str, ring_timeout: float = DEFAULT_RING_TIMEOUT
    ) -> AgentLeg | RingFailure:
        """Ring the agent registered as `sip_user` for this call, showing the caller's number.

        Returns the answered leg (not bridged yet: see `bridge`) or why it did not answer.
        Cancelling the await stops the ringing (CANCEL).
        """
        return await self._control.originate(
            sip_user,
            call_id=self.call_id,
            ring_timeout=ring_timeout,
            caller_id=self.caller_id,
            caller_name=self.caller_name,
        )

    async def originate_external(
        self,
        number: str,
        trunk: str | None = None,
        *,
        caller_id: str | None = None,
        ring_timeout: float = DEFAULT_RING_TIMEOUT,
    ) -> ExternalLeg | CallOutFailure:
        """Call `number` out through `trunk` (None: the default outbound trunk) for this call,
        presenting `caller_id` (None: the caller's number; a trunk's own ``caller_id`` setting
        wins over both). Returns the answered leg (not bridged: see `bridge`) or why it did not
        connect. Cancelling the await stops the call (CANCEL)."""
        return await self._control.originate_external(
            number,
            call_id=self.call_id,
            ring_timeout=ring_timeout,
            trunk=trunk,
            caller_id=self.caller_id if caller_id is None else caller_id,
            caller_name=self.caller_name if caller_id is None else "",
        )

    async def transfer_out(
        self,
        number: str,
        trunk: str | None = None,
        *,
        ring_timeout: float = DEFAULT_RING_TIMEOUT,
    ) -> ExternalLeg | CallOutFailure:
        """Move the caller to an external number: call it out through the trunk, bridge on
        answer (an agent the caller was with is hung up), report ``call.transferred``. On
        failure the caller stays where they were."""
        previous = self.agent
        outcome = await self.originate_external(number, trunk, ring_timeout=ring_timeout)
        if isinstance(outcome, ExternalLeg) and self.ended:
            outcome.hangup()  # the caller left while the number answered
            outcome = CallOutFailure.NO_ANSWER
        if isinstance(outcome, CallOutFailure):
            self._transferred("server", number, previous, None, outcome.value)
            return outcome
        self._swap_agent(outcome)
        self._transferred("server", number, previous, outcome, "")
        return outcome

    def bridge(self, agent: AgentLeg) -> None:
        """Connect the caller and the agent: audio both ways through the server."""
        if self.agent is not None:
            raise RuntimeError(f"call {self.call_id} is already bridged to {self.agent.leg_id}")
        self.media.stop_playback()
        self.media.bridge(agent.media)
        self.agent = agent
        agent.call = self

    def unbridge(self) -> AgentLeg | None:
        """Disconnect the agent (left up); returns it."""
        agent, self.agent = self.agent, None
        if agent is not None:
            self._end_monitor("agent_left")
            agent.call = None
            self.media.unbridge()
        return agent

    async def hold(self, music: PromptSource | None = None) -> None:
        """Put the caller on hold: no audio across the bridge, `music` looped to the caller;
        the agent's phone is told with a=sendonly."""
        if self.held:
            return
        await self.media.hold(music)
        self.held = True
        if self.agent is not None:
            self.agent.hold(True)
        self._control.publish(
            CallHeld(call_id=self.call_id, leg_id=self._hold_leg(), held_by="server")
        )

    def resume(self) -> None:
        if not self.held:
            return
        self.media.resume()
        self.held = False
        if self.agent is not None:
            self.agent.hold(False)
        self._control.publish(
            CallResumed(call_id=self.call_id, leg_id=self._hold_leg(), held_by="server")
        )

    async def transfer_to(
        self,
        sip_user: str,
        ring_timeout: float = DEFAULT_RING_TIMEOUT,
        *,
        kind: TransferKind = "server",
        before_release: Callable[[int], None] | None = None,
    ) -> AgentLeg | RingFailure:
        """Move the caller to another agent: ring them, bridge on answer, hang up the agent the
        caller was with. On failure the caller stays where they were.

        `before_release` hears the outcome as a SIP status (200, or 503 on failure) before the
        old agent is released: the final NOTIFY of a REFER (RFC 3515 §2.4.5).
        """
        previous = self.agent
        outcome = await self.originate_agent(sip_user, ring_timeout)
        if isinstance(outcome, RingFailure) or self.ended:
            if isinstance(outcome, AgentLeg):
                outcome.hangup()  # the caller left while the new agent answered
                outcome = RingFailure.NO_ANSWER
            if before_release is not None:
                before_release(503)
            self._transferred(kind, sip_user, previous, None, outcome.value)
            return outcome
        if before_release is not None:
            before_release(200)
        self._swap_agent(outcome)
        self._transferred(kind, sip_user, previous, outcome, "")
        return outcome

    def _swap_agent(self, new: AgentLeg) -> None:
        """Bridge the caller to `new` instead of the agent they were with (hung up). A
        supervisor on the call follows the caller to `new`, in the same mode."""
        supervisor, mode = self.monitor_leg, self.monitor_mode
        # Out of the mix before the old agent leaves, so that `unbridge` keeps the supervisor's
        # phone up (it ends monitoring, "agent_left", only for a supervisor still on the call).
        self.monitor_leg = self.monitor_mode = None
        if supervisor is not None:
            supervisor.media.end_monitor()
        old = self.unbridge()
        if old is not None:
            old.hangup()
        self.bridge(new)
        if supervisor is None or mode is None:
            return
        self.monitor_leg, self.monitor_mode = supervisor, mode
        try:
            supervisor.media.monitor(new.media, mode)
        except (CallEndedError, MediaStateError, UnknownLegError) as exc:
            # The supervisor's or the new agent's leg ended as the caller moved.
            logger.info("call %s: supervisor does not follow the transfer: %s", self.call_id, exc)
            self._end_monitor("agent_left")

    def _transferred(
        self,
        kind: TransferKind,
        target: str,
        previous: AgentLeg | None,
        new: AgentLeg | None,
        reason: str,
    ) -> None:
        self._control.publish(
            CallTransferred(
                call_id=self.call_id,
                kind=kind,
                target=target,
                from_leg_id=previous.leg_id if previous is not None else None,
                to_leg_id=new.leg_id if new is not None else None,
                succeeded=new is not None,
                reason=reason,
            )
        )

    # ------------------------------------------------------------------ supervisors

    def monitor(
        self, sip_user: str, mode: MonitorMode, ring_timeout: float = DEFAULT_RING_TIMEOUT
    ) -> asyncio.Task[AgentLeg | None]:
        """Ring the supervisor's phone registered as `sip_user`; once it answers, join it to the
        caller and the agent in `mode`. Raises `MonitorError` when that cannot start now.

        The returned task ends with the supervisor's leg once joined (``call.monitor_started``),
        or None when the phone did not answer or the call ended or lost its agent meanwhile
        (``call.monitor_failed`` says which)."""
        agent = self.agent
        if self.ended or agent is None:
            raise MonitorError("not_bridged", f"call {self.call_id} is not connected to an agent")
        if self.monitor_leg is not None or self._monitor_task is not None:
            raise MonitorError("monitored", f"call {self.call_id} already has a supervisor")
        if sip_user == agent.sip_user:
            raise MonitorError("own_agent", f"{sip_user} is the phone of the call's agent")
        if not self._control.reachable(sip_user):
            raise MonitorError("unregistered", f"no phone is registered as {sip_user}")
        mode = MonitorMode(mode)
        task = asyncio.get_running_loop().create_task(
            self._join_supervisor(sip_user, mode, ring_timeout)
        )
        self._monitor_task = task
        task.add_done_callback(_log_monitor_failure)
        return task

    @property
    def monitoring(self) -> bool:
        """Whether a supervisor is on the call, or their phone is being rung for it."""
        return self.monitor_leg is not None or self._monitor_task is not None

    def set_monitor_mode(self, mode: MonitorMode) -> None:
        """Move the supervisor on the call to another mode (listen, whisper, barge)."""
        leg, previous = self.monitor_leg, self.monitor_mode
        if leg is None or previous is None:
            raise MonitorError("not_monitored", f"call {self.call_id} has no supervisor on it")
        mode = MonitorMode(mode)
        if mode == previous:
            return
        leg.media.set_monitor_mode(mode)
        self.monitor_mode = mode
        self._control.publish(
            MonitorModeChanged(
                call_id=self.call_id, leg_id=leg.leg_id, mode=mode, previous_mode=previous
            )
        )

    def end_monitor(self) -> None:
        """Take the supervisor off the call (their phone gets BYE); stop ringing it if it rings."""
        task = self._monitor_task
        if task is not None:
            task.cancel()
        self._end_monitor("server")

    async def _join_supervisor(
        self, sip_user: str, mode: MonitorMode, ring_timeout: float
    ) -> AgentLeg | None:
        try:
            outcome = await self._ring_supervisor(sip_user, ring_timeout)
            failure: MonitorFailure | None = None
            if isinstance(outcome, RingFailure):
                failure = outcome.value
            elif outcome is None or self.ended:
                failure = "call_ended"
            elif self.agent is None:
                failure = "agent_left"
            else:
                try:
                    outcome.media.monitor(self.agent.media, mode)
                except (CallEndedError, MediaStateError, UnknownLegError) as exc:
                    # The supervisor's phone hung up as it answered, or the agent's leg ended.
                    logger.info("call %s: supervisor not joined: %s", self.call_id, exc)
                    failure = "agent_left" if self.agent.ended else "no_answer"
            if failure is not None:
                if isinstance(outcome, AgentLeg):
                    outcome.hangup()
                self._control.publish(
                    MonitorFailed(
                        call_id=self.call_id, sip_user=sip_user, mode=mode, reason=failure
                    )
                )
                return None
            assert isinstance(outcome, AgentLeg)
            self.monitor_leg, self.monitor_mode = outcome, mode
            self._monitor_since = self._control.clock()
            outcome.on_ended = self._supervisor_left
            self._control.publish(
                MonitorStarted(
                    call_id=self.call_id, leg_id=outcome.leg_id, sip_user=sip_user, mode=mode
                )
            )
            if outcome.ended:
                self._end_monitor("supervisor")
            return outcome
        finally:
            self._monitor_task = None

    async def _ring_supervisor(
        self, sip_user: str, ring_timeout: float
    ) -> AgentLeg | RingFailure | None:
        """The supervisor's answered leg or why it failed; None when the call ended first (the
        ringing is then cancelled: CANCEL)."""
        ring = asyncio.ensure_future(self.originate_agent(sip_user, ring_timeout))
        ended = asyncio.ensure_future(self._ended.wait())
        try:
            await asyncio.wait((ring, ended), return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            if not ring.done():
                ring.cancel()
        if not ring.done():
            await asyncio.wait((ring,))
        return None if ring.cancelled() else ring.result()

    def _supervisor_left(self) -> None:
        self._end_monitor("supervisor")

    def _end_monitor(self, reason: MonitorEnd) -> None:
        leg, self.monitor_leg = self.monitor_leg, None
        mode, self.monitor_mode = self.monitor_mode, None
        if leg is None or mode is None:
            return
        leg.on_ended = None
        leg.media.end_monitor()
        self._control.publish(
            MonitorEnded(
                call_id=self.call_id,
                leg_id=leg.leg_id,
                sip_user=leg.sip_user,
                mode=mode,
                reason=reason,
                monitor_seconds=max(0.0, self._control.clock() - self._monitor_since),
            )
        )
        leg.hangup()

    def _hold_leg(self) -> str:
        return self.agent.leg_id if self.agent is not None else self.call_id

    def __repr__(self) -> str:
        return f"Call({self.call_id!r}, agent={self.agent!r})"


def _log_monitor_failure(task: asyncio.Task[AgentLeg | None]) -> None:
    # Nobody may await the task (the API answered when the phone started ringing).
    if not task.cancelled() and task.exception() is not None:
        logger.error("joining a supervisor failed", exc_info=task.exception())


#: What runs a call once answered (an IVR, the ACD's queue): returns when done with it.
CallApiHandler = Callable[[Call], Awaitable[None]]
