"""A carrier that challenges the requests we send inside an answered call out (RFC 3261 §22.2):
BYE and re-INVITE are sent once more with credentials, under a new CSeq (§8.1.3.5).

The carrier is written out by hand as in test_trunk_outbound; digests are checked against
RFC 2617 §3.2.2.1 computed here with hashlib.
"""

from __future__ import annotations

import hashlib

import pytest

from telephony.events import TrunkLegEnded
from telephony.sip.core_types import ReofferAnswered, ReofferFailed
from telephony.sip.digest import parse_auth_params
from telephony.sip.message import SipRequest, build_response
from telephony.sip.outbound import OutboundState
from tests.sip.agent_phone import LOCAL, PHONE_SDP, SERVER_OFFER, Node, Softphone, ok_to
from tests.sip.test_trunk_outbound import CARRIER, call_out, carrier_invite, only, respond, sent

PROXY_CHALLENGE = 'Digest realm="carrier.example", nonce="dlg-nonce", qop="auth", opaque="o"'


@pytest.fixture
def node() -> Node:
    node = Node()
    node.core.default_local = LOCAL
    return node


def answered_call(node: Node) -> tuple[str, SipRequest]:
    """A call out the carrier answered at once; returns the leg id and the INVITE."""
    leg_id = call_out(node)
    invite = carrier_invite(node)
    respond(node, invite, 200, body=PHONE_SDP)
    assert [r.method for r in sent(node)] == ["ACK"]
    return leg_id, invite


def digest(method: str, uri: str, nonce: str, nc: str, cnonce: str) -> str:
    def h(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = h("acct42:carrier.example:s3cret-trunk")
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{h(f'{method}:{uri}')}")


def challenge(node: Node, request: SipRequest, status: int, value: str = PROXY_CHALLENGE) -> None:
    header = "Proxy-Authenticate" if status == 407 else "WWW-Authenticate"
    response = build_response(request, status, headers=[(header, value)])
    node.deliver(response.to_bytes(), CARRIER)


def test_a_challenged_bye_is_sent_again_with_credentials(node: Node) -> None:
    leg_id, invite = answered_call(node)
    node.now = 12.0
    node.core.hangup(leg_id, node.now)
    node.flush()
    (bye,) = sent(node, "BYE")
    challenge(node, bye, 407)
    (retry,) = sent(node)
    assert retry.method == "BYE" and retry.uri == bye.uri
    # §22.2 / §8.1.3.5: same dialog (Call-ID, tags), a new CSeq and a new transaction.
    assert retry.call_id == invite.call_id
    assert (retry.from_.tag, retry.to.tag) == (bye.from_.tag, bye.to.tag)
    assert retry.cseq.number == bye.cseq.number + 1
    assert retry.top_via.branch != bye.top_via.branch
    scheme, params = parse_auth_params(retry.headers.get("Proxy-Authorization") or "")
    assert scheme == "Digest" and params["uri"] == bye.uri and params["opaque"] == "o"
    assert params["response"] == digest("BYE", bye.uri, "dlg-nonce", params["nc"], params["cnonce"])
    assert node.of(TrunkLegEnded) == []
    node.deliver(ok_to(retry), CARRIER)
    ended = only(node, TrunkLegEnded)
    assert isinstance(ended, TrunkLegEnded)
    assert (ended.cause, ended.hangup_by, ended.talk_seconds) == ("normal", "server", 12.0)


def test_the_nonce_count_goes_on_when_the_carrier_reuses_a_nonce(node: Node) -> None:
    leg_id = call_out(node)
    first = carrier_invite(node)
    challenge(node, first, 407)
    _, invite = sent(node)
    respond(node, invite, 200, body=PHONE_SDP)
    sent(node)
    node.core.hangup(leg_id, node.now)
    node.flush()
    (bye,) = sent(node, "BYE")
    challenge(node, bye, 407)
    (retry,) = sent(node)
    # RFC 2617 §3.2.2: the second request under the same nonce says nc=2.
    first_nc = parse_auth_params(invite.headers.get("Proxy-Authorization") or "")[1]["nc"]
    params = parse_auth_params(retry.headers.get("Proxy-Authorization") or "")[1]
    assert (first_nc, params["nc"]) == ("00000001", "00000002")
    assert params["response"] == digest("BYE", bye.uri, "dlg-nonce", "00000002", params["cnonce"])


def test_credentials_refused_for_a_bye_still_end_the_leg(node: Node) -> None:
    leg_id, _ = answered_call(node)
    node.core.hangup(leg_id, node.now)
    node.flush()
    (bye,) = sent(node, "BYE")
    challenge(node, bye, 401)
    (retry,) = sent(node)
    assert "Authorization" in retry.headers
    challenge(node, retry, 401)
    # Sent once with credentials, not again: the leg is over all the same (§15.1.1).
    assert sent(node) == []
    assert only(node, TrunkLegEnded)
    assert node.core.outbound.legs[leg_id].state is OutboundState.ENDED


def test_a_challenged_reinvite_is_sent_again_and_acknowledged(node: Node) -> None:
    leg_id, _ = answered_call(node)
    node.core.outbound.hold(leg_id, True, node.now)
    node.flush()
    (reinvite,) = sent(node, "INVITE")
    assert b"a=sendonly" in reinvite.body
    challenge(node, reinvite, 401, 'Digest realm="carrier.example", nonce="r1", qop="auth"')
    ack, retry = sent(node)
    # The 401 is acknowledged in its transaction (§17.1.1.3); the retry is a new one.
    assert ack.method == "ACK" and ack.cseq.number == reinvite.cseq.number
    assert retry.method == "INVITE" and retry.cseq.number == reinvite.cseq.number + 1
    assert retry.body == reinvite.body
    assert retry.headers.get("Content-Type") == "application/sdp"
    params = parse_auth_params(retry.headers.get("Authorization") or "")[1]
    assert params["response"] == digest("INVITE", reinvite.uri, "r1", "00000001", params["cnonce"])
    respond(node, retry, 200, body=PHONE_SDP)
    (ack2,) = sent(node, "ACK")
    assert ack2.cseq.number == retry.cseq.number
    assert only(node, ReofferAnswered)
    assert node.of(ReofferFailed) == []
    # The dialog goes on under the new CSeq: our next request takes the number after it.
    node.core.hangup(leg_id, node.now)
    node.flush()
    (bye,) = sent(node, "BYE")
    assert bye.cseq.number == retry.cseq.number + 1


def test_an_agent_leg_does_not_answer_challenges(node: Node) -> None:
    phone = Softphone(node)
    phone.register()
    leg_id = node.core.outbound.originate(
        "1001", call_id="c-9", offer=SERVER_OFFER, ring_timeout=20.0, now=node.now
    )
    node.flush()
    phone.answer(phone.invite())
    phone.received()
    node.core.outbound.hold(leg_id, True, node.now)
    node.flush()
    (reinvite,) = phone.requests("INVITE")
    phone.node.deliver(
        build_response(
            reinvite, 401, headers=[("WWW-Authenticate", 'Digest realm="x", nonce="y"')]
        ).to_bytes(),
        phone.source,
    )
    # Trunk credentials are the carrier's: an agent's phone that challenges gets none.
    assert [r.method for r in phone.requests()] == ["ACK"]
    failed = only(node, ReofferFailed)
    assert isinstance(failed, ReofferFailed) and failed.status == 401
