"""Whether a new INVITE becomes a call (RFC 3261 §8.2, §22): who may call in, and as what.

Sans-IO. A trunk's call is recognised by its source address (and its digest, with
``inbound_auth``: `TrunkAuthenticator`) and goes where the dial plan sends the dialled number; a
call from an address no trunk covers is an agent's softphone's once `AgentCallAuth` has
authenticated it, and is routed above by what the agent dialled. Anything else is refused: the
core answers with the `Refusal`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from config.settings import Dialplan, EntryPoint
from telephony.sip.agent_auth import AgentCallAuth, agent_call_announcements
from telephony.sip.errors import SipParseError
from telephony.sip.guard import GuardVerdict, SourceGuard
from telephony.sip.inbound import InboundLeg, dialled_number, remote_target_of
from telephony.sip.message import SipRequest
from telephony.sip.trunk_auth import TrunkAuthenticator
from telephony.trunks import TrunkTable

__all__ = ["Admitted", "Refusal", "admit_invite", "within_limits"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """The final response for an INVITE that does not become a call. `rejected`: reported as
    ``call.rejected`` (a challenge is not: the call may still come); `forbidden`: counted as an
    INVITE from nobody we know; `trying`: whether the 100 Trying sent on arrival may go out
    before it (an agent's phone is challenged without one: `TransactionLayer.withdraw_trying`)."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()
    events: tuple[object, ...] = ()
    rejected: bool = True
    forbidden: bool = False
    trying: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Admitted:
    """A new call: a trunk's (with its dial-plan `entry`) or an agent's (`agent`: SIP user)."""

    trunk_id: str
    did: str
    remote_target: str
    entry: EntryPoint | None = None
    agent: str | None = None

    def announcements(self, leg: InboundLeg) -> tuple[object, ...]:
        if self.entry is not None:
            return leg.announcements(self.entry)
        return agent_call_announcements(leg, self.agent or "")


def admit_invite(
    request: SipRequest,
    source: str,
    now: float,
    *,
    accepting: bool,
    trunks: TrunkTable,
    dialplan: Dialplan,
    trunk_auth: TrunkAuthenticator,
    agent_auth: AgentCallAuth | None,
) -> Admitted | Refusal:
    """The new call `request` (an INVITE out of any dialog from `source`) makes, or how it is
    refused. `accepting` is False while the node shuts down."""
    if not accepting:
        # §21.5.4: shutting down; another node may take the call.
        return Refusal(status=503, reason="Service Unavailable", headers=(("Retry-After", "30"),))
    did = dialled_number(request.uri)
    trunk = trunks.match(source)
    if trunk is None:
        verdict = agent_auth.check(request, source, now) if agent_auth is not None else None
        if verdict is None:
            return Refusal(status=403, reason="Forbidden", forbidden=True)
        if isinstance(verdict, str):
            return _with_target(
                request, Admitted(trunk_id="", did=did, remote_target="", agent=verdict)
            )
        return Refusal(
            status=verdict.status,
            reason=verdict.reason,
            headers=verdict.headers,
            events=verdict.events,
            rejected=False,
            trying=verdict.status != 401,
        )
    refused = trunk_auth.check(trunk, request, source, now)
    if refused is not None:
        return Refusal(
            status=refused.status,
            reason=refused.reason,
            headers=refused.headers,
            events=refused.events,
            rejected=False,
        )
    entry = dialplan.entry_for(did)
    if entry is None:
        return Refusal(status=404, reason="Not Found")
    return _with_target(
        request, Admitted(trunk_id=trunk.id, did=did, remote_target="", entry=entry)
    )


def _with_target(request: SipRequest, admitted: Admitted) -> Admitted | Refusal:
    try:
        return replace(admitted, remote_target=remote_target_of(request))
    except SipParseError:
        return Refusal(status=400, reason="Bad Contact or From")


def within_limits(
    guard: SourceGuard, trunks: TrunkTable, request: SipRequest, source: str, now: float
) -> bool:
    """Whether a request from `source` is under its rate and the source not blocked. A
    configured trunk's INVITEs count against the trunk's own rate, not the per-source one."""
    method = request.method
    trunk = trunks.limit(source) if method == "INVITE" else None
    return guard.check(source, method, now, trunk=trunk) is GuardVerdict.ALLOW
