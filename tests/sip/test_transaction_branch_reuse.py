"""An INVITE that reuses the branch of an INVITE we already refused (PyVoIP 1.6 answers a
challenge that way), and a 100 Trying withdrawn by a TU that answers at once; the transaction
layer alone, on a fake clock."""

from __future__ import annotations

from telephony.sip.message import SipRequest, SipResponse, build_response, parse_message
from telephony.sip.transaction import RequestReceived, TransactionLayer
from telephony.sip.transaction_types import Address

PHONE: Address = ("203.0.113.5", 5062)
BRANCH = "z9hG4bKreused"


def invite(cseq: int, tag: str) -> SipRequest:
    text = (
        "INVITE sip:*45@192.0.2.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 203.0.113.5:5062;branch={BRANCH}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:1001@192.0.2.1>;tag={tag}\r\n"
        "To: <sip:*45@192.0.2.1>\r\n"
        "Call-ID: reuse-1\r\n"
        f"CSeq: {cseq} INVITE\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, SipRequest)
    return message


def ack(to_tag: str) -> SipRequest:
    text = (
        "ACK sip:*45@192.0.2.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 203.0.113.5:5062;branch={BRANCH}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:1001@192.0.2.1>;tag=t1\r\n"
        f"To: <sip:*45@192.0.2.1>;tag={to_tag}\r\n"
        "Call-ID: reuse-1\r\n"
        "CSeq: 1 ACK\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, SipRequest)
    return message


def sent(layer: TransactionLayer) -> list[int]:
    out = [parse_message(t.data) for t in layer.datagrams_to_send()]
    return [m.status for m in out if isinstance(m, SipResponse)]


def refuse_first(layer: TransactionLayer) -> None:
    """The first INVITE, refused at once with 401 (its 100 withdrawn), and its ACK."""
    (received,) = layer.receive(invite(1, "t1"), PHONE, "udp", 0.0)
    assert isinstance(received, RequestReceived)
    layer.withdraw_trying(received.transaction)
    response = build_response(received.request, 401, to_tag="srv")
    layer.send_response(received.transaction, response, 0.0)
    assert sent(layer) == [401]  # no 100 before the challenge
    assert layer.receive(ack("srv"), PHONE, "udp", 0.1) == []


def test_a_new_cseq_on_a_refused_invites_branch_is_a_new_request() -> None:
    layer = TransactionLayer()
    refuse_first(layer)
    events = layer.receive(invite(2, "t2"), PHONE, "udp", 0.2)
    (received,) = events
    assert isinstance(received, RequestReceived)
    assert (received.request.cseq.number, received.request.from_.tag) == (2, "t2")
    assert sent(layer) == [100]  # a new transaction, with its own 100 Trying


def test_a_retransmission_of_the_refused_invite_is_still_absorbed() -> None:
    layer = TransactionLayer()
    (received,) = layer.receive(invite(1, "t1"), PHONE, "udp", 0.0)
    assert isinstance(received, RequestReceived)
    layer.send_response(received.transaction, build_response(received.request, 401), 0.0)
    assert sent(layer) == [100, 401]
    # The same INVITE again before the ACK: the 401 again, nothing for the TU.
    assert layer.receive(invite(1, "t1"), PHONE, "udp", 0.3) == []
    assert sent(layer) == [401]


def test_a_100_already_handed_over_cannot_be_withdrawn() -> None:
    layer = TransactionLayer()
    (received,) = layer.receive(invite(1, "t1"), PHONE, "udp", 0.0)
    assert isinstance(received, RequestReceived)
    assert sent(layer) == [100]
    layer.withdraw_trying(received.transaction)
    layer.send_response(received.transaction, build_response(received.request, 486), 0.0)
    assert sent(layer) == [486]
