"""The call API the upper layers (IVR, ACD) use: a caller's `Call` and the `AgentLeg`s it rings.

A `Call` wraps the caller's signalling leg and its `MediaCall`: prompts, digits, the speech tap
and recording are the media's; ringing an agent (`originate_agent`), connecting the two
(`bridge`), hold and transfer go through the signalling too. Every call the server answers gets
one; `TelephonyService.call(call_id)` returns it. An `AgentLeg` is a call the server placed to an
agent's softphone and that the agent answered: its own media leg, which `bridge` connects to the
caller's (media flows through the server, B2BUA with media relay).

Hangups: when the caller hangs up, a bridged agent leg is hung up; when the agent hangs up, the
caller is hung up too unless `Call.on_agent_hangup` is set (then it decides: wrap up, survey...).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from telephony.events import CallHeld, CallResumed, CallTransferred, RingFailure, TransferKind
from telephony.media.calls import MediaCall, PromptSource
from telephony.media.collect import CollectResult
from telephony.media.events import PlaybackFinished
from telephony.media.tap import Pcm
from telephony.rtp.audio import RecordingLayout

if TYPE_CHECKING:
    from telephony.call_control import CallControl

__all__ = ["AgentLeg", "Call", "RingFailure"]

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

    def __repr__(self) -> str:
        return f"AgentLeg({self.leg_id!r}, sip_user={self.sip_user!r})"


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
        self._control = control
        self._ended = asyncio.Event()

    # ------------------------------------------------------------------ the call itself

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    async def wait_ended(self) -> None:
        await self._ended.wait()

    async def answer(self) -> None:
        """The caller's call is answered before it reaches the upper layers (200 with SDP,
        acknowledged); kept so that they can state it. Raises when the call has ended."""
        if self.ended:
            raise RuntimeError(f"call {self.call_id} has ended")

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
        if self.on_hangup is not None:
            self.on_hangup()

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
        old = self.unbridge()
        if old is not None:
            old.hangup()
        self.bridge(outcome)
        self._transferred(kind, sip_user, previous, outcome, "")
        return outcome

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

    def _hold_leg(self) -> str:
        return self.agent.leg_id if self.agent is not None else self.call_id

    def __repr__(self) -> str:
        return f"Call({self.call_id!r}, agent={self.agent!r})"


#: What runs a call once answered (an IVR, the ACD's queue): returns when done with it.
CallApiHandler = Callable[[Call], Awaitable[None]]
