"""A server transaction that has sent its final response keeps only the response's bytes.

It lives on for 64*T1 (32 s on UDP) to answer retransmissions (RFC 3261 §17.2.1, §17.2.2); at
hundreds of calls a second, parsed requests and responses kept for that long would be most of a
server's heap. The tests check what the layer can still reach (through its transactions and
timers) once the final response is out, and that retransmissions are answered all the same.
"""

from __future__ import annotations

import gc
import types

from telephony.sip.message import SipRequest, SipResponse
from telephony.sip.transaction import AckTimeout, RequestReceived, ResponseReceived, State
from tests.sip.pair import Pair, drop, requests, responses


def reachable_messages(root: object) -> list[object]:
    """The parsed SIP messages reachable from ``root`` through references."""
    seen = {id(root)}
    stack = [root]
    found: list[object] = []
    while stack:
        for child in gc.get_referents(stack.pop()):
            # Code and modules lead to every global of the process (other tests' messages
            # among them): only the layer's own data is walked.
            if id(child) in seen or isinstance(child, type | types.ModuleType | types.FunctionType):
                continue
            seen.add(id(child))
            if isinstance(child, SipRequest | SipResponse):
                found.append(child)
            stack.append(child)
    return found


def test_a_bye_answered_keeps_no_parsed_message_and_still_answers_its_retransmission() -> None:
    pair = Pair(to_uac=drop(responses(200, "BYE"), times=1))
    key = pair.uac.send_request(pair.uac.new_request("BYE", to_tag="bob-1"))
    pair.flush()
    received = pair.uas.only(RequestReceived)
    pair.uas.respond(received.transaction, 200)
    assert pair.uas.layer.server_state(received.transaction) is State.COMPLETED
    assert reachable_messages(pair.uas.layer) == []

    # The 200 was lost: timer E re-sends the BYE, and the stored bytes answer it.
    pair.advance(1.0)
    first, second = pair.sent("bob", status=200)
    assert first.message.to_bytes() == second.message.to_bytes()
    assert [e.transaction for e in pair.uac.take(ResponseReceived)] == [key]
    assert pair.uas.events == []  # the TU saw the BYE once


def test_an_invite_answered_and_never_acked_reports_the_lost_ack_from_what_it_kept() -> None:
    pair = Pair(to_uas=drop(requests("ACK")))
    invite = pair.uac.new_request("INVITE")
    pair.uac.send_request(invite)
    pair.flush()
    received = pair.uas.only(RequestReceived)
    pair.uas.respond(received.transaction, 486, to_tag="busy")
    pair.uas._requests.clear()
    assert reachable_messages(pair.uas.layer) == []
    pair.advance(40)
    # Timer G re-sent the 486 until timer H, from the bytes it kept.
    assert len(pair.sent("bob", status=486)) > 1
    lost = pair.uas.only(AckTimeout)
    assert (lost.transaction, lost.call_id, lost.status) == (
        received.transaction,
        invite.call_id,
        486,
    )
