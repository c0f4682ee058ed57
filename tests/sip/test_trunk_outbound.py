"""Calls out through a trunk (SipCore.outbound.originate_trunk), in memory with a fake clock.

The carrier is written out by hand: it reads what the core sends to its address and answers as a
carrier would, challenges included. Digest responses are checked against a computation written
here from RFC 2617 §3.2.2.1 with hashlib, not with the code under test.
"""

from __future__ import annotations

import hashlib

import pytest

from config.settings import Dialplan, EntryPoint, Trunk, TrunkAuth
from telephony.events import (
    CallOutFailure,
    TrunkLegAnswered,
    TrunkLegEnded,
    TrunkLegFailed,
    TrunkLegRinging,
)
from telephony.sip.core_types import IncomingCall
from telephony.sip.digest import Credentials, parse_auth_params
from telephony.sip.message import SipRequest, SipResponse, build_response
from telephony.sip.outbound import OutboundState, TrunkRoute
from telephony.sip.registrar_events import AuthenticationFailed
from telephony.trunks import TrunkTable
from tests.sip.agent_phone import LOCAL, PHONE_SDP, SERVER_OFFER, Node, ok_to

CARRIER = ("198.51.100.7", 5060)
RING = 20.0
ROUTE = TrunkRoute(
    trunk_id="carrier",
    host="sip.carrier.example",
    port=5060,
    destination=CARRIER,
    username="acct42",
    password="s3cret-trunk",
    max_calls=2,
)


@pytest.fixture
def node() -> Node:
    node = Node()
    node.core.default_local = LOCAL
    return node


def call_out(node: Node, route: TrunkRoute = ROUTE, number: str = "0049301234567") -> str:
    leg_id = node.core.outbound.originate_trunk(
        number,
        route,
        call_id="caller-1",
        offer=SERVER_OFFER,
        ring_timeout=RING,
        now=node.now,
        caller_id="+15550100",
    )
    node.flush()
    return leg_id


def sent(node: Node, method: str | None = None) -> list[SipRequest]:
    return [
        m
        for m in node.take(CARRIER)
        if isinstance(m, SipRequest) and (method is None or m.method == method)
    ]


def carrier_invite(node: Node) -> SipRequest:
    (invite,) = sent(node, "INVITE")
    return invite


def respond(
    node: Node,
    request: SipRequest,
    status: int,
    *,
    body: bytes = b"",
    extra: list[tuple[str, str]] | None = None,
) -> None:
    headers = list(extra or [])
    if 100 < status < 300:
        headers.append(("Contact", "<sip:gw@198.51.100.7:5060>"))
    if body:
        headers.append(("Content-Type", "application/sdp"))
    tag = "carriertag" if status > 100 else None
    response = build_response(request, status, to_tag=tag, headers=headers)
    response.body = body
    node.deliver(response.to_bytes(), CARRIER)


def only(node: Node, kind: type[object]) -> object:
    found = node.of(kind)
    assert len(found) == 1, node.events
    return found[0]


def expected_response(
    *,
    hash_name: str,
    realm: str,
    nonce: str,
    uri: str,
    nc: str,
    cnonce: str,
    username: str = "acct42",
    password: str = "s3cret-trunk",
) -> str:
    """RFC 2617 §3.2.2.1 (RFC 8760 §2 for SHA-256), qop=auth, computed independently."""

    def h(text: str) -> str:
        return hashlib.new(hash_name, text.encode()).hexdigest()

    ha1 = h(f"{username}:{realm}:{password}")
    ha2 = h(f"INVITE:{uri}")
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")


def test_invite_names_the_number_at_the_carrier_and_goes_to_its_address(node: Node) -> None:
    call_out(node)
    invite = carrier_invite(node)
    assert invite.uri == "sip:0049301234567@sip.carrier.example"
    assert invite.to.uri.user == "0049301234567" and invite.to.uri.host == "sip.carrier.example"
    assert invite.from_.uri.user == "+15550100" and invite.from_.tag
    assert invite.body == SERVER_OFFER and invite.cseq.number == 1
    assert invite.top_via.sent_by == "192.0.2.1:5060"
    assert "Authorization" not in invite.headers and "Proxy-Authorization" not in invite.headers


@pytest.mark.parametrize(
    ("status", "challenge_header", "answer_header", "algorithm", "hash_name"),
    [
        (407, "Proxy-Authenticate", "Proxy-Authorization", "MD5", "md5"),
        (401, "WWW-Authenticate", "Authorization", "SHA-256", "sha256"),
    ],
)
def test_challenge_is_answered_once_with_a_new_transaction(
    node: Node,
    status: int,
    challenge_header: str,
    answer_header: str,
    algorithm: str,
    hash_name: str,
) -> None:
    leg_id = call_out(node)
    first = carrier_invite(node)
    respond(node, first, 100)
    challenge = (
        f'Digest realm="carrier.example", nonce="n0nce-1", algorithm={algorithm}, '
        'qop="auth", opaque="op4que"'
    )
    respond(node, first, status, extra=[(challenge_header, challenge)])
    ack, retry = sent(node)
    # §17.1.1.3: the challenge is acknowledged in its own transaction (same branch, CSeq 1).
    assert ack.method == "ACK" and ack.top_via.branch == first.top_via.branch
    assert ack.cseq.number == 1
    # §22.2: same Call-ID, From tag and To, CSeq one higher, a new branch.
    assert retry.method == "INVITE"
    assert retry.call_id == first.call_id and retry.from_.tag == first.from_.tag
    assert retry.cseq.number == 2 and retry.top_via.branch != first.top_via.branch
    assert retry.uri == first.uri and retry.body == first.body
    answer = retry.headers.get(answer_header)
    assert answer is not None
    scheme, params = parse_auth_params(answer)
    assert scheme == "Digest"
    assert params["username"] == "acct42" and params["realm"] == "carrier.example"
    assert params["uri"] == first.uri and params["opaque"] == "op4que"
    assert params["qop"] == "auth" and params["nc"] == "00000001" and params["cnonce"]
    assert params["algorithm"] == algorithm
    assert params["response"] == expected_response(
        hash_name=hash_name,
        realm="carrier.example",
        nonce="n0nce-1",
        uri=first.uri,
        nc="00000001",
        cnonce=params["cnonce"],
    )
    # The authenticated INVITE is answered: the call goes on as any other.
    respond(node, retry, 180)
    respond(node, retry, 200, body=PHONE_SDP)
    (ack2,) = sent(node, "ACK")
    assert ack2.cseq.number == 2
    assert only(node, TrunkLegRinging) == TrunkLegRinging(
        call_id="caller-1", leg_id=leg_id, trunk_id="carrier", number="0049301234567"
    )
    answered = only(node, TrunkLegAnswered)
    assert isinstance(answered, TrunkLegAnswered) and answered.codec == "PCMA"
    assert node.of(TrunkLegFailed) == []


def test_a_second_challenge_with_the_same_nonce_fails_the_call(node: Node) -> None:
    leg_id = call_out(node)
    challenge = ("WWW-Authenticate", 'Digest realm="carrier.example", nonce="same", qop="auth"')
    first = carrier_invite(node)
    respond(node, first, 401, extra=[challenge])
    _, retry = sent(node)
    respond(node, retry, 401, extra=[challenge])
    # Only the ACK of the second 401: no third INVITE with the refused credentials.
    assert [r.method for r in sent(node)] == ["ACK"]
    failed = only(node, TrunkLegFailed)
    assert failed == TrunkLegFailed(
        call_id="caller-1",
        leg_id=leg_id,
        trunk_id="carrier",
        number="0049301234567",
        reason=CallOutFailure.AUTH_FAILED,
        status=401,
        ring_seconds=0.0,
    )
    assert node.core.outbound.legs[leg_id].state is OutboundState.ENDED


def test_a_stale_nonce_is_answered_again_with_the_new_one(node: Node) -> None:
    call_out(node)
    first = carrier_invite(node)
    respond(
        node,
        first,
        407,
        extra=[("Proxy-Authenticate", 'Digest realm="c", nonce="old", qop="auth"')],
    )
    _, retry = sent(node)
    respond(
        node,
        retry,
        407,
        extra=[("Proxy-Authenticate", 'Digest realm="c", nonce="new", qop="auth", stale=true')],
    )
    _, third = sent(node)
    assert third.method == "INVITE" and third.cseq.number == 3
    credentials = Credentials.parse(third.headers.get("Proxy-Authorization") or "")
    assert credentials.nonce == "new"
    # One Proxy-Authorization for the realm: the stale one is replaced, not kept.
    assert len(third.headers.get_lines("Proxy-Authorization")) == 1
    assert node.of(TrunkLegFailed) == []


def test_a_challenge_without_configured_credentials_fails_at_once(node: Node) -> None:
    route = TrunkRoute(trunk_id="carrier", host="198.51.100.7", port=5080, destination=CARRIER)
    call_out(node, route)
    first = carrier_invite(node)
    assert first.uri == "sip:0049301234567@198.51.100.7:5080"
    respond(node, first, 407, extra=[("Proxy-Authenticate", 'Digest realm="c", nonce="x"')])
    failed = only(node, TrunkLegFailed)
    assert isinstance(failed, TrunkLegFailed) and failed.reason is CallOutFailure.AUTH_FAILED


def test_ring_timeout_sends_cancel_and_reports_no_answer(node: Node) -> None:
    leg_id = call_out(node)
    invite = carrier_invite(node)
    respond(node, invite, 183)
    node.advance(RING + 0.1)
    (cancel,) = sent(node, "CANCEL")
    assert cancel.top_via.branch == invite.top_via.branch and cancel.uri == invite.uri
    failed = only(node, TrunkLegFailed)
    assert isinstance(failed, TrunkLegFailed)
    assert (failed.reason, failed.status) == (CallOutFailure.NO_ANSWER, None)
    node.deliver(ok_to(cancel), CARRIER)
    respond(node, invite, 487)
    assert node.core.outbound.legs[leg_id].state is OutboundState.ENDED
    assert len(node.of(TrunkLegFailed)) == 1


def test_a_carrier_that_never_answers_is_unreachable(node: Node) -> None:
    call_out(node)
    carrier_invite(node)
    node.advance(RING + 0.1)
    failed = only(node, TrunkLegFailed)
    assert isinstance(failed, TrunkLegFailed) and failed.reason is CallOutFailure.UNREACHABLE


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (486, CallOutFailure.BUSY),
        (600, CallOutFailure.BUSY),
        (603, CallOutFailure.REJECTED),
        (404, CallOutFailure.REJECTED),
        (480, CallOutFailure.NO_ANSWER),
        (408, CallOutFailure.NO_ANSWER),
        (503, CallOutFailure.UNREACHABLE),
    ],
)
def test_each_refusal_maps_to_its_outcome(node: Node, status: int, reason: CallOutFailure) -> None:
    call_out(node)
    invite = carrier_invite(node)
    respond(node, invite, 100)
    respond(node, invite, status)
    failed = only(node, TrunkLegFailed)
    assert isinstance(failed, TrunkLegFailed)
    assert (failed.reason, failed.status) == (reason, status)
    assert [r.method for r in sent(node)] == ["ACK"]


def test_answered_call_ends_with_bye_either_way(node: Node) -> None:
    leg_id = call_out(node)
    invite = carrier_invite(node)
    respond(node, invite, 200, body=PHONE_SDP)
    (ack,) = sent(node, "ACK")
    assert ack.uri == "sip:gw@198.51.100.7:5060"
    node.now = 10.0
    node.core.hangup(leg_id, node.now)
    node.flush()
    (bye,) = sent(node, "BYE")
    assert bye.call_id == invite.call_id and bye.cseq.number == 2
    node.deliver(ok_to(bye), CARRIER)
    ended = only(node, TrunkLegEnded)
    assert ended == TrunkLegEnded(
        call_id="caller-1",
        leg_id=leg_id,
        trunk_id="carrier",
        number="0049301234567",
        cause="normal",
        hangup_by="server",
        talk_seconds=10.0,
    )


def test_bye_from_the_carrier_ends_the_leg(node: Node) -> None:
    leg_id = call_out(node)
    invite = carrier_invite(node)
    respond(node, invite, 200, body=PHONE_SDP)
    sent(node)
    lines = [
        f"BYE {(invite.headers.get('Contact') or '').strip('<>')} SIP/2.0",
        "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKcarrierbye1",
        "Max-Forwards: 70",
        f"From: {invite.headers.get('To')};tag=carriertag",
        f"To: {invite.headers.get('From')}",
        f"Call-ID: {invite.call_id}",
        "CSeq: 7 BYE",
    ]
    node.deliver(("\r\n".join(lines) + "\r\n\r\n").encode(), CARRIER)
    (ok,) = node.take(CARRIER)
    assert isinstance(ok, SipResponse) and ok.status == 200
    ended = only(node, TrunkLegEnded)
    assert isinstance(ended, TrunkLegEnded) and ended.hangup_by == "callee"
    assert node.core.outbound.legs[leg_id].state is OutboundState.ENDED


def test_calls_past_the_trunk_limit_are_refused_until_one_ends(node: Node) -> None:
    first = call_out(node)
    call_out(node)
    sent(node)
    third = call_out(node)
    failed = only(node, TrunkLegFailed)
    assert isinstance(failed, TrunkLegFailed)
    assert (failed.leg_id, failed.reason) == (third, CallOutFailure.NO_CAPACITY)
    assert sent(node) == []  # nothing went out for it
    node.core.hangup(first, node.now)  # never answered: ends at once (no provisional yet)
    node.flush()
    node.advance(40.0)  # the cancelled INVITE's transaction times out; the leg is history
    node.events.clear()
    sent(node)
    call_out(node)
    assert node.of(TrunkLegFailed) == []
    assert len(sent(node, "INVITE")) == 1


# --- calls in from a trunk that must authenticate -------------------------------------------------

TRUNK_SOURCE = ("192.0.2.50", 5060)


def inbound_node() -> Node:
    node = Node()
    node.core.trunks = TrunkTable.build(
        [
            Trunk(
                id="pbx",
                sources=("192.0.2.50/32",),
                inbound_auth=TrunkAuth(username="pbx-in", password="in-secret"),
            )
        ]
    )
    node.core.dialplan = Dialplan(numbers={"*": EntryPoint(ivr="main")})
    return node


def finals(node: Node) -> list[SipResponse]:
    """The final responses sent to the trunk since the last look (100 Trying left out)."""
    return [m for m in node.take(TRUNK_SOURCE) if isinstance(m, SipResponse) and m.status >= 200]


def trunk_invite(authorization: str | None = None, cseq: int = 1) -> bytes:
    lines = [
        "INVITE sip:100@192.0.2.1 SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.50:5060;branch=z9hG4bKpbx{cseq}",
        "Max-Forwards: 70",
        "From: <sip:+15550123@192.0.2.50>;tag=pbxtag",
        "To: <sip:100@192.0.2.1>",
        "Call-ID: inbound-auth-1",
        f"CSeq: {cseq} INVITE",
        "Contact: <sip:pbx@192.0.2.50:5060>",
        "Content-Type: application/sdp",
    ]
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + PHONE_SDP


def answer_401(response: SipResponse, password: str) -> str:
    _, params = parse_auth_params(response.headers.get_all("WWW-Authenticate")[0])
    assert params["algorithm"] == "MD5"
    digest = expected_response(
        hash_name="md5",
        realm=params["realm"],
        nonce=params["nonce"],
        uri="sip:100@192.0.2.1",
        nc="00000001",
        cnonce="abc123",
        username="pbx-in",
        password=password,
    )
    return (
        f'Digest username="pbx-in", realm="{params["realm"]}", nonce="{params["nonce"]}", '
        f'uri="sip:100@192.0.2.1", response="{digest}", algorithm=MD5, cnonce="abc123", '
        "qop=auth, nc=00000001"
    )


def test_inbound_trunk_with_credentials_is_challenged_then_let_in() -> None:
    node = inbound_node()
    node.deliver(trunk_invite(), TRUNK_SOURCE)
    (challenge,) = finals(node)
    assert challenge.status == 401
    assert node.of(IncomingCall) == []
    assert challenge.headers.get_all("WWW-Authenticate")[0].startswith('Digest realm="pbx"')
    node.deliver(trunk_invite(answer_401(challenge, "in-secret"), cseq=2), TRUNK_SOURCE)
    incoming = only(node, IncomingCall)
    assert isinstance(incoming, IncomingCall) and incoming.trunk_id == "pbx"


def test_inbound_trunk_with_a_wrong_password_is_refused() -> None:
    node = inbound_node()
    node.deliver(trunk_invite(), TRUNK_SOURCE)
    (challenge,) = finals(node)
    node.deliver(trunk_invite(answer_401(challenge, "wrong"), cseq=2), TRUNK_SOURCE)
    (again,) = finals(node)
    assert again.status == 401
    assert node.of(IncomingCall) == []
    failure = only(node, AuthenticationFailed)
    assert isinstance(failure, AuthenticationFailed) and failure.method == "INVITE"


def test_a_tcp_trunk_is_called_over_tcp_with_the_transport_in_the_uri(node: Node) -> None:
    route = TrunkRoute(
        trunk_id="carrier",
        host="sip.carrier.example",
        port=5060,
        destination=CARRIER,
        transport="tcp",
    )
    call_out(node, route)
    ((invite, transmit),) = [(m, t) for m, t in node.outbox if t.destination == CARRIER]
    assert isinstance(invite, SipRequest)
    assert invite.uri == "sip:0049301234567@sip.carrier.example:5060;transport=tcp"
    assert transmit.transport == "tcp" and invite.top_via.transport == "TCP"
    assert (invite.headers.get("Contact") or "").endswith(";transport=tcp>")
