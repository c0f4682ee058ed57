"""Server transactions (RFC 3261 §17.2): INVITE (§17.2.1, RFC 6026 §7.1) and non-INVITE (§17.2.2).

A server transaction remembers the last response it sent and re-sends it when the request is
retransmitted, so the TU sees each request once.

Once the final response is sent, the transaction keeps only what answering retransmissions
needs: that response's bytes, where they go, the To tag and the request's identity (method,
Call-ID, CSeq). The parsed request and response are released then: a transaction lives on for
64*T1 = 32 s after its final response on UDP (timers H, J and L), so at hundreds of calls a second
the parsed messages would make most of the heap, and every full garbage collection walks it.
"""

from __future__ import annotations

import logging
from typing import Protocol

from telephony.sip.header_values import Via
from telephony.sip.message import SipMessage, SipRequest, SipResponse
from telephony.sip.timers import TransactionTimers, is_reliable
from telephony.sip.transaction_base import LayerContext, Transaction
from telephony.sip.transaction_tables import (
    INVITE_SERVER,
    NON_INVITE_SERVER,
    Action,
    Input,
    Timer,
)
from telephony.sip.transaction_types import (
    AckReceived,
    AckTimeout,
    Address,
    ClientKey,
    RequestSummary,
    ServerTransactionId,
    ServerTransportError,
    TransactionError,
)

logger = logging.getLogger(__name__)

DEFAULT_PORTS = {"TLS": 5061, "WSS": 443, "WS": 80}


class ServerLayerContext(LayerContext, Protocol):
    def expect_ack(self, transaction: ServerTransaction, to_tag: str | None) -> None: ...


def response_destination(via: Via, source: Address, transport: str) -> Address:
    """Where responses to a request go (RFC 3261 §18.2.2, RFC 3581 §4).

    On a reliable transport: back over the connection the request came in on (the I/O layer
    keys connections by the peer's address). On UDP with `rport`: the source address and port.
    Otherwise the source address (which is what `received` records) and the sent-by port.
    """
    if is_reliable(transport) or via.has_rport:
        return source
    port = via.port if via.port is not None else DEFAULT_PORTS.get(transport.upper(), 5060)
    return (source[0], port)


def tu_input(status: int) -> Input:
    """Classify a response the TU sends as a table input."""
    if not 100 <= status <= 699:
        raise TransactionError(f"status {status} is not a SIP response code")
    if status < 200:
        return Input.TU_1XX
    if status < 300:
        return Input.TU_2XX
    return Input.TU_FINAL_NON2XX


class ServerTransaction(Transaction):
    """An INVITE or non-INVITE server transaction, chosen by the request method."""

    __slots__ = (
        "_ack_source",
        "_ack_transport",
        "_last_bytes",
        "_request",
        "ack_keys",
        "acked",
        "call_id",
        "cseq",
        "destination",
        "final_status",
        "source",
        "to_tag",
    )

    _layer: ServerLayerContext

    def __init__(
        self,
        *,
        layer: ServerLayerContext,
        key: ServerTransactionId,
        request: SipRequest,
        source: Address,
        transport: str,
        timers: TransactionTimers,
    ) -> None:
        machine = INVITE_SERVER if request.method == "INVITE" else NON_INVITE_SERVER
        super().__init__(
            machine=machine,
            layer=layer,
            transaction_id=key,
            method=request.method,
            transport=transport,
            timers=timers,
        )
        self._request: SipRequest | None = request
        self.call_id = request.call_id
        self.cseq = request.cseq.number
        self.source = source
        self.destination = response_destination(request.top_via, source, transport)
        #: Status of the final response sent, once it is.
        self.final_status: int | None = None
        self.to_tag: str | None = None
        self.acked = False
        self._last_bytes: bytes | None = None
        self._ack_source = source
        self._ack_transport = transport
        # (Call-ID, CSeq number, To tag) of each 2xx sent, under which the layer awaits its ACK.
        self.ack_keys: tuple[tuple[str, int, str | None], ...] = ()

    @property
    def key(self) -> ServerTransactionId:
        key = self.id
        assert not isinstance(key, ClientKey)
        return key

    @property
    def request(self) -> SipRequest:
        """The request, until the final response is sent (see the module's docstring)."""
        if self._request is None:
            raise TransactionError(f"{self.id}: the request is released after the final response")
        return self._request

    @property
    def summary(self) -> RequestSummary:
        return RequestSummary(method=self.method, call_id=self.call_id, cseq=self.cseq)

    def on_retransmission(self, request: SipRequest, now: float) -> None:
        self.fire(Input.RECV_REQUEST, now, request)

    def on_ack(self, ack: SipRequest, source: Address, transport: str, now: float) -> None:
        self._ack_source = source
        self._ack_transport = transport
        self.fire(Input.RECV_ACK, now, ack)

    def respond(self, response: SipResponse, now: float) -> None:
        self.fire(tu_input(response.status), now, response)

    def _send(self, data: bytes) -> None:
        self._layer.transmit(data, self.destination, self.transport, self.id)

    def _do_specific(self, action: Action, now: float, message: SipMessage | None) -> None:
        if action is Action.SEND_RESPONSE:
            assert isinstance(message, SipResponse)
            status = message.status
            self.to_tag = message.to.tag
            self._last_bytes = message.to_bytes()
            self._send(self._last_bytes)
            if status >= 200:
                self.final_status = status
                self._request = None  # only retransmissions are left: the bytes answer them
                if self.is_invite and status < 300:
                    self._layer.expect_ack(self, self.to_tag)
        elif action is Action.RESEND_RESPONSE:
            if self._last_bytes is not None:
                self._layer.counters.retransmissions_sent += 1
                self._send(self._last_bytes)
            elif message is not None:
                # Proceeding before any provisional: nothing to repeat yet.
                self._layer.counters.absorbed_requests += 1
        elif action is Action.PASS_ACK:
            assert isinstance(message, SipRequest)
            self._layer.deliver(
                AckReceived(
                    request=message,
                    source=self._ack_source,
                    transport=self._ack_transport,
                    transaction=self.key,
                    retransmission=self.acked,
                )
            )
        elif action is Action.STOP_2XX_RETRANSMIT:
            self.acked = True
            self._armed.pop(Timer.RETRANSMIT_2XX, None)
        elif action is Action.INFORM_ACK_TIMEOUT:
            self._inform_ack_timeout()
        elif action is Action.INFORM_ACK_TIMEOUT_IF_UNACKED:
            if not self.acked:
                self._inform_ack_timeout()
        elif action is Action.INFORM_TRANSPORT_ERROR:
            self._layer.deliver(ServerTransportError(transaction=self.key, request=self.summary))
        else:
            super()._do_specific(action, now, message)

    def _inform_ack_timeout(self) -> None:
        assert self.final_status is not None
        self._layer.counters.timeouts += 1
        self._layer.deliver(
            AckTimeout(transaction=self.key, call_id=self.call_id, status=self.final_status)
        )
