"""Calls placed from agents' softphones: feature codes, internal calls, calls out.

Telephony answers an INVITE it authenticated with an agent's SIP credentials (see
:mod:`telephony.sip.agent_auth`) and reports it as ``call.agent_started``; the call center runs
an :class:`AgentCallFlow` on it instead of the dial plan. What the agent dialled is tried in
this order:

1. a feature code (``queues.yaml`` ``feature_codes``: ``*45`` log in, ``*46`` log out, ``*47``
   pause with an optional reason code, ``*48`` unpause): the ACD applies it, the phone hears a
   short confirmation (or why not) and the call ends;
2. another agent's extension (their SIP user, or their agent id): that phone rings showing the
   caller's extension, and the two are bridged when it answers (an internal call: no queue);
3. a number matching one of ``dialplan.yaml``'s ``outbound`` rules: called out through that
   rule's trunk (or the default outbound one), presenting the agent's ``caller_id``;
4. anything else: "not recognised".

While on an internal call or a call out, both agents are ``on_call`` for the ACD (a direct call,
:mod:`acd.agent_state`), the called agent from the first ring, so no queue call is offered to
them. Each call ends with one ``agent.call_routed`` event saying which way it went and how it
ended.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import ClassVar, Literal, TypeVar

from acd.feature_codes import AgentCommandKind
from acd.service import FeatureCodeResult
from config.loader import Configuration
from config.settings import Agent
from cxos.call_flow import FlowServices, until_call_ends
from telephony.calls import AgentLeg, Call, CallOutFailure
from telephony.media.calls import CallEndedError

__all__ = ["AgentCallFlow", "AgentCallRouted"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

AgentCallRoute = Literal["feature_code", "agent", "external", "unrecognised"]

#: What the phone hears after a feature code, by command.
CONFIRMATIONS = {
    AgentCommandKind.LOGIN: "You are logged in.",
    AgentCommandKind.LOGOUT: "You are logged out.",
    AgentCommandKind.PAUSE: "You are paused.",
    AgentCommandKind.UNPAUSE: "You are available.",
}
INVALID_CODE = "That code is not valid."
NOT_NOW = "That is not possible now."
NOT_RECOGNISED = "The number you dialled is not recognised."
NOT_ANSWERED = "There is no answer."
NOT_CONNECTED = "The call could not be connected."
LANGUAGE = "en"


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentCallRouted:
    """A call placed from an agent's softphone was routed and has ended.

    `route`: ``feature_code``, ``agent`` (another agent's extension), ``external`` (out through a
    trunk) or ``unrecognised``. `outcome`: for a feature code the ACD's result (``done``,
    ``invalid``, ``refused``, ``unknown_agent``); for a call, ``answered`` or why it failed
    (``no_answer``, ``busy``, ``rejected``, ``unregistered``, ``unreachable``...); for anything
    else ``not_recognised``; ``abandoned`` when the agent hung up first. `target`: the agent
    id called, or the number sent out; empty otherwise."""

    TYPE: ClassVar[str] = "agent.call_routed"
    VERSION: ClassVar[int] = 1
    call_id: str
    agent_id: str
    dialled: str
    route: AgentCallRoute
    outcome: str
    target: str


class AgentCallFlow:
    """Runs one call placed from an agent's softphone until it ends."""

    def __init__(
        self,
        call: Call,
        *,
        configuration: Configuration,
        services: FlowServices,
        sip_user: str,
        dialled: str,
    ) -> None:
        self.call = call
        self.configuration = configuration
        self.services = services
        self.sip_user = sip_user
        self.dialled = dialled
        self.agent = _agent(configuration, sip_user)

    @property
    def call_id(self) -> str:
        return self.call.call_id

    async def run(self) -> None:
        route: AgentCallRoute = "unrecognised"
        outcome, target = "not_recognised", ""
        acd = self.services.acd
        try:
            codes = acd.feature_codes
            if codes is not None and codes.is_feature_code(self.dialled):
                route, outcome = "feature_code", await self._feature_code()
                return
            if self.agent is None:  # credentials without an agent: nothing else to offer
                await self._say(NOT_RECOGNISED)
                return
            callee = _agent(self.configuration, self.dialled)
            number, trunk = self._outbound(self.dialled)
            if callee is not None and callee.id != self.agent.id:
                route, target = "agent", callee.id
            elif number is not None:
                route, target = "external", number
            else:
                await self._say(NOT_RECOGNISED)
                return
            acd.direct_call_started(self.agent.id, self.call_id)
            try:
                if callee is not None and route == "agent":
                    outcome = await self._internal(callee)
                else:
                    outcome = await self._external(target, trunk)
            finally:
                acd.direct_call_ended(self.agent.id, self.call_id)
        finally:
            if not self.call.ended:
                self.call.hangup()
            logger.info(
                "call %s from %s: dialled %r, %s %s",
                self.call_id,
                self.sip_user,
                self.dialled,
                route,
                outcome,
            )
            self.services.publish(
                AgentCallRouted(
                    call_id=self.call_id,
                    agent_id=self.agent.id if self.agent is not None else "",
                    dialled=self.dialled,
                    route=route,
                    outcome=outcome,
                    target=target,
                )
            )

    # ------------------------------------------------------------------ the routes

    async def _feature_code(self) -> str:
        acd = self.services.acd
        codes = acd.feature_codes
        kind = None
        try:
            command = codes.command(self.sip_user, self.dialled) if codes is not None else None
            kind = command.kind if command is not None else None
        except ValueError:
            pass  # reported as invalid by the ACD below
        result = await acd.feature_code(self.sip_user, self.dialled)
        if result is FeatureCodeResult.DONE and kind is not None:
            await self._say(CONFIRMATIONS[kind])
        elif result is FeatureCodeResult.REFUSED:
            await self._say(NOT_NOW)
        else:
            await self._say(INVALID_CODE)
        return result.value

    async def _internal(self, callee: Agent) -> str:
        ring_timeout = self.configuration.server.sip.ring_timeout
        acd = self.services.acd
        # The callee is taken off the queues from the first ring, not from the answer: a queue
        # call offered meanwhile would ring the same phone a second time, and the agent could
        # pick up the wrong one (Asterisk's ringinuse=no). Both are on the same call, this one.
        acd.direct_call_started(callee.id, self.call_id)
        try:
            answered = await self._until_hangup(
                self.call.originate_agent(callee.sip_user, ring_timeout)
            )
            if isinstance(answered, AgentLeg):
                return await self._talk(answered)
        finally:
            acd.direct_call_ended(callee.id, self.call_id)
        if answered is None:
            return "abandoned"
        await self._say(NOT_ANSWERED)  # the callee is free again meanwhile: there is no call
        return answered.value

    async def _external(self, number: str, trunk: str | None) -> str:
        assert self.agent is not None
        ring_timeout = self.configuration.server.sip.ring_timeout
        answered = await self._until_hangup(
            self.call.originate_external(
                number,
                trunk,
                caller_id=self.agent.caller_id or "anonymous",
                ring_timeout=ring_timeout,
            )
        )
        if answered is None:
            return "abandoned"
        if isinstance(answered, CallOutFailure):
            await self._say(NOT_CONNECTED)
            return answered.value
        return await self._talk(answered)

    async def _talk(self, leg: AgentLeg) -> str:
        if self.call.ended:
            leg.hangup()
            return "abandoned"
        self.call.bridge(leg)
        await self.call.wait_ended()  # either side's hang-up ends both (telephony.calls)
        return "answered"

    # ------------------------------------------------------------------ helpers

    def _outbound(self, dialled: str) -> tuple[str | None, str | None]:
        for rule in self.configuration.dialplan.outbound:
            number = rule.number_for(dialled)
            if number is not None:
                return number, rule.trunk
        return None, None

    async def _say(self, text: str) -> None:
        """Play `text` (text-to-speech) to the agent's phone; a prompt that cannot be spoken
        is skipped (the call ends all the same)."""
        if self.call.ended:
            return
        try:
            path = await self.services.renderer.render(text, language=LANGUAGE)
            await self.call.media.play([str(path)])
        except CallEndedError:
            return
        except Exception as exc:  # text-to-speech missing or failing: say nothing
            logger.warning("call %s: prompt %r not played: %s", self.call_id, text, exc)

    async def _until_hangup(self, work: Awaitable[T]) -> T | None:
        """`work`'s result, or None when the agent hangs up first (then it is cancelled)."""
        return await until_call_ends(self.call, work)


def _agent(configuration: Configuration, name: str) -> Agent | None:
    """The agent whose SIP user (extension) or id is `name`."""
    return next((a for a in configuration.agents if name in (a.sip_user, a.id)), None)
