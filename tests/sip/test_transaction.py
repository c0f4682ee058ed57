"""RFC 3261 §17 transactions, driven as two in-memory peers on a fake clock (no sleeps)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.sip.dialog import Dialog
from telephony.sip.headers import Headers
from telephony.sip.message import SipRequest, build_response, parse_message
from telephony.sip.timers import TimerSettings
from telephony.sip.transaction import (
    AckReceived,
    AckTimeout,
    ClientKey,
    InviteCancelled,
    RequestReceived,
    ResponseOrigin,
    ResponseReceived,
    State,
    TransactionError,
    TransactionLayer,
    TransactionSettings,
    UnknownTransactionError,
)
from telephony.sip.transaction_tables import (
    INVITE_CLIENT,
    INVITE_SERVER,
    NON_INVITE_CLIENT,
    NON_INVITE_SERVER,
    Input,
)
from telephony.sip.transaction_types import InvalidTransitionError, ServerKey
from tests.sip.pair import Pair, drop, duplicate, requests, responses

# Retransmission instants with T1 = 0.5 s, T2 = 4 s.
DOUBLING_TO_B = [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # timer A: doubles, bounded by B = 32 s
CAPPED_AT_T2 = [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]  # timers E and G


def statuses(events: list[ResponseReceived]) -> list[int]:
    return [event.response.status for event in events]


def times(wires: list) -> list[float]:  # type: ignore[type-arg]
    return [wire.at for wire in wires]


def start_invite(pair: Pair) -> tuple[SipRequest, ClientKey, RequestReceived]:
    invite = pair.uac.new_request("INVITE")
    key = pair.uac.send_request(invite)
    pair.flush()
    return invite, key, pair.uas.only(RequestReceived)


# -- timer table ----------------------------------------------------------------------------


def test_timer_values_follow_table_4_for_udp_and_tcp() -> None:
    udp = TimerSettings().for_transport("udp")
    assert (udp.a, udp.b, udp.d, udp.e, udp.f, udp.g, udp.h) == (0.5, 32, 32, 0.5, 32, 0.5, 32)
    assert (udp.i, udp.j, udp.k, udp.l, udp.m) == (5, 32, 5, 32, 32)
    tcp = TimerSettings().for_transport("TCP")
    assert (tcp.a, tcp.e, tcp.g) == (None, None, None)
    assert (tcp.d, tcp.i, tcp.j, tcp.k) == (0, 0, 0, 0)
    assert (tcp.b, tcp.f, tcp.h) == (32, 32, 32)


def test_timer_settings_reject_inconsistent_values() -> None:
    with pytest.raises(ValueError, match="T1"):
        TimerSettings(t1=5.0, t2=4.0)
    with pytest.raises(ValueError, match="32 s"):
        TimerSettings(timer_d_unreliable=10.0)


def test_tables_only_keep_timers_their_states_declare() -> None:
    for machine in (INVITE_CLIENT, NON_INVITE_CLIENT, INVITE_SERVER, NON_INVITE_SERVER):
        for state, _ in machine.table:
            assert state in machine.live, (machine.name, state)
        for transition in machine.table.values():
            assert transition.target in machine.live


def test_a_pair_missing_from_a_table_is_an_error() -> None:
    with pytest.raises(InvalidTransitionError, match="Completed"):
        INVITE_SERVER.step(State.COMPLETED, Input.TU_2XX)


# -- INVITE client and server ---------------------------------------------------------------


def test_invite_ringing_answered_and_acked() -> None:
    pair = Pair()
    uac, uas = pair.uac, pair.uas
    invite, key, received = start_invite(pair)
    uas.respond(received.transaction, 180, to_tag="bob-1")
    pair.flush()
    ok = uas.respond(received.transaction, 200, to_tag="bob-1", contact=True)
    pair.flush()

    answers = uac.take(ResponseReceived)
    assert statuses(answers) == [100, 180, 200]
    assert uac.layer.client_state(key) is State.ACCEPTED
    assert uas.layer.server_state(received.transaction) is State.ACCEPTED

    dialog = Dialog.uac(invite, answers[-1].response)
    uac.send_ack(dialog.create_ack(invite.cseq.number), invite=key)
    pair.flush()
    ack = uas.only(AckReceived)
    assert ack.transaction == received.transaction and not ack.retransmission
    assert ack.request.to.tag == ok.to.tag

    pair.advance(40)
    # The ACK stopped the 2xx retransmission; timers L and M ended both transactions.
    assert len(pair.sent("bob", status=200)) == 1
    assert uas.events == [] and uac.events == []
    assert (uac.layer.client_count, uas.layer.server_count) == (0, 0)
    assert uac.layer.next_timer() is None and uas.layer.next_timer() is None


def test_non_2xx_final_is_acked_by_the_client_transaction() -> None:
    pair = Pair()
    uac, uas = pair.uac, pair.uas
    invite, key, received = start_invite(pair)
    uas.respond(received.transaction, 486, to_tag="busy")
    pair.flush()

    assert statuses(uac.take(ResponseReceived)) == [100, 486]
    (ack,) = pair.sent("alice", method="ACK")
    assert isinstance(ack.message, SipRequest)
    # §17.1.1.3: same branch and Request-URI as the INVITE, To tag from the response.
    assert ack.message.top_via.branch == invite.top_via.branch
    assert ack.message.uri == invite.uri
    assert ack.message.to.tag == "busy"
    assert str(ack.message.cseq) == "1 ACK"
    # The ACK of a non-2xx is the transaction's business, not the TU's.
    assert uas.events == []
    assert uas.layer.server_state(received.transaction) is State.CONFIRMED
    assert uac.layer.client_state(key) is State.COMPLETED

    pair.advance(5.0)  # timer I = T4
    assert uas.layer.server_state(received.transaction) is None
    pair.advance(27.0)  # timer D = 32 s
    assert uac.layer.client_state(key) is None


def test_lost_invites_are_retransmitted_on_timer_a_until_timer_b() -> None:
    pair = Pair(to_uas=drop(requests("INVITE")))
    pair.uac.send_request(pair.uac.new_request("INVITE"))
    pair.advance(31.9)
    assert pair.uac.events == []
    pair.advance(0.2)
    assert times(pair.sent("alice", method="INVITE")) == DOUBLING_TO_B
    timeout = pair.uac.only(ResponseReceived)
    assert timeout.response.status == 408 and timeout.origin is ResponseOrigin.TIMEOUT
    assert pair.uac.layer.counters.timeouts == 1


def test_retransmitted_invite_is_absorbed_and_answered_with_the_last_response() -> None:
    pair = Pair(to_uac=drop(responses(100), times=1))
    _, key, received = start_invite(pair)
    pair.advance(0.6)  # timer A fires once; the UAS re-sends its 100
    assert len(pair.sent("alice", method="INVITE")) == 2
    assert len(pair.sent("bob", status=100)) == 2
    assert pair.uas.events == []  # the TU saw the INVITE once
    assert pair.uas.layer.counters.retransmissions_sent == 1
    pair.advance(10)  # Proceeding: no more retransmissions
    assert len(pair.sent("alice", method="INVITE")) == 2
    assert pair.uac.layer.client_state(key) is State.PROCEEDING
    assert received.request.method == "INVITE"


def test_network_duplicate_of_an_invite_reaches_the_tu_once() -> None:
    pair = Pair(to_uas=duplicate(requests("INVITE")))
    start_invite(pair)
    assert pair.uas.layer.counters.retransmissions_sent == 1
    assert len(pair.sent("bob", status=100)) == 2


def test_timer_g_retransmits_the_final_response_until_timer_h() -> None:
    pair = Pair(to_uas=drop(requests("ACK")))
    uac, uas = pair.uac, pair.uas
    _, _, received = start_invite(pair)
    uas.respond(received.transaction, 486, to_tag="busy")
    pair.advance(31.9)
    assert uas.events == []
    pair.advance(0.2)
    assert times(pair.sent("bob", status=486)) == CAPPED_AT_T2
    # Each retransmitted 486 got the ACK again; the TU saw the 486 once.
    assert len(pair.sent("alice", method="ACK")) == len(CAPPED_AT_T2)
    assert statuses(uac.take(ResponseReceived)) == [100, 486]
    lost = uas.only(AckTimeout)
    assert lost.transaction == received.transaction and lost.status == 486
    assert uas.layer.server_count == 0


def test_2xx_is_retransmitted_until_the_ack_and_the_ack_is_repeated() -> None:
    pair = Pair(to_uas=drop(requests("ACK"), times=2))
    uac, uas = pair.uac, pair.uas
    invite, key, received = start_invite(pair)
    uas.respond(received.transaction, 200, to_tag="bob-1", contact=True)
    pair.flush()
    first = [e for e in uac.take(ResponseReceived) if e.response.status == 200]
    dialog = Dialog.uac(invite, first[0].response)
    uac.send_ack(dialog.create_ack(1), invite=key)
    pair.advance(2.0)
    # 200 at 0, 0.5 and 1.5; the layer re-sent the TU's ACK for each retransmission.
    assert times(pair.sent("bob", status=200)) == [0.0, 0.5, 1.5]
    assert len(pair.sent("alice", method="ACK")) == 3
    repeats = uac.take(ResponseReceived)
    assert [e.retransmission for e in repeats] == [True, True]
    ack = uas.only(AckReceived)
    assert ack.transaction == received.transaction
    pair.advance(40)
    assert len(pair.sent("bob", status=200)) == 3
    assert uas.events == []


def test_2xx_never_acked_reports_the_lost_ack_after_64_t1() -> None:
    pair = Pair(to_uas=drop(requests("ACK")))
    uac, uas = pair.uac, pair.uas
    invite, key, received = start_invite(pair)
    uas.respond(received.transaction, 200, to_tag="bob-1", contact=True)
    pair.flush()
    answer = next(e for e in uac.take(ResponseReceived) if e.response.status == 200)
    uac.send_ack(Dialog.uac(invite, answer.response).create_ack(1), invite=key)
    pair.advance(40)
    assert times(pair.sent("bob", status=200)) == CAPPED_AT_T2
    lost = uas.only(AckTimeout)
    assert lost.status == 200


def test_forked_2xx_with_another_tag_is_not_a_retransmission() -> None:
    pair = Pair()
    uac, uas = pair.uac, pair.uas
    _, _, received = start_invite(pair)
    ok = uas.respond(received.transaction, 200, to_tag="fork-1", contact=True)
    pair.flush()
    uac.take(ResponseReceived)
    fork = parse_message(ok.to_bytes().replace(b"tag=fork-1", b"tag=fork-2"))
    events = uac.layer.receive(fork, uas.address, "UDP", pair.now)
    assert len(events) == 1
    assert isinstance(events[0], ResponseReceived) and not events[0].retransmission


# -- CANCEL -------------------------------------------------------------------------------


def test_cancel_before_answer_gets_200_and_the_invite_487() -> None:
    pair = Pair()
    uac, uas = pair.uac, pair.uas
    _, key, received = start_invite(pair)
    uas.respond(received.transaction, 180, to_tag="ring")
    pair.flush()
    uac.take(ResponseReceived)

    uac.layer.cancel(key, pair.now)
    pair.flush()
    cancelled = uas.only(InviteCancelled)
    assert cancelled.transaction == received.transaction
    assert cancelled.cancel.method == "CANCEL"
    answers = {(e.request.method, e.response.status) for e in uac.take(ResponseReceived)}
    assert answers == {("CANCEL", 200), ("INVITE", 487)}
    # §9.2: both responses carry the To tag of the INVITE's provisional response.
    assert {w.message.to.tag for w in pair.sent("bob", status=487)} == {"ring"}
    assert {w.message.to.tag for w in pair.sent("bob", status=200)} == {"ring"}
    assert len(pair.sent("alice", method="ACK")) == 1  # ACK for the 487
    # The INVITE is answered: the TU may not answer it again.
    with pytest.raises(InvalidTransitionError):
        uas.respond(received.transaction, 200, to_tag="ring")


def test_cancel_waits_for_a_provisional_response() -> None:
    quiet = TransactionSettings(send_trying=False)
    pair = Pair(uas_settings=quiet)
    uac, uas = pair.uac, pair.uas
    key = uac.send_request(uac.new_request("INVITE"))
    uac.layer.cancel(key, pair.now)
    pair.flush()
    assert pair.sent("alice", method="CANCEL") == []  # §9.1: not before a provisional
    received = uas.only(RequestReceived)
    uas.respond(received.transaction, 180, to_tag="ring")
    pair.flush()
    assert len(pair.sent("alice", method="CANCEL")) == 1
    assert uas.only(InviteCancelled).transaction == received.transaction


def test_cancel_after_the_final_response_sends_nothing() -> None:
    pair = Pair()
    _, key, received = start_invite(pair)
    pair.uas.respond(received.transaction, 486, to_tag="busy")
    pair.flush()
    pair.uac.layer.cancel(key, pair.now)
    pair.flush()
    assert pair.sent("alice", method="CANCEL") == []


def test_cancel_racing_the_200_leaves_the_call_up_then_bye_ends_it() -> None:
    pair = Pair()
    uac, uas = pair.uac, pair.uas
    invite, key, received = start_invite(pair)
    uas.respond(received.transaction, 180, to_tag="bob-1")
    pair.flush()
    # The callee answers while the caller's CANCEL is already on its way.
    ok = uas.respond(received.transaction, 200, to_tag="bob-1", contact=True)
    uac.layer.cancel(key, pair.now)
    pair.flush()

    assert uas.take(InviteCancelled) == []  # §9.2: the CANCEL came too late
    assert pair.sent("bob", status=487) == []
    answers = {(e.request.method, e.response.status) for e in uac.take(ResponseReceived)}
    assert ("INVITE", 200) in answers and ("CANCEL", 200) in answers

    caller = Dialog.uac(invite, ok)
    callee = Dialog.uas(received.request, ok)
    uac.send_ack(caller.create_ack(invite.cseq.number), invite=key)
    pair.flush()
    uas.only(AckReceived)

    bye_key = uac.send_request(caller.create_request("BYE"))
    pair.flush()
    bye = uas.only(RequestReceived)
    assert callee.receive_request(bye.request) is None
    uas.respond(bye.transaction, 200)
    pair.flush()
    done = uac.only(ResponseReceived)
    assert done.transaction == bye_key and done.response.status == 200


def test_invite_is_given_up_64_t1_after_an_unanswered_cancel() -> None:
    pair = Pair(to_uas=drop(requests("CANCEL")))
    _, key, received = start_invite(pair)
    pair.uas.respond(received.transaction, 180, to_tag="ring")
    pair.flush()
    pair.uac.take(ResponseReceived)
    pair.uac.layer.cancel(key, pair.now)
    pair.advance(31.9)
    assert pair.uac.events == []
    pair.advance(0.2)
    # §9.1: no final response 64*T1 after the CANCEL: both transactions end with a local 408.
    gave_up = {
        (e.request.method, e.response.status, e.origin) for e in pair.uac.take(ResponseReceived)
    }
    assert gave_up == {
        ("CANCEL", 408, ResponseOrigin.TIMEOUT),
        ("INVITE", 408, ResponseOrigin.TIMEOUT),
    }
    assert pair.uac.layer.client_count == 0


def test_late_ack_after_timer_l_still_reaches_the_tu() -> None:
    pair = Pair(to_uas=drop(requests("ACK"), times=1000))
    invite, key, received = start_invite(pair)
    ok = pair.uas.respond(received.transaction, 200, to_tag="bob-1", contact=True)
    pair.flush()
    ack = Dialog.uac(invite, ok).create_ack(1)
    pair.uac.send_ack(ack, invite=key)
    pair.advance(40)
    pair.uas.only(AckTimeout)
    late = pair.uas.layer.receive(parse_message(ack.to_bytes()), pair.uac.address, "UDP", 41.0)
    assert len(late) == 1 and isinstance(late[0], AckReceived)
    assert late[0].transaction is None


def test_cancel_matching_nothing_gets_481() -> None:
    pair = Pair()
    cancel = pair.uac.new_request("CANCEL")
    pair.uac.send_request(cancel)
    pair.flush()
    assert pair.uac.only(ResponseReceived).response.status == 481
    assert pair.uas.events == []
    assert pair.uas.layer.counters.unmatched_cancels == 1


# -- non-INVITE -----------------------------------------------------------------------------


def test_non_invite_retransmits_on_timer_e_capped_at_t2_until_timer_f() -> None:
    pair = Pair(to_uas=drop(requests("OPTIONS")))
    pair.uac.send_request(pair.uac.new_request("OPTIONS"))
    pair.advance(40)
    assert times(pair.sent("alice", method="OPTIONS")) == CAPPED_AT_T2
    timeout = pair.uac.only(ResponseReceived)
    assert timeout.response.status == 408 and timeout.origin is ResponseOrigin.TIMEOUT


def test_non_invite_in_proceeding_retransmits_every_t2() -> None:
    pair = Pair()
    uac, uas = pair.uac, pair.uas
    uac.send_request(uac.new_request("OPTIONS"))
    pair.flush()
    received = uas.only(RequestReceived)
    uas.respond(received.transaction, 100)
    pair.advance(10)
    assert times(pair.sent("alice", method="OPTIONS")) == [0.0, 0.5, 4.5, 8.5]
    # The server answered each retransmission with its last provisional response.
    assert len(pair.sent("bob", status=100)) == 4
    uas.respond(received.transaction, 200)
    pair.flush()
    assert statuses(uac.take(ResponseReceived))[-1] == 200
    pair.advance(5)  # timer K = T4
    assert uac.layer.client_count == 0
    pair.advance(30)  # timer J = 64*T1
    assert uas.layer.server_count == 0
    assert len(pair.sent("alice", method="OPTIONS")) == 4


def test_second_final_response_from_the_tu_is_discarded() -> None:
    pair = Pair()
    pair.uac.send_request(pair.uac.new_request("OPTIONS"))
    pair.flush()
    received = pair.uas.only(RequestReceived)
    pair.uas.respond(received.transaction, 200)
    pair.uas.respond(received.transaction, 500)  # §17.2.2: discarded in Completed
    pair.flush()
    assert statuses(pair.uac.take(ResponseReceived)) == [200]


def test_transport_error_reaches_the_tu_as_503() -> None:
    pair = Pair()
    key = pair.uac.send_request(pair.uac.new_request("OPTIONS"))
    events = pair.uac.layer.transport_error(key, pair.now)
    assert len(events) == 1 and isinstance(events[0], ResponseReceived)
    assert events[0].response.status == 503
    assert events[0].origin is ResponseOrigin.TRANSPORT_ERROR
    assert pair.uac.layer.client_state(key) is None


# -- reliable transport ---------------------------------------------------------------------


def test_tcp_invite_is_sent_once_and_still_times_out_on_timer_b() -> None:
    pair = Pair(transport="TCP", to_uas=drop(requests("INVITE")))
    pair.uac.send_request(pair.uac.new_request("INVITE"))
    pair.advance(40)
    assert times(pair.sent("alice", method="INVITE")) == [0.0]
    assert pair.uac.only(ResponseReceived).response.status == 408


def test_tcp_non_2xx_ends_both_transactions_at_once() -> None:
    pair = Pair(transport="TCP")
    _, key, received = start_invite(pair)
    pair.uas.respond(received.transaction, 486, to_tag="busy")
    pair.flush()
    # Timer D and timer I are zero on a reliable transport.
    assert pair.uac.layer.client_state(key) is None
    assert pair.uas.layer.server_state(received.transaction) is None
    assert pair.uac.layer.next_timer() is None


def test_tcp_final_response_is_not_retransmitted_but_timer_h_runs() -> None:
    pair = Pair(transport="TCP", to_uas=drop(requests("ACK")))
    _, _, received = start_invite(pair)
    pair.uas.respond(received.transaction, 486, to_tag="busy")
    pair.advance(40)
    assert times(pair.sent("bob", status=486)) == [0.0]
    assert pair.uas.only(AckTimeout).status == 486


def test_tcp_non_invite_completes_without_lingering() -> None:
    pair = Pair(transport="TCP")
    key = pair.uac.send_request(pair.uac.new_request("OPTIONS"))
    pair.flush()
    received = pair.uas.only(RequestReceived)
    pair.uas.respond(received.transaction, 200)
    pair.flush()
    assert pair.uac.layer.client_state(key) is None  # timer K = 0
    assert pair.uas.layer.server_state(received.transaction) is None  # timer J = 0


def test_tcp_2xx_is_still_retransmitted_until_the_ack() -> None:
    # §13.3.1.4: a later hop may be UDP, so the UAS core retransmits the 2xx regardless.
    pair = Pair(transport="TCP", to_uas=drop(requests("ACK")))
    invite, key, received = start_invite(pair)
    ok = pair.uas.respond(received.transaction, 200, to_tag="bob-1", contact=True)
    pair.flush()
    pair.uac.send_ack(Dialog.uac(invite, ok).create_ack(1), invite=key)
    pair.advance(2.0)
    assert times(pair.sent("bob", status=200)) == [0.0, 0.5, 1.5]


# -- matching and robustness ----------------------------------------------------------------


def test_stray_response_is_dropped_and_counted() -> None:
    layer = TransactionLayer()
    options = Pair().uac.new_request("OPTIONS")
    options.headers.add("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnobody")
    stray = parse_message(build_response(options, 200).to_bytes())
    assert layer.receive(stray, ("192.0.2.2", 5060), "UDP", 0.0) == []
    assert layer.counters.stray_responses == 1


def _rfc2543_request(method: str, *, to_tag: str | None = None) -> SipRequest:
    to = "<sip:bob@192.0.2.2>" + (f";tag={to_tag}" if to_tag else "")
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP 192.0.2.9:5060"),
            ("From", "<sip:old@192.0.2.9>;tag=old"),
            ("To", to),
            ("Call-ID", "legacy@192.0.2.9"),
            ("CSeq", f"7 {method}"),
            ("Contact", "<sip:old@192.0.2.9>"),
        ]
    )
    return SipRequest(method=method, uri="sip:bob@192.0.2.2", headers=headers)


def test_rfc2543_peer_without_branch_is_matched_on_request_fields() -> None:
    layer = TransactionLayer()
    peer = ("192.0.2.9", 5060)
    events = layer.receive(_rfc2543_request("INVITE"), peer, "UDP", 0.0)
    assert len(events) == 1 and isinstance(events[0], RequestReceived)
    assert layer.receive(_rfc2543_request("INVITE"), peer, "UDP", 0.1) == []  # absorbed
    response = build_response(events[0].request, 486, to_tag="busy")
    layer.send_response(events[0].transaction, response, 0.2)
    assert layer.receive(_rfc2543_request("ACK", to_tag="busy"), peer, "UDP", 0.3) == []
    assert layer.server_state(events[0].transaction) is State.CONFIRMED


def test_overload_gets_a_stateless_503_with_retry_after() -> None:
    settings = TransactionSettings(max_server_transactions=1)
    pair = Pair(uas_settings=settings)
    pair.uac.send_request(pair.uac.new_request("OPTIONS", call_id="one"))
    pair.uac.send_request(pair.uac.new_request("OPTIONS", call_id="two"))
    pair.flush()
    (busy,) = pair.sent("bob", status=503)
    assert busy.message.headers.get("Retry-After") == "5"
    assert len(pair.uas.take(RequestReceived)) == 1


def test_tu_misuse_is_reported_as_local_errors() -> None:
    pair = Pair()
    with pytest.raises(TransactionError, match="send_ack"):
        pair.uac.send_request(pair.uac.new_request("ACK"))
    unbranched = pair.uac.new_request("OPTIONS")
    unbranched.headers.add("Via", "SIP/2.0/UDP 192.0.2.1:5060")
    with pytest.raises(TransactionError, match="magic cookie"):
        pair.uac.send_request(unbranched)
    gone = build_response(pair.uac.new_request("OPTIONS"), 200)
    with pytest.raises(UnknownTransactionError):
        pair.uas.layer.send_response(
            ServerKey(branch="z9hG4bKx", sent_by="192.0.2.1:5060", method="OPTIONS"),
            gone,
            0.0,
        )


# -- any loss pattern -----------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(copies=st.lists(st.integers(min_value=0, max_value=2), max_size=30))
def test_call_setup_converges_whatever_the_link_loses_or_duplicates(copies: list[int]) -> None:
    """INVITE -> 200 -> ACK over a link that drops or duplicates any of the first messages:
    each TU sees one INVITE and one outcome, and both layers end empty with no timer left."""
    pattern = iter(copies)
    pair = Pair(to_uas=lambda _: next(pattern, 1), to_uac=lambda _: next(pattern, 1))
    uac, uas = pair.uac, pair.uas
    invite = uac.new_request("INVITE")
    key = uac.send_request(invite)
    invites_seen = 0
    outcomes: list[int] = []
    for _ in range(400):  # 100 s in steps of 250 ms, the TUs reacting between steps
        pair.advance(0.25)
        for received in uas.take(RequestReceived):
            invites_seen += 1
            uas.respond(received.transaction, 200, to_tag="bob-1", contact=True)
        for answer in uac.take(ResponseReceived):
            if answer.response.status >= 200 and not answer.retransmission:
                outcomes.append(answer.response.status)
                if answer.response.status == 200:
                    ack = Dialog.uac(invite, answer.response).create_ack(1)
                    uac.send_ack(ack, invite=key)
        uas.take(AckReceived)
        uas.take(AckTimeout)
    assert invites_seen <= 1
    assert outcomes in ([200], [408])
    assert outcomes == [408] or invites_seen == 1
    assert (uac.layer.client_count, uas.layer.server_count) == (0, 0)
    assert uac.layer.next_timer() is None and uas.layer.next_timer() is None
