"""Calls out through a trunk, the parts that differ from ringing an agent (sans-IO).

The `Originator` places both kinds of leg with one machinery; what is particular to a trunk is
here: the INVITE to ``sip:NUMBER@carrier`` sent to the carrier's address (RFC 3261 §8.1.1, no
registrar look-up), the answer to a 401/407 challenge (§22.2, §22.3; RFC 2617 / RFC 8760 client
side: qop=auth with cnonce and nc, MD5 or SHA-256), the outcome names of a call out, and the
events of either kind of leg.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

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
    "answer_for",
    "answered_event",
    "call_out_failure",
    "ended_event",
    "failed_event",
    "ringing_event",
    "trunk_request_uri",
    "with_credentials",
]

logger = logging.getLogger(__name__)

#: Times one request (the INVITE, or a BYE, re-INVITE... in the answered call) is re-sent with
#: credentials, stale nonces included: a carrier that keeps challenging must not keep the
#: request (and our CSeq) going forever.
MAX_AUTH_RETRIES = 3

#: §22.2 (401 from a UAS/registrar) and §22.3 (407 from a proxy): the challenge header and the
#: header that answers it.
_CHALLENGE_HEADERS = {
    401: ("WWW-Authenticate", "Authorization"),
    407: ("Proxy-Authenticate", "Proxy-Authorization"),
}


def trunk_request_uri(number: str, route: TrunkRoute) -> SipUri:
    """``sip:NUMBER@host[:port]`` (with ;transport=tcp over TCP): the number at the carrier."""
    params: dict[str, str | None] = {"transport": "tcp"} if route.transport == "tcp" else {}
    port = None if route.port == 5060 and route.transport == "udp" else route.port
    return SipUri(scheme="sip", user=number, host=route.host, port=port, params=params)


def answer_for(
    leg: OutboundLeg, request: SipRequest, response: SipResponse, *, cnonce: str
) -> tuple[str, str] | None:
    """The header answering `response` (a 401 or 407 to `request`, the INVITE or a request in
    the answered call), or None when the challenge must not be answered.

    §22.2: the request is sent once more with credentials. A challenge to a request that already
    carried our credentials for that realm means they were refused, unless it says stale=true
    (RFC 2617 §3.2.1: right password, expired nonce); even stale ones are answered at most
    `MAX_AUTH_RETRIES` times for one request.
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
    sent_nonce = _nonce_sent(request, answer_header, challenge.realm)
    retries = leg.auth_resent.pop(request.cseq.number, 0)
    refused = sent_nonce is not None and (not challenge.stale or sent_nonce == challenge.nonce)
    if refused or retries >= MAX_AUTH_RETRIES:
        logger.info(
            "leg %s: trunk %s refused our credentials for %s",
            leg.leg_id,
            route.trunk_id,
            request.method,
        )
        return None
    # RFC 2617 §3.2.2: nc counts the requests sent with one nonce; a carrier may challenge a
    # BYE with the nonce our INVITE already answered.
    last_nonce, last_count = leg.nonce_counts.get(challenge.realm, ("", 0))
    nc = last_count + 1 if last_nonce == challenge.nonce else 1
    try:
        credentials = answer_challenge(
            challenge,
            username=route.username,
            password=route.password,
            method=request.method,
            uri=request.uri,
            cnonce=cnonce,
            nc=nc,
        )
    except DigestError as exc:
        logger.info("leg %s: challenge not answered: %s", leg.leg_id, exc.detail)
        return None
    leg.nonce_counts[challenge.realm] = (challenge.nonce, nc)
    leg.auth_resent[request.cseq.number + 1] = retries + 1
    return answer_header, str(credentials)


def with_credentials(request: SipRequest, cseq: int, answer: tuple[str, str]) -> SipRequest:
    """`request` to send again with `answer` (from `answer_for`) as a new transaction: §22.2 /
    §8.1.3.5 keep Call-ID, From, To, Route and body, take the CSeq `cseq` and (a new
    transaction) a new branch: the Via is left out for the transaction layer to add."""
    answer_header, value = answer
    realm = _realm_of(value)
    headers = Headers()
    for name, old in request.headers.items():
        lower = name.lower()
        if lower == "via" or (lower == answer_header.lower() and _realm_of(old) == realm):
            continue  # a new branch; credentials for this realm are replaced
        if lower == "cseq":
            old = f"{cseq} {request.method}"
        headers.add(name, old)
    headers.add(answer_header, value)
    return SipRequest(method=request.method, uri=request.uri, headers=headers, body=request.body)


def _nonce_sent(request: SipRequest, answer_header: str, realm: str) -> str | None:
    """The nonce of the credentials for `realm` that `request` carried, if it carried any."""
    for value in request.headers.get_lines(answer_header):
        try:
            params = parse_auth_params(value)[1]
        except DigestError:
            continue
        if params.get("realm") == realm:
            return params.get("nonce", "")
    return None


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


def _leg_event(
    leg: OutboundLeg,
    agent_event: Callable[..., object],
    trunk_event: Callable[..., object],
    **fields: object,
) -> object:
    """`agent_event` for a leg to an agent's phone (named by its SIP user), `trunk_event` for a
    call out (named by trunk and number), with the same `fields` either way."""
    if leg.trunk is None:
        return agent_event(call_id=leg.call_id, leg_id=leg.leg_id, sip_user=leg.aor, **fields)
    return trunk_event(
        call_id=leg.call_id,
        leg_id=leg.leg_id,
        trunk_id=leg.trunk.trunk_id,
        number=leg.aor,
        **fields,
    )


def ringing_event(leg: OutboundLeg) -> object:
    return _leg_event(leg, CallRinging, TrunkLegRinging)


def answered_event(leg: OutboundLeg, codec: str, ring_seconds: float) -> object:
    return _leg_event(
        leg, AgentLegAnswered, TrunkLegAnswered, codec=codec, ring_seconds=ring_seconds
    )


def failed_event(
    leg: OutboundLeg,
    status: int | None,
    ring_seconds: float,
    origin: ResponseOrigin = ResponseOrigin.PEER,
) -> object:
    if leg.trunk is None:
        assert leg.failure is not None
        reason: object = leg.failure
    else:
        reason = leg.call_out_failure or call_out_failure(leg, status, origin)
    return _leg_event(
        leg, AgentLegFailed, TrunkLegFailed, reason=reason, status=status, ring_seconds=ring_seconds
    )


def ended_event(leg: OutboundLeg, cause: str, by: HangupParty, talk_seconds: float) -> object:
    return _leg_event(
        leg, AgentLegEnded, TrunkLegEnded, cause=cause, hangup_by=by, talk_seconds=talk_seconds
    )
