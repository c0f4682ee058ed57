"""Hold/resume by re-INVITE (RFC 3264 §8.4) and transfers by REFER (RFC 3515) in the SIP core.

An agent's phone on a call the server placed, and a trunk caller on an inbound call, send new
offers; the core answers them itself and tells the service where media goes and who holds. The
server's own hold is a re-INVITE with a=sendonly, retried after a 491 (§14.1) on the fake clock.
"""

from __future__ import annotations

import pytest

from telephony.sdp import Direction, parse_sdp
from telephony.sip.core_types import (
    ReofferAnswered,
    ReofferFailed,
    ReofferReceived,
    TransferRequested,
)
from telephony.sip.message import SipRequest, SipResponse
from tests.sip.agent_phone import PHONE_SDP, SERVER_OFFER, Node, Softphone, ok_to, sdp_with

RING = 20.0


@pytest.fixture
def node() -> Node:
    node = Node()
    node.core.outbound.dialogs.uniform = lambda low, high: low  # glare delays at their minimum
    return node


@pytest.fixture
def phone(node: Node) -> Softphone:
    phone = Softphone(node)
    phone.register()
    return phone


@pytest.fixture
def call(node: Node, phone: Softphone) -> tuple[str, SipRequest]:
    leg_id = node.core.outbound.originate(
        "1001", call_id="caller-1", offer=SERVER_OFFER, ring_timeout=RING, now=node.now
    )
    node.flush()
    invite = phone.invite()
    phone.answer(invite)
    phone.requests("ACK")
    return leg_id, invite


def final(phone: Softphone) -> SipResponse:
    responses = [m for m in phone.received() if isinstance(m, SipResponse)]
    assert responses and responses[-1].status >= 200, responses
    return responses[-1]


def direction_of(sdp: bytes) -> Direction:
    description = parse_sdp(sdp)
    return description.media[0].direction(description.direction)


# --- the agent's phone holds -----------------------------------------------------------------


def test_agent_hold_and_resume_are_answered_and_reported(
    node: Node, phone: Softphone, call: tuple[str, SipRequest]
) -> None:
    leg_id, invite = call
    phone.send_in_dialog(invite, "INVITE", body=sdp_with("sendonly"))
    held = final(phone)
    assert held.status == 200
    # RFC 3264 §6.1: a sendonly offer gets a recvonly answer; the o= version goes up by one.
    assert direction_of(held.body) is Direction.RECVONLY
    assert parse_sdp(held.body).origin.session_version == 1
    assert parse_sdp(held.body).media[0].port == 20000  # our media stays where it is
    assert node.of(ReofferReceived) == [
        ReofferReceived(
            call_id=leg_id,
            method="INVITE",
            remote_address="203.0.113.5",
            remote_port=4000,
            remote_hold=True,
        )
    ]
    phone.send_in_dialog(invite, "INVITE", body=sdp_with("sendrecv", version=9))
    resumed = final(phone)
    assert direction_of(resumed.body) is Direction.SENDRECV
    assert parse_sdp(resumed.body).origin.session_version == 2
    last = node.of(ReofferReceived)[-1]
    assert isinstance(last, ReofferReceived) and not last.remote_hold


def test_a_phone_that_moves_its_media_says_where_its_rtcp_goes(
    node: Node, phone: Softphone, call: tuple[str, SipRequest]
) -> None:
    leg_id, invite = call
    # RFC 3605 §2.1: the new offer names an RTCP port (and address) of its own.
    moved = sdp_with("sendrecv", address="198.51.100.9", version=9).replace(
        b"a=sendrecv", b"a=rtcp:4011 IN IP4 198.51.100.10\r\na=sendrecv"
    )
    phone.send_in_dialog(invite, "INVITE", body=moved)
    assert final(phone).status == 200
    (reoffered,) = node.of(ReofferReceived)
    assert isinstance(reoffered, ReofferReceived)
    assert (reoffered.call_id, reoffered.remote_address) == (leg_id, "198.51.100.9")
    assert reoffered.remote_rtcp == ("198.51.100.10", 4011)


def test_rfc2543_hold_with_zero_address_is_a_hold(
    node: Node, phone: Softphone, call: tuple[str, SipRequest]
) -> None:
    _, invite = call
    phone.send_in_dialog(invite, "INVITE", body=sdp_with("sendrecv", address="0.0.0.0"))
    answer = final(phone)
    # §8.4: c=0.0.0.0 means "do not send to me": we only receive.
    assert direction_of(answer.body) is Direction.RECVONLY
    (event,) = node.of(ReofferReceived)
    assert isinstance(event, ReofferReceived) and event.remote_hold


def test_unchanged_reoffer_keeps_our_version(
    node: Node, phone: Softphone, call: tuple[str, SipRequest]
) -> None:
    _, invite = call
    phone.send_in_dialog(invite, "UPDATE", body=PHONE_SDP)
    answer = final(phone)
    assert answer.body == SERVER_OFFER  # RFC 3264 §8: the same description, the same version


def test_reoffer_without_a_common_codec_is_488_and_nothing_changes(
    node: Node, phone: Softphone, call: tuple[str, SipRequest]
) -> None:
    _, invite = call
    g729 = PHONE_SDP.replace(b"RTP/AVP 8 101", b"RTP/AVP 18").replace(b"PCMA/8000", b"G729/8000")
    phone.send_in_dialog(invite, "INVITE", body=g729)
    assert final(phone).status == 488
    assert node.of(ReofferReceived) == []


def test_offerless_reinvite_gets_our_session_and_update_without_offer_no_body(
    node: Node, phone: Softphone, call: tuple[str, SipRequest]
) -> None:
    _, invite = call
    phone.send_in_dialog(invite, "INVITE")
    assert final(phone).body == SERVER_OFFER  # RFC 3261 §14.2: our offer, in the 200
    phone.send_in_dialog(invite, "UPDATE")
    update = final(phone)
    assert (update.status, update.body) == (200, b"")


def test_caller_hold_on_an_inbound_call_is_answered_recvonly() -> None:
    from tests.sip.test_sip_core import OFFER, Harness, make_core, request, responses

    sip = Harness(make_core())
    call, ok = sip.call_up()
    hold = OFFER + b"a=sendonly\r\n"
    reinvite = request("INVITE", cseq=2, to_tag=ok.to.tag, branch="z9hG4bKhold", body=hold)
    answer = responses(sip.receive(reinvite))[-1]
    assert answer.status == 200 and direction_of(answer.body) is Direction.RECVONLY
    (event,) = sip.of(ReofferReceived)
    assert isinstance(event, ReofferReceived)
    assert (event.call_id, event.remote_hold, event.remote_port) == (call.call_id, True, 40000)


# --- the server holds ------------------------------------------------------------------------


def test_server_hold_is_a_sendonly_reinvite_and_resume_sendrecv(
    node: Node, phone: Softphone, call: tuple[str, SipRequest]
) -> None:
    leg_id, invite = call
    node.core.outbound.hold(leg_id, True, node.now)
    node.flush()
    (reinvite,) = phone.requests("INVITE")
    assert reinvite.to.tag == phone.tag and reinvite.cseq.number > invite.cseq.number
    assert direction_of(reinvite.body) is Direction.SENDONLY
    assert parse_sdp(reinvite.body).origin.session_version == 1
    phone.respond(reinvite, 200, body=sdp_with("recvonly"))
    (ack,) = phone.requests("ACK")
    assert ack.cseq.number == reinvite.cseq.number
    assert node.of(ReofferAnswered) == [
        ReofferAnswered(call_id=leg_id, answer=sdp_with("recvonly"))
    ]
    node.core.outbound.hold(leg_id, False, node.now)
    node.flush()
    (resume,) = phone.requests("INVITE")
    assert direction_of(resume.body) is Direction.SENDRECV
    assert parse_sdp(resume.body).origin.session_version == 2


def test_glare_491_is_retried_after_the_owner_delay(
    node: Node, phone: Softphone, call: tuple[str, SipRequest]
) -> None:
    leg_id, invite = call
    node.core.outbound.hold(leg_id, True, node.now)
    node.flush()
    (first,) = phone.requests("INVITE")
    # Both sides re-INVITE at once: the phone's gets 491 from us, ours gets 491 from it (§14.2).
    phone.send_in_dialog(invite, "INVITE", body=sdp_with("sendonly"))
    assert final(phone).status == 491
    phone.respond(first, 491)
    assert phone.requests("ACK")  # the non-2xx is acknowledged by the transaction
    # §14.1: we chose the Call-ID, so we wait 2.1-4 s (2.1 with the fixed draw) before retrying.
    node.advance(2.0)
    assert phone.requests("INVITE") == []
    node.advance(0.2)
    (retry,) = phone.requests("INVITE")
    assert retry.cseq.number > first.cseq.number
    assert direction_of(retry.body) is Direction.SENDONLY
    phone.respond(retry, 200, body=sdp_with("recvonly"))
    assert len(node.of(ReofferAnswered)) == 1


def test_refused_hold_is_reported_and_the_session_stays(
    node: Node, phone: Softphone, call: tuple[str, SipRequest]
) -> None:
    leg_id, _ = call
    node.core.outbound.hold(leg_id, True, node.now)
    node.flush()
    (reinvite,) = phone.requests("INVITE")
    phone.respond(reinvite, 488)
    assert node.of(ReofferFailed) == [ReofferFailed(call_id=leg_id, status=488)]
    assert node.core.outbound.legs[leg_id].local_sdp == SERVER_OFFER


# --- REFER (blind transfer from the agent's phone) ----------------------------------------------


def notify_of(request: SipRequest) -> tuple[str, str, str]:
    return (
        request.headers.get("Event") or "",
        request.headers.get("Subscription-State") or "",
        request.body.decode(),
    )


def test_refer_is_accepted_notified_and_reported(
    node: Node, phone: Softphone, call: tuple[str, SipRequest]
) -> None:
    leg_id, invite = call
    phone.send_in_dialog(invite, "REFER", extra=("Refer-To: <sip:1002@192.0.2.1>",))
    accepted, notify = phone.received()
    assert isinstance(accepted, SipResponse) and accepted.status == 202
    # RFC 3515 §2.4.4/§2.4.5: a NOTIFY at once, in the dialog, with a sipfrag body.
    assert isinstance(notify, SipRequest) and notify.method == "NOTIFY"
    assert notify.to.tag == phone.tag
    assert notify.content_type == "message/sipfrag;version=2.0"
    assert notify_of(notify) == ("refer", "active;expires=60", "SIP/2.0 100 Trying\r\n")
    assert node.of(TransferRequested) == [
        TransferRequested(
            call_id=leg_id, target="1002", refer_to="sip:1002@192.0.2.1", replaces=None
        )
    ]
    node.deliver(ok_to(notify), phone.source)
    node.core.outbound.notify_transfer(leg_id, 200, node.now)
    node.flush()
    (last,) = phone.requests("NOTIFY")
    assert notify_of(last) == (
        "refer",
        "terminated;reason=noresource",
        "SIP/2.0 200 OK\r\n",
    )
    assert last.cseq.number == notify.cseq.number + 1
    node.core.outbound.notify_transfer(leg_id, 503, node.now)  # reported once only
    node.flush()
    assert phone.requests("NOTIFY") == []


def test_failed_transfer_is_notified_503(
    node: Node, phone: Softphone, call: tuple[str, SipRequest]
) -> None:
    leg_id, invite = call
    phone.send_in_dialog(invite, "REFER", extra=("Refer-To: sip:5551234@192.0.2.1",))
    phone.received()
    node.core.outbound.notify_transfer(leg_id, 503, node.now)
    node.flush()
    (last,) = phone.requests("NOTIFY")
    assert last.body == b"SIP/2.0 503 Service Unavailable\r\n"


def test_attended_transfer_carries_replaces(
    node: Node, phone: Softphone, call: tuple[str, SipRequest]
) -> None:
    _, invite = call
    target = "<sip:1002@192.0.2.1?Replaces=abc%40host%3Bto-tag%3Dt1%3Bfrom-tag%3Df1>"
    phone.send_in_dialog(invite, "REFER", extra=(f"Refer-To: {target}",))
    (event,) = node.of(TransferRequested)
    assert isinstance(event, TransferRequested)
    assert event.replaces == "abc@host;to-tag=t1;from-tag=f1"


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ((), 400),  # RFC 3515 §2.4.1: Refer-To is mandatory
        (("Refer-To: <sip:1002@a>", "Refer-To: <sip:1003@a>"), 400),
        (("Refer-To: <sip:192.0.2.9>",), 400),  # names no agent or number
        (("Refer-To: <sip:1002@a;method=BYE>",), 403),
    ],
)
def test_unusable_refer_is_refused(
    node: Node,
    phone: Softphone,
    call: tuple[str, SipRequest],
    extra: tuple[str, ...],
    status: int,
) -> None:
    _, invite = call
    phone.send_in_dialog(invite, "REFER", extra=extra)
    assert final(phone).status == status
    assert node.of(TransferRequested) == []


def test_second_refer_while_one_runs_is_491(
    node: Node, phone: Softphone, call: tuple[str, SipRequest]
) -> None:
    _, invite = call
    phone.send_in_dialog(invite, "REFER", extra=("Refer-To: <sip:1002@a>",))
    phone.received()
    phone.send_in_dialog(invite, "REFER", extra=("Refer-To: <sip:1002@a>",))
    assert final(phone).status == 491
