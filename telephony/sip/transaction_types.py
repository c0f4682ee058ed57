"""Values shared by the transaction layer: transaction keys, what it hands the TU, what it sends.

The transaction user (TU, RFC 3261 §17) is the UA core above: it receives the `TuEvent`s below
from `TransactionLayer.receive`/`on_timer`/`transport_error`, and the I/O layer transmits every
`Transmit` taken from `TransactionLayer.datagrams_to_send`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from telephony.sip.message import SipRequest, SipResponse

Address = tuple[str, int]
"""A (host, port) pair; the host is an IP literal or a name as the TU resolved it."""

MAGIC_COOKIE = "z9hG4bK"
"""RFC 3261 §8.1.1.7: branch IDs of RFC 3261 elements start with this, RFC 2543 ones do not."""


class TransactionError(Exception):
    """Local error: the TU used the transaction layer wrongly (h11's LocalProtocolError)."""


class UnknownTransactionError(TransactionError, LookupError):
    """The TU named a transaction that does not exist (never did, or has terminated)."""


class InvalidTransitionError(TransactionError):
    """An input arrived that the state's transition table does not list: a bug, never ignored."""

    def __init__(self, machine: str, state: str, event: str) -> None:
        super().__init__(f"{machine}: no transition for {event} in state {state}")
        self.machine = machine
        self.state = state
        self.event = event


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientKey:
    """RFC 3261 §17.1.3: a response matches a client transaction by top Via branch + CSeq method.

    The method is the CSeq method, so a CANCEL (same branch as its INVITE) is a transaction of its
    own.
    """

    branch: str
    method: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerKey:
    """RFC 3261 §17.2.3: branch + top Via sent-by + method; ACK is keyed as the INVITE it acks."""

    branch: str
    sent_by: str
    method: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LegacyServerKey:
    """RFC 3261 §17.2.3 fallback for RFC 2543 peers, whose branch lacks the magic cookie.

    Request-URI, From tag, Call-ID, CSeq number and the whole top Via identify the transaction;
    an ACK also has to carry the To tag of the response it acknowledges (checked on match).
    """

    request_uri: str
    from_tag: str | None
    call_id: str
    cseq_number: int
    top_via: str
    method: str


ServerTransactionId = ServerKey | LegacyServerKey
TransactionId = ClientKey | ServerKey | LegacyServerKey


@dataclass(frozen=True, slots=True, kw_only=True)
class Transmit:
    """One message to put on the wire: for a stream transport, on the connection to
    `destination` (the one a request came in on, for responses: RFC 3261 §18.2.2).

    `transaction` names the transaction that sent it, so that a failed send can be reported back
    with `TransactionLayer.transport_error` (§17.1.4, §17.2.4); None for stateless sends.
    """

    data: bytes
    destination: Address
    transport: str
    transaction: TransactionId | None = None


class ResponseOrigin(enum.Enum):
    """Where a response handed to the TU came from."""

    PEER = "peer"
    TIMEOUT = "timeout"  # timer B or F, or no final answer 64*T1 after CANCEL: a local 408
    TRANSPORT_ERROR = "transport_error"  # RFC 3261 §8.1.3.1: treated as a local 503


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestReceived:
    """A new request (not ACK, not a matched CANCEL) opened a server transaction.

    The TU answers with `TransactionLayer.send_response(transaction, response, now)`.
    """

    transaction: ServerTransactionId
    request: SipRequest
    source: Address
    transport: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AckReceived:
    """An ACK that belongs to the TU: the ACK of a 2xx (RFC 3261 §17.1.1.3, §13.3.1.4).

    `transaction` is the INVITE server transaction whose 2xx it acknowledged, when the layer still
    knows it; `retransmission` is True when that 2xx was already acknowledged.
    """

    request: SipRequest
    source: Address
    transport: str
    transaction: ServerTransactionId | None = None
    retransmission: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseReceived:
    """A response for a client transaction, or the local 408/503 that stands for one.

    `retransmission` is True for a 2xx the transaction has passed up before (same To tag): the
    layer has already re-sent the ACK the TU gave it for that 2xx, if any (§13.2.2.4).
    """

    transaction: ClientKey
    request: SipRequest
    response: SipResponse
    origin: ResponseOrigin = ResponseOrigin.PEER
    retransmission: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class InviteCancelled:
    """A CANCEL matched a pending INVITE (RFC 3261 §9.2): the layer has answered the CANCEL 200
    and the INVITE 487. The TU stops whatever it was doing for the INVITE (ringing an agent)."""

    transaction: ServerTransactionId
    invite: SipRequest
    cancel: SipRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class AckTimeout:
    """No ACK came for a final response to an INVITE within 64*T1.

    For a non-2xx (timer H, §17.2.1) the transaction simply failed. For a 2xx (§13.3.1.4) the
    dialog is confirmed on paper only: the UAS core should end it with a BYE.
    """

    transaction: ServerTransactionId
    call_id: str
    status: int
    """The final response that was never acknowledged."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestSummary:
    """What identifies a server transaction's request. The transaction does not keep the
    parsed request past its final response: from then on it only answers retransmissions, with
    the response's bytes (RFC 3261 §17.2.1, §17.2.2), for up to 64*T1."""

    method: str
    call_id: str
    cseq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerTransportError:
    """The transport could not deliver a response of a server transaction (§17.2.4)."""

    transaction: ServerTransactionId
    request: RequestSummary


TuEvent = (
    RequestReceived
    | AckReceived
    | ResponseReceived
    | InviteCancelled
    | AckTimeout
    | ServerTransportError
)


@dataclass(slots=True)
class TransactionCounters:
    """What the layer dropped or absorbed, for metrics and tests. Mutable; only grows."""

    stray_responses: int = 0
    absorbed_requests: int = 0
    absorbed_responses: int = 0
    retransmissions_sent: int = 0
    unmatched_cancels: int = 0
    malformed_dropped: int = 0
    overload_rejections: int = 0
    timeouts: int = 0
