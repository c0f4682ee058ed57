"""Calls out through a trunk, the parts that differ from ringing an agent (sans-IO).

The `Originator` places both kinds of leg with one machinery; what is particular to a trunk is
here: the INVITE to ``sip:NUMBER@carrier`` sent to the carrier's address (RFC 3261 §8.1.1, no
registrar look-up), the answer to a 401/407 challenge (§22.2, §22.3; RFC 2617 / RFC 8760 client
side: qop=auth with cnonce and nc, MD5 or SHA-256), the outcome names of a call out, and the
events of either kind of leg.
"""

from __future__ import annotations

import logging

from telephony.events import (
    AgentLegAnswered,
    AgentLegEnded,
    AgentLegFailed,
    CallOutFailure,
    CallRinging,
    HangupParty,
    TrunkLegAnswered,
    TrunkLegEnded,
    TrunkLegFailed,
    TrunkLegRinging,
)
from telephony.sip.digest import (
    Challenge,
    DigestError,
    answer_challenge,
    parse_auth_params,
)
from telephony.sip.headers import Headers
from telephony.sip.message import SipRequest, SipResponse
from telephony.sip.outbound import OutboundLeg, TrunkRoute
from telephony.sip.transaction_types import ResponseOrigin
from telephony.sip.uri import SipUri

__all__ = [
    "MAX_AUTH_RETRIES",
    "answered_event",
    "authenticated_retry",
    "call_out_failure",
    "ended_event",
    "failed_event",
    "ringing_event",
    "trunk_request_uri",
]

logger = logging.getLogger(__name__)

#: INVITEs re-sent with credentials for one leg, stale nonces included: a carrier that keeps
#: challenging must not keep the call (and our CSeq) going forever.
MAX_AUTH_RETRIES = 3

#: §22.2 (401 from a UAS/registrar) and §22.3 (407 from a proxy): the challenge header and the
#: header that answers it.
_CHALLENGE_HEADERS = {
    401: ("WWW-Authenticate", "Authorization"),
    407: ("Proxy-Authenticate", "Proxy-Authorization"),
}


def trunk_request_uri(number: str, route: TrunkRoute) -> SipUri:
    """``sip:NUMBER@host:port`` (with ;transport=tcp over TCP): the number at the carrier."""
    params: dict[str, str | None] = {"transport": "tcp"} if route.transport == "tcp" else {}
    port = None if route.port == 5060 and route.transport == "udp" else route.port
    return SipUri(scheme="sip", user=number, host=route.host, port=port, params=params)


def authenticated_retry(
    leg: OutboundLeg, invite: SipRequest, response: SipResponse, cnonce: str
) -> SipRequest | None:
    """The INVITE to re-send with credentials answering `response` (401 or 407), or None when
    the challenge must not be answered (the call then fails with ``auth_failed``).

    §22.2: the new request has the same Call-ID, From and To, a CSeq one higher and (being a new
    transaction) a new branch: the Via is left out for the transaction layer to add. A challenge
    for a realm or nonce already answered means the credentials were refused, unless it says
    stale=true (RFC 2617 §3.2.1: right password, expired nonce).
    """
    route = leg.trunk
    names = _CHALLENGE_HEADERS.get(response.status)
    if route is None or names is None:
        return None
    if route.username is None or route.password is None:
        logger.info(
            "leg %s: trunk %s asks for credentials, none configured", leg.leg_id, route.trunk_id
        )
        return None
    challenge_header, answer_header = names
    challenge = _usable_challenge(response.headers.get_all(challenge_header), route.realm)
    if challenge is None:
        logger.info("leg %s: no usable challenge from trunk %s", leg.leg_id, route.trunk_id)
        return None
    repeated = challenge.nonce in leg.answered_nonces or challenge.realm in leg.answered_realms
    if (repeated and not challenge.stale) or leg.auth_retries >= MAX_AUTH_RETRIES:
        logger.info("leg %s: trunk %s refused our credentials", leg.leg_id, route.trunk_id)
        return None
    try:
        credentials = answer_challenge(
            challenge,
            username=route.username,
            password=route.password,
            method="INVITE",
            uri=invite.uri,
            cnonce=cnonce,
            nc=1,  # a fresh nonce: this is the first request sent with it
        )
    except DigestError as exc:
        logger.info("leg %s: challenge not answered: %s", leg.leg_id, exc.detail)
        return None
    leg.answered_nonces.add(challenge.nonce)
    leg.answered_realms.add(challenge.realm)
    leg.auth_retries += 1
    headers = Headers()
    for name, value in invite.headers.items():
        lower = name.lower()
        if lower == "via" or (
            lower == answer_header.lower() and _realm_of(value) == challenge.realm
        ):
            continue  # a new branch; credentials for this realm are replaced
        if lower == "cseq":
            value = f"{invite.cseq.number + 1} INVITE"
        headers.add(name, value)
    headers.add(answer_header, str(credentials))
    return SipRequest(method="INVITE", uri=invite.uri, headers=headers, body=invite.body)


def _usable_challenge(values: list[str], realm: str | None) -> Challenge | None:
    """RFC 8760 §2.4: the topmost Digest challenge with an algorithm we implement (and, when a
    realm is configured, for that realm)."""
    for value in values:
        try:
            challenge = Challenge.parse(value)
        except DigestError:
            continue
        if realm is None or challenge.realm == realm:
            return challenge
    return None


def _realm_of(credentials: str) -> str | None:
    try:
        return parse_auth_params(credentials)[1].get("realm")
    except DigestError:
        return None


def call_out_failure(
    leg: OutboundLeg, status: int | None, origin: ResponseOrigin
) -> CallOutFailure:
    """What a final non-2xx (or no answer at all) means for a call out."""
    if leg.auth_failed:
        return CallOutFailure.AUTH_FAILED
    if status is None:
        # The ring timeout: a carrier that never sent anything back is unreachable.
        return CallOutFailure.NO_ANSWER if leg.heard_back else CallOutFailure.UNREACHABLE
    if origin is not ResponseOrigin.PEER or status == 503:
        # §8.1.3.1: a transport error is a local 503; timer B a local 408.
        return CallOutFailure.UNREACHABLE
    if status in (486, 600):
        return CallOutFailure.BUSY
    if status in (408, 480, 487):
        return CallOutFailure.NO_ANSWER
    if status in (401, 407):
        return CallOutFailure.AUTH_FAILED
    return CallOutFailure.REJECTED


# --- the events of a leg, by its kind ------------------------------------------------------------


def ringing_event(leg: OutboundLeg) -> object:
    if leg.trunk is None:
        return CallRinging(call_id=leg.call_id, leg_id=leg.leg_id, sip_user=leg.aor)
    return TrunkLegRinging(
        call_id=leg.call_id, leg_id=leg.leg_id, trunk_id=leg.trunk.trunk_id, number=leg.aor
    )


def answered_event(leg: OutboundLeg, codec: str, ring_seconds: float) -> object:
    if leg.trunk is None:
        return AgentLegAnswered(
            call_id=leg.call_id,
            leg_id=leg.leg_id,
            sip_user=leg.aor,
            codec=codec,
            ring_seconds=ring_seconds,
        )
    return TrunkLegAnswered(
        call_id=leg.call_id,
        leg_id=leg.leg_id,
        trunk_id=leg.trunk.trunk_id,
        number=leg.aor,
        codec=codec,
        ring_seconds=ring_seconds,
    )


def failed_event(
    leg: OutboundLeg,
    status: int | None,
    ring_seconds: float,
    origin: ResponseOrigin = ResponseOrigin.PEER,
) -> object:
    if leg.trunk is None:
        assert leg.failure is not None
        return AgentLegFailed(
            call_id=leg.call_id,
            leg_id=leg.leg_id,
            sip_user=leg.aor,
            reason=leg.failure,
            status=status,
            ring_seconds=ring_seconds,
        )
    reason = leg.call_out_failure or call_out_failure(leg, status, origin)
    return TrunkLegFailed(
        call_id=leg.call_id,
        leg_id=leg.leg_id,
        trunk_id=leg.trunk.trunk_id,
        number=leg.aor,
        reason=reason,
        status=status,
        ring_seconds=ring_seconds,
    )


def ended_event(leg: OutboundLeg, cause: str, by: HangupParty, talk_seconds: float) -> object:
    if leg.trunk is None:
        return AgentLegEnded(
            call_id=leg.call_id,
            leg_id=leg.leg_id,
            sip_user=leg.aor,
            cause=cause,
            hangup_by=by,
            talk_seconds=talk_seconds,
        )
    return TrunkLegEnded(
        call_id=leg.call_id,
        leg_id=leg.leg_id,
        trunk_id=leg.trunk.trunk_id,
        number=leg.aor,
        cause=cause,
        hangup_by=by,
        talk_seconds=talk_seconds,
    )
