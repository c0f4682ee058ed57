"""RFC 3261 §12 dialogs (with §13–§15 re-INVITE, glare and BYE) over two in-memory peers."""

from __future__ import annotations

import pytest

from telephony.sip.dialog import (
    Dialog,
    DialogError,
    DialogSet,
    DialogState,
    copy_record_route,
)
from telephony.sip.dialog_checks import MergedRequestDetector
from telephony.sip.message import SipRequest, build_response
from telephony.sip.transaction import (
    AckReceived,
    RequestReceived,
    ResponseReceived,
    ServerKey,
)
from tests.sip.pair import Pair, Wire, establish


def midpoint(low: float, high: float) -> float:
    return (low + high) / 2


def proxies_record_route(wire: Wire) -> None:
    """Two loose-routing proxies, p1 next to alice and p2 next to bob, record-route the INVITE."""
    message = wire.message
    if isinstance(message, SipRequest) and message.method == "INVITE" and message.to.tag is None:
        message.headers.prepend("Record-Route", "<sip:p1.example.net;lr>")
        message.headers.prepend("Record-Route", "<sip:p2.example.net;lr>")


def test_route_sets_come_from_record_route_reversed_for_the_uac() -> None:
    pair = Pair(rewrite=proxies_record_route)
    uac, uas = pair.uac, pair.uas
    invite = uac.new_request("INVITE")
    key = uac.send_request(invite)
    pair.flush()
    received = uas.only(RequestReceived)
    ok = build_response(
        received.request, 200, to_tag="bob-1", headers=[("Contact", f"<{uas.contact}>")]
    )
    copy_record_route(received.request, ok)
    pair.uas.layer.send_response(received.transaction, ok, pair.now)
    callee = Dialog.uas(received.request, ok)
    pair.flush()
    answer = next(e for e in uac.take(ResponseReceived) if e.response.status == 200)
    caller = Dialog.uac(invite, answer.response)

    assert callee.route_set == ("<sip:p2.example.net;lr>", "<sip:p1.example.net;lr>")
    assert caller.route_set == ("<sip:p1.example.net;lr>", "<sip:p2.example.net;lr>")
    assert caller.remote_target == uas.contact and callee.remote_target == uac.contact

    ack = caller.create_ack(invite.cseq.number)
    uac.send_ack(ack, invite=key)
    bye = caller.create_request("BYE")
    # §12.2.1.1, loose routing: the Request-URI stays the remote target, Route is the set.
    assert bye.uri == uas.contact
    assert bye.headers.get_all("Route") == list(caller.route_set)
    assert ack.headers.get_all("Route") == list(caller.route_set)
    assert str(caller.next_hop()) == "sip:p1.example.net;lr"
    reverse = callee.create_request("BYE")
    assert reverse.uri == uac.contact
    assert reverse.headers.get_all("Route") == list(callee.route_set)


def test_strict_router_takes_the_request_uri_and_the_target_goes_last() -> None:
    pair = Pair()
    invite = pair.uac.new_request("INVITE")
    invite.headers.add("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1")
    ok = build_response(
        invite,
        200,
        to_tag="bob-1",
        headers=[
            ("Record-Route", "<sip:loose.example.net;lr>"),
            ("Record-Route", "<sip:strict.example.net;method=INVITE>"),
            ("Contact", "<sip:bob@192.0.2.2:5060>"),
        ],
    )
    caller = Dialog.uac(invite, ok)
    bye = caller.create_request("BYE")
    assert bye.uri == "sip:strict.example.net"
    assert bye.headers.get_all("Route") == [
        "<sip:loose.example.net;lr>",
        "<sip:bob@192.0.2.2:5060>",
    ]


def test_ack_for_2xx_reuses_the_invite_cseq_and_later_requests_count_on() -> None:
    pair = Pair()
    caller, _, _ = establish(pair)
    (ack,) = pair.sent("alice", method="ACK")
    assert isinstance(ack.message, SipRequest)
    assert str(ack.message.cseq) == "1 ACK"
    assert ack.message.headers.get("Via") != pair.sent("alice", method="INVITE")[
        0
    ].message.headers.get("Via")
    assert str(caller.create_request("INFO").cseq) == "2 INFO"
    assert str(caller.create_request("BYE").cseq) == "3 BYE"


def test_bye_ends_the_dialog_and_a_later_request_gets_481() -> None:
    pair = Pair()
    uac, uas = pair.uac, pair.uas
    caller, callee, _ = establish(pair)
    uas.take(AckReceived)
    dialogs = DialogSet()
    dialogs.add(callee)

    bye = caller.create_request("BYE")
    uac.send_request(bye)
    pair.flush()
    received = uas.only(RequestReceived)
    routed = dialogs.dispatch(received.request)
    assert routed.dialog is callee and routed.rejection is None
    assert callee.state is DialogState.TERMINATED and len(dialogs) == 0
    uas.respond(received.transaction, 200)
    pair.flush()
    done = uac.only(ResponseReceived)
    caller.response_received(bye, done.response)
    assert caller.state is DialogState.TERMINATED

    late = pair.uac.new_request("INFO", cseq=9, to_tag=callee.local_tag)
    late_routed = dialogs.dispatch(late)
    assert late_routed.rejection is not None and late_routed.rejection.status == 481
    assert dialogs.dispatch(pair.uac.new_request("ACK", to_tag="nobody")).drop


def test_request_with_a_lower_cseq_gets_500() -> None:
    pair = Pair()
    _, callee, _ = establish(pair)
    info = pair.uac.new_request("INFO", cseq=5, to_tag=callee.local_tag)
    assert callee.receive_request(info) is None
    older = pair.uac.new_request("INFO", cseq=3, to_tag=callee.local_tag)
    rejection = callee.receive_request(older)
    assert rejection is not None and rejection.status == 500
    response = rejection.response_to(older)
    assert response.status == 500 and response.to.tag == callee.local_tag
    assert callee.remote_seq == 5


def test_reinvite_glare_gets_491_on_both_sides_then_the_non_owner_retries_first() -> None:
    pair = Pair()
    uac, uas = pair.uac, pair.uas
    caller, callee, _ = establish(pair)
    uas.take(AckReceived)
    caller_set, callee_set = DialogSet(), DialogSet()
    caller_set.add(caller)
    callee_set.add(callee)
    nodes = {uac.name: (uac, caller, caller_set), uas.name: (uas, callee, callee_set)}

    # Both sides send a re-INVITE (say, to put the call on hold) at the same moment.
    offers = {name: dialog.create_request("INVITE") for name, (_, dialog, _) in nodes.items()}
    for name, (node, _, _) in nodes.items():
        node.send_request(offers[name])
    pair.flush()
    for node, _, dialogs in nodes.values():
        incoming = node.only(RequestReceived)
        routed = dialogs.dispatch(incoming.request)
        assert routed.rejection is not None and routed.rejection.status == 491
        node.layer.send_response(
            incoming.transaction, routed.rejection.response_to(incoming.request), pair.now
        )
    pair.flush()
    retry_at: dict[str, float] = {}
    for name, (node, dialog, _) in nodes.items():
        (answer,) = [e for e in node.take(ResponseReceived) if e.response.status >= 200]
        assert answer.response.status == 491
        dialog.response_received(offers[name], answer.response)
        assert not dialog.invite_pending
        retry_at[name] = pair.now + dialog.glare_retry_delay(midpoint)
    # §14.1: the Call-ID owner (the caller) waits 2.1-4 s, the callee 0-2 s.
    assert retry_at == {"alice": 3.05, "bob": 1.0}

    pair.advance(1.0)
    retry = callee.create_request("INVITE")
    uas.send_request(retry)
    pair.flush()
    incoming = uac.only(RequestReceived)
    assert caller_set.dispatch(incoming.request).rejection is None
    accepted = uac.respond(incoming.transaction, 200, contact=True)
    caller.response_sent(incoming.request, accepted)
    pair.flush()
    answer = next(e for e in uas.take(ResponseReceived) if e.response.status == 200)
    callee.response_received(retry, answer.response)
    uas.send_ack(callee.create_ack(retry.cseq.number), invite=answer.transaction)
    pair.flush()
    assert uac.only(AckReceived).request.cseq.number == retry.cseq.number
    assert not caller.invite_pending and not callee.invite_pending
    # The caller may now send its own re-INVITE.
    assert caller.create_request("INVITE").method == "INVITE"


def test_second_incoming_invite_before_the_first_is_answered_gets_500_retry_after() -> None:
    pair = Pair()
    _, callee, _ = establish(pair)
    first = pair.uac.new_request("INVITE", cseq=2, to_tag=callee.local_tag)
    assert callee.receive_request(first) is None
    second = pair.uac.new_request("INVITE", cseq=3, to_tag=callee.local_tag)
    rejection = callee.receive_request(second, uniform=midpoint)
    assert rejection is not None and rejection.status == 500
    assert dict(rejection.headers) == {"Retry-After": "5"}
    with pytest.raises(DialogError, match=r"14\.1"):
        callee.create_request("INVITE")


def test_target_refresh_updates_the_remote_target_once_accepted() -> None:
    pair = Pair()
    caller, callee, _ = establish(pair)
    reinvite = caller.create_request("INVITE")
    reinvite.headers.set("Contact", "<sip:alice@198.51.100.7:5062>")
    assert callee.receive_request(reinvite) is None
    assert callee.remote_target == pair.uac.contact  # not before the 2xx (RFC 6141)
    ok = build_response(
        reinvite, 200, headers=[("Contact", "<sip:bob@203.0.113.5:5080;transport=tcp>")]
    )
    callee.response_sent(reinvite, ok)
    assert callee.remote_target == "sip:alice@198.51.100.7:5062"
    caller.response_received(reinvite, ok)
    assert caller.remote_target == "sip:bob@203.0.113.5:5080;transport=tcp"


def test_early_dialog_is_confirmed_by_200_or_ended_by_a_rejection() -> None:
    pair = Pair()
    invite = pair.uac.new_request("INVITE")
    invite.headers.add("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1")
    ringing = build_response(
        invite, 180, to_tag="bob-1", headers=[("Contact", "<sip:bob@192.0.2.2>")]
    )
    answered = Dialog.uac(invite, ringing)
    assert answered.state is DialogState.EARLY and answered.invite_pending
    answered.response_received(invite, build_response(invite, 200, to_tag="bob-1"))
    assert answered.state.value == "confirmed" and not answered.invite_pending

    refused = Dialog.uac(invite, ringing)
    refused.response_received(invite, build_response(invite, 486, to_tag="bob-1"))
    assert refused.state is DialogState.TERMINATED
    with pytest.raises(DialogError, match="terminated"):
        refused.create_request("BYE")


def test_481_or_408_to_an_in_dialog_request_ends_the_dialog() -> None:
    pair = Pair()
    caller, _, _ = establish(pair)
    info = caller.create_request("INFO")
    caller.response_received(info, build_response(info, 481))
    assert caller.state is DialogState.TERMINATED


def test_dialog_ids_and_the_secure_flag() -> None:
    pair = Pair()
    invite = pair.uac.new_request("INVITE")
    invite.uri = "sips:bob@192.0.2.2"
    ok = build_response(invite, 200, to_tag="bob-1", headers=[("Contact", "<sips:bob@b>")])
    callee = Dialog.uas(invite, ok, transport="TLS")
    assert callee.secure
    assert not Dialog.uas(invite, ok, transport="TCP").secure
    dialogs = DialogSet()
    dialogs.add(callee)
    with pytest.raises(DialogError, match="already exists"):
        dialogs.add(Dialog.uas(invite, ok))
    assert (callee.id.call_id, callee.id.local_tag, callee.id.remote_tag) == (
        "call-1@cxos.test",
        "bob-1",
        "uac-tag",
    )


def test_merged_request_gets_482_and_max_forwards_zero_gets_483() -> None:
    pair = Pair()
    detector = MergedRequestDetector(window=32.0)
    invite = pair.uac.new_request("INVITE")
    first = ServerKey(branch="z9hG4bKpath1", sent_by="p1.example.net", method="INVITE")
    second = ServerKey(branch="z9hG4bKpath2", sent_by="p2.example.net", method="INVITE")
    assert detector.check(invite, first, now=0.0) is None
    assert detector.check(invite, first, now=0.1) is None  # same transaction
    merged = detector.check(invite, second, now=0.2)
    assert merged is not None and merged.status == 482
    assert detector.check(invite, second, now=40.0) is None  # forgotten after the window
    # Max-Forwards 0 → 483 is the UA core's check (telephony/sip/checks.py), tested in
    # tests/sip/test_sip_core.py.
