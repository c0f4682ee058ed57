"""Calls the server places to agents' softphones (SipCore.outbound), in memory with a fake clock.

The agent's phone registers with digest first, from a NAT'ed address, exactly as it would on the
wire; everything the core sends to it is read back and answered by hand.
"""

from __future__ import annotations

import pytest

from telephony.events import (
    AgentLegAnswered,
    AgentLegEnded,
    AgentLegFailed,
    CallRinging,
    RingFailure,
)
from telephony.sip.message import SipRequest, SipResponse, build_response
from telephony.sip.outbound import OutboundState
from telephony.sip.uri import NameAddr
from tests.sip.agent_phone import PHONE_SDP, SERVER_OFFER, Node, Softphone, ok_to

RING = 20.0


@pytest.fixture
def node() -> Node:
    return Node()


@pytest.fixture
def phone(node: Node) -> Softphone:
    phone = Softphone(node)
    phone.register()
    return phone


def originate(node: Node, user: str = "1001", call_id: str | None = "caller-1") -> str:
    leg_id = node.core.outbound.originate(
        user,
        call_id=call_id,
        offer=SERVER_OFFER,
        ring_timeout=RING,
        now=node.now,
        caller_id="+4930123",
        caller_name='Jane "J" Doe',
    )
    node.flush()
    return leg_id


def only(node: Node, kind: type[object]) -> object:
    found = node.of(kind)
    assert len(found) == 1, node.events
    return found[0]


def test_invite_goes_to_the_nat_address_with_the_contact_as_request_uri(
    node: Node, phone: Softphone
) -> None:
    originate(node)
    invite = phone.invite()
    assert invite.uri == "sip:1001@192.168.1.20:5060"  # the registered Contact
    assert invite.body == SERVER_OFFER and invite.content_type == "application/sdp"
    caller = invite.from_
    assert caller.uri.user == "+4930123" and caller.display_name == 'Jane "J" Doe'
    assert caller.tag is not None and invite.to.tag is None
    assert invite.to.uri.user == "1001"
    assert invite.top_via.sent_by == "192.0.2.1:5060"  # the socket the phone registered to
    assert NameAddr.parse(invite.headers.get("Contact") or "").uri.host == "192.0.2.1"


def test_ringing_then_answer_is_acknowledged_and_reported(node: Node, phone: Softphone) -> None:
    leg_id = originate(node)
    invite = phone.invite()
    phone.respond(invite, 100)
    assert node.of(CallRinging) == []
    phone.respond(invite, 180)
    assert only(node, CallRinging) == CallRinging(
        call_id="caller-1", leg_id=leg_id, sip_user="1001"
    )
    phone.respond(invite, 183)  # ringing is reported once
    assert len(node.of(CallRinging)) == 1
    node.now = 3.0
    phone.respond(invite, 200, body=PHONE_SDP)
    (ack,) = phone.requests("ACK")
    # §13.2.2.4: the ACK of a 2xx has the INVITE's CSeq number and goes to the remote target.
    assert ack.cseq.number == invite.cseq.number and ack.cseq.method == "ACK"
    assert ack.uri == phone.contact and ack.to.tag == phone.tag
    assert ack.top_via.branch != invite.top_via.branch
    answered = only(node, AgentLegAnswered)
    assert answered == AgentLegAnswered(
        call_id="caller-1", leg_id=leg_id, sip_user="1001", codec="PCMA", ring_seconds=3.0
    )
    leg = node.core.outbound.legs[leg_id]
    assert leg.state is OutboundState.CONFIRMED and leg.answer == PHONE_SDP
    # A retransmitted 200 is acknowledged again by the transaction layer, not reported again.
    phone.respond(invite, 200, body=PHONE_SDP)
    assert [r.method for r in phone.requests()] == ["ACK"]
    assert len(node.of(AgentLegAnswered)) == 1


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (486, RingFailure.BUSY),
        (600, RingFailure.BUSY),
        (603, RingFailure.REJECTED),
        (404, RingFailure.UNREGISTERED),
        (480, RingFailure.UNREGISTERED),
        (488, RingFailure.REJECTED),
    ],
)
def test_each_refusal_maps_to_its_ring_failure(
    node: Node, phone: Softphone, status: int, reason: RingFailure
) -> None:
    leg_id = originate(node)
    invite = phone.invite()
    phone.respond(invite, 180)
    phone.respond(invite, status)
    failed = only(node, AgentLegFailed)
    assert isinstance(failed, AgentLegFailed)
    assert (failed.reason, failed.status, failed.leg_id) == (reason, status, leg_id)
    # §17.1.1.3: the transaction acknowledges the non-2xx itself.
    (ack,) = phone.requests("ACK")
    assert ack.top_via.branch == invite.top_via.branch
    assert node.core.outbound.legs[leg_id].state is OutboundState.ENDED
    assert node.of(AgentLegAnswered) == []


def test_agent_without_registration_fails_at_once(node: Node) -> None:
    leg_id = originate(node, user="1002")
    failed = only(node, AgentLegFailed)
    assert failed == AgentLegFailed(
        call_id="caller-1",
        leg_id=leg_id,
        sip_user="1002",
        reason=RingFailure.UNREGISTERED,
        status=None,
        ring_seconds=0.0,
    )
    assert node.outbox == []


def test_ring_timeout_cancels_and_reports_no_answer(node: Node, phone: Softphone) -> None:
    leg_id = originate(node)
    invite = phone.invite()
    phone.respond(invite, 180)
    node.advance(RING - 0.1)
    assert node.of(AgentLegFailed) == []
    node.advance(0.2)
    (cancel,) = phone.requests("CANCEL")
    # §9.1: the CANCEL copies the INVITE's Request-URI, Call-ID, From, To, CSeq number and Via.
    assert cancel.uri == invite.uri and cancel.call_id == invite.call_id
    assert cancel.cseq.number == invite.cseq.number
    assert cancel.top_via.branch == invite.top_via.branch
    failed = only(node, AgentLegFailed)
    assert isinstance(failed, AgentLegFailed)
    assert (failed.reason, failed.status) == (RingFailure.NO_ANSWER, None)
    assert failed.ring_seconds == pytest.approx(RING, abs=0.2)
    leg = node.core.outbound.legs[leg_id]
    assert leg.state is OutboundState.CANCELLING
    node.deliver(ok_to(cancel), phone.source)
    phone.respond(invite, 487)
    assert node.core.outbound.legs[leg_id].state is OutboundState.ENDED
    assert [r.method for r in phone.requests()] == ["ACK"]  # for the 487
    assert len(node.of(AgentLegFailed)) == 1


def test_phone_that_never_answers_gets_no_cancel_before_a_provisional(
    node: Node, phone: Softphone
) -> None:
    originate(node)
    phone.invite()
    node.advance(RING + 0.1)
    failed = only(node, AgentLegFailed)
    assert isinstance(failed, AgentLegFailed) and failed.reason is RingFailure.NO_ANSWER
    # §9.1: no CANCEL for a request that got no provisional response (only retransmissions).
    assert {r.method for r in phone.requests()} == {"INVITE"}


def test_answer_crossing_our_cancel_is_acknowledged_and_hung_up(
    node: Node, phone: Softphone
) -> None:
    leg_id = originate(node)
    invite = phone.invite()
    phone.respond(invite, 180)
    node.core.hangup(leg_id, node.now)
    node.flush()
    assert len(phone.requests("CANCEL")) == 1
    ended = only(node, AgentLegEnded)
    assert isinstance(ended, AgentLegEnded) and ended.cause == "cancelled"
    phone.respond(invite, 200, body=PHONE_SDP)  # the phone answered before it saw the CANCEL
    assert [r.method for r in phone.requests()] == ["ACK", "BYE"]
    assert node.of(AgentLegAnswered) == []
    assert node.core.outbound.legs[leg_id].state is OutboundState.ENDED


def test_two_devices_first_answer_wins_the_other_is_cancelled_then_byed(node: Node) -> None:
    desk = Softphone(node, source=("203.0.113.5", 40000), contact="sip:1001@192.168.1.20:5060")
    mobile = Softphone(
        node, source=("198.51.100.9", 50000), contact="sip:1001@10.0.0.7:5062", tag="mob1"
    )
    desk.register()
    mobile.register()
    leg_id = originate(node)
    desk_invite, mobile_invite = desk.invite(), mobile.invite()
    # One INVITE per binding, as a forking proxy sends them: one Call-ID and From tag.
    assert desk_invite.call_id == mobile_invite.call_id
    assert desk_invite.from_.tag == mobile_invite.from_.tag
    assert desk_invite.top_via.branch != mobile_invite.top_via.branch
    mobile.respond(mobile_invite, 180)
    desk.answer(desk_invite)
    assert [r.method for r in desk.requests()] == ["ACK"]
    (cancel,) = mobile.requests("CANCEL")
    assert cancel.top_via.branch == mobile_invite.top_via.branch
    # The mobile's 200 crossed the CANCEL: acknowledged, then ended with BYE (§13.2.2.4).
    mobile.respond(mobile_invite, 200, body=PHONE_SDP)
    ack, bye = mobile.requests()
    assert (ack.method, bye.method) == ("ACK", "BYE")
    assert bye.to.tag == mobile.tag and bye.call_id == mobile_invite.call_id
    node.deliver(ok_to(bye), mobile.source)
    assert len(node.of(AgentLegAnswered)) == 1
    leg = node.core.outbound.legs[leg_id]
    assert leg.state is OutboundState.CONFIRMED and leg.dialog is not None
    assert leg.dialog.remote_tag == desk.tag


def test_forked_2xx_through_a_proxy_keeps_the_first_dialog(node: Node, phone: Softphone) -> None:
    leg_id = originate(node)
    invite = phone.invite()
    phone.respond(invite, 200, body=PHONE_SDP, tag="first")
    phone.respond(invite, 200, body=PHONE_SDP, tag="second")
    ack1, ack2, bye = phone.requests()
    assert (ack1.method, ack2.method, bye.method) == ("ACK", "ACK", "BYE")
    assert (ack1.to.tag, ack2.to.tag, bye.to.tag) == ("first", "second", "second")
    leg = node.core.outbound.legs[leg_id]
    assert leg.dialog is not None and leg.dialog.remote_tag == "first"
    assert len(node.of(AgentLegAnswered)) == 1


def answered_call(node: Node, phone: Softphone) -> tuple[str, SipRequest]:
    leg_id = originate(node)
    invite = phone.invite()
    phone.answer(invite)
    phone.requests("ACK")
    return leg_id, invite


def test_agent_hangs_up_with_bye(node: Node, phone: Softphone) -> None:
    leg_id, invite = answered_call(node, phone)
    node.now += 30
    phone.send_in_dialog(invite, "BYE")
    (ok,) = phone.received()
    assert isinstance(ok, SipResponse) and ok.status == 200
    ended = only(node, AgentLegEnded)
    assert ended == AgentLegEnded(
        call_id="caller-1",
        leg_id=leg_id,
        sip_user="1001",
        cause="normal",
        hangup_by="callee",
        talk_seconds=30.0,
    )
    assert node.core.outbound.legs[leg_id].state is OutboundState.ENDED
    assert leg_id not in node.core.active_calls()


def test_server_hangs_up_with_bye_to_the_nat_address(node: Node, phone: Softphone) -> None:
    leg_id, invite = answered_call(node, phone)
    node.core.hangup(leg_id, node.now)
    node.flush()
    (bye,) = phone.requests("BYE")
    assert bye.uri == phone.contact  # remote target from the 200's Contact
    assert bye.from_.tag == invite.from_.tag and bye.to.tag == phone.tag
    assert node.of(AgentLegEnded) == []
    node.deliver(ok_to(bye), phone.source)
    ended = only(node, AgentLegEnded)
    assert isinstance(ended, AgentLegEnded) and ended.hangup_by == "server"


def test_bye_crossing_ours_ends_the_leg_once(node: Node, phone: Softphone) -> None:
    leg_id, invite = answered_call(node, phone)
    node.core.hangup(leg_id, node.now)
    node.flush()
    (bye,) = phone.requests("BYE")
    phone.send_in_dialog(invite, "BYE")
    node.deliver(ok_to(bye), phone.source)
    assert len(node.of(AgentLegEnded)) == 1
    assert node.core.outbound.legs[leg_id].state is OutboundState.ENDED


def test_request_for_an_unknown_dialog_of_a_leg_is_481(node: Node, phone: Softphone) -> None:
    _, invite = answered_call(node, phone)
    phone.tag = "not-the-answering-fork"
    phone.send_in_dialog(invite, "INFO")
    (answer,) = phone.received()
    assert isinstance(answer, SipResponse) and answer.status == 481


def test_ended_legs_are_forgotten_after_64_t1(node: Node, phone: Softphone) -> None:
    leg_id, invite = answered_call(node, phone)
    phone.send_in_dialog(invite, "BYE")
    node.advance(31)
    assert leg_id in node.core.outbound.legs
    node.advance(2)
    assert leg_id not in node.core.outbound.legs


def test_stray_response_to_an_unknown_invite_is_dropped(node: Node, phone: Softphone) -> None:
    originate(node)
    invite = phone.invite()
    forged = build_response(invite, 200, to_tag="x")
    forged.headers.remove("Via")
    forged.headers.add("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnothing")
    node.deliver(forged.to_bytes(), phone.source)
    assert node.of(AgentLegAnswered) == [] and phone.received() == []
