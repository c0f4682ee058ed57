"""Calls placed from agents' softphones: feature codes, internal calls, calls out.

Telephony answers an INVITE it authenticated with an agent's SIP credentials (see
:mod:`telephony.sip.agent_auth`) and reports it as ``call.agent_started``; the call center runs
an :class:`AgentCallFlow` on it instead of the dial plan. What the agent dialled is tried in
this order:

1. a feature code (``queues.yaml`` ``feature_codes``: ``*45`` log in, ``*46`` log out, ``*47``
   pause with an optional reason code, ``*48`` unpause): the ACD applies it, the phone hears a
   short confirmation (or why not: ``agents.yaml`` ``phone_prompts``, in the agent's language)
   and the call ends;
2. another agent's extension (their SIP user, or their agent id): that phone rings showing the
   caller's extension while the calling phone hears ringing (180: telephony answers it only
   when the colleague answers), and the two are bridged then (an internal call: no queue);
3. a number matching one of ``dialplan.yaml``'s ``outbound`` rules: called out through that
   rule's trunk (or the default outbound one), presenting the agent's ``caller_id``;
4. anything else: "not recognised".

While on an internal call or a call out, both agents are ``on_call`` for the ACD (a direct call,
:mod:`acd.agent_state`), the called agent from the first ring, so no queue call is offered to
them. Each call tells its way with ``agent.call_dialled`` (the route taken),
``agent.call_connected`` (the other side answered) and ``agent.call_routed`` (how it ended): the
events its CDR is folded from (:mod:`cxos.storage.cdr`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import ClassVar, Literal, TypeVar

from acd.feature_codes import AgentCommandKind, FeatureCodeMap
from acd.service import FeatureCodeResult
from config.ivr.schema import Prompt
from config.loader import Configuration
from config.settings import Agent
from cxos.call_flow import FlowServices, prompts_folder, until_call_ends
from ivr.prompts import prompt_files
from ivr.templates import prompt_parts
from telephony.calls import AgentLeg, Call, CallOutFailure, ExternalLeg
from telephony.media.calls import CallEndedError

__all__ = [
    "AgentCallConnected",
    "AgentCallDialled",
    "AgentCallFlow",
    "AgentCallRouted",
    "agent_call_route",
    "rings_a_colleague",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

AgentCallRoute = Literal["feature_code", "agent", "external", "unrecognised"]

#: The ``phone_prompts`` setting that confirms each feature code's command.
CONFIRMATIONS = {
    AgentCommandKind.LOGIN: "logged_in",
    AgentCommandKind.LOGOUT: "logged_out",
    AgentCommandKind.PAUSE: "paused",
    AgentCommandKind.UNPAUSE: "available",
}


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


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentCallDialled:
    """What an agent's softphone dialled was recognised, and is being acted on: a feature code,
    a colleague's phone ringing, a call out through a trunk starting, or nothing recognised.
    Opens the call's CDR segment, which `agent.call_routed` closes.

    `route` as in `agent.call_routed`; `target`: the agent id called, or the number sent out;
    empty otherwise."""

    TYPE: ClassVar[str] = "agent.call_dialled"
    VERSION: ClassVar[int] = 1
    call_id: str
    agent_id: str
    dialled: str
    route: AgentCallRoute
    target: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentCallConnected:
    """The colleague (`route` ``agent``) or the far end through a trunk (``external``) answered
    a call placed from an agent's softphone: the two are bridged, the conversation starts.
    `trunk_id`: the trunk of a call out; empty for an internal call."""

    TYPE: ClassVar[str] = "agent.call_connected"
    VERSION: ClassVar[int] = 1
    call_id: str
    agent_id: str
    route: AgentCallRoute
    target: str
    trunk_id: str


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

    @property
    def agent_id(self) -> str:
        return self.agent.id if self.agent is not None else ""

    async def run(self) -> None:
        route, target, callee, trunk = self._route()
        outcome = "not_recognised"
        self.services.publish(
            AgentCallDialled(
                call_id=self.call_id,
                agent_id=self.agent_id,
                dialled=self.dialled,
                route=route,
                target=target,
            )
        )
        try:
            if route == "feature_code":
                outcome = await self._feature_code()
            elif route == "unrecognised":
                await self._say("not_recognised")
            else:
                outcome = await self._direct_call(route, target, callee, trunk)
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
                    agent_id=self.agent_id,
                    dialled=self.dialled,
                    route=route,
                    outcome=outcome,
                    target=target,
                )
            )

    def _route(self) -> tuple[AgentCallRoute, str, Agent | None, str | None]:
        return agent_call_route(
            self.configuration, self.services.acd.feature_codes, self.sip_user, self.dialled
        )

    async def _direct_call(
        self, route: AgentCallRoute, target: str, callee: Agent | None, trunk: str | None
    ) -> str:
        """An internal call or a call out, the calling agent on a direct call meanwhile."""
        acd = self.services.acd
        acd.direct_call_started(self.agent_id, self.call_id)
        try:
            if callee is not None:
                return await self._internal(callee)
            return await self._external(target, trunk)
        finally:
            acd.direct_call_ended(self.agent_id, self.call_id)

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
            await self._say("not_now")
        else:
            await self._say("invalid_code")
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
                return await self._talk(answered, "agent", callee.id)
        finally:
            acd.direct_call_ended(callee.id, self.call_id)
        if answered is None:
            return "abandoned"
        # The calling phone heard ringing so far: answered now to hear why there is no call
        # (the callee is free again meanwhile).
        await self._answer()
        await self._say("no_answer")
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
            await self._say("not_connected")
            return answered.value
        return await self._talk(answered, "external", number)

    async def _talk(self, leg: AgentLeg, route: AgentCallRoute, target: str) -> str:
        if not await self._answer():
            leg.hangup()
            return "abandoned"
        self.call.bridge(leg)
        self.services.publish(
            AgentCallConnected(
                call_id=self.call_id,
                agent_id=self.agent_id,
                route=route,
                target=target,
                trunk_id=leg.trunk_id if isinstance(leg, ExternalLeg) else "",
            )
        )
        await self.call.wait_ended()  # either side's hang-up ends both (telephony.calls)
        return "answered"

    # ------------------------------------------------------------------ helpers

    async def _answer(self) -> bool:
        """Answer the calling phone if it is still ringing (a call to a colleague rings until
        they answer: `rings_a_colleague`); False when it has hung up."""
        if self.call.ended:
            return False
        try:
            await self.call.answer()
        except RuntimeError:  # it ended meanwhile
            return False
        return True

    async def _say(self, name: str) -> None:
        """Play the ``phone_prompts`` prompt `name` to the agent's phone, in the agent's
        language; a prompt that cannot be played is skipped (the call ends all the same)."""
        if self.call.ended:
            return
        prompts = self.configuration.phone_prompts
        prompt = getattr(prompts, name)
        assert isinstance(prompt, Prompt)
        language = (self.agent.language if self.agent is not None else None) or prompts.language
        try:
            parts = prompt_parts(
                (prompt,),
                language=language,
                default_language=prompts.language,
                variables={},
                folder=prompts_folder(self.configuration),
            )
            files = await prompt_files(parts, language=language, renderer=self.services.renderer)
            await self.call.media.play(files)
        except CallEndedError:
            return
        except Exception as exc:  # text-to-speech missing or failing: say nothing
            logger.warning("call %s: prompt %s not played: %s", self.call_id, name, exc)

    async def _until_hangup(self, work: Awaitable[T]) -> T | None:
        """`work`'s result, or None when the agent hangs up first (then it is cancelled)."""
        return await until_call_ends(self.call, work)


def agent_call_route(
    configuration: Configuration, codes: FeatureCodeMap | None, sip_user: str, dialled: str
) -> tuple[AgentCallRoute, str, Agent | None, str | None]:
    """Which way a number dialled from `sip_user`'s softphone goes: the route, its target (the
    agent id or number called), the colleague called and the trunk named for a call out."""
    if codes is not None and codes.is_feature_code(dialled):
        return "feature_code", "", None, None
    agent = _agent(configuration, sip_user)
    if agent is None:  # credentials without an agent: nothing else to offer
        return "unrecognised", "", None, None
    callee = _agent(configuration, dialled)
    if callee is not None and callee.id != agent.id:
        return "agent", callee.id, callee, None
    for rule in configuration.dialplan.outbound:
        number = rule.number_for(dialled)
        if number is not None:
            return "external", number, None, rule.trunk
    return "unrecognised", "", None, None


def rings_a_colleague(
    configuration: Configuration, codes: FeatureCodeMap | None, sip_user: str, dialled: str
) -> bool:
    """Whether a call from `sip_user`'s softphone rings a colleague's phone: then the calling
    phone hears ringing until the colleague answers, and is answered only then."""
    return agent_call_route(configuration, codes, sip_user, dialled)[0] == "agent"


def _agent(configuration: Configuration, name: str) -> Agent | None:
    """The agent whose SIP user (extension) or id is `name`."""
    return next((a for a in configuration.agents if name in (a.sip_user, a.id)), None)
