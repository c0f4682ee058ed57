"""Client transactions (RFC 3261 §17.1): INVITE (§17.1.1, RFC 6026 §7.2) and non-INVITE (§17.1.2).

Also the two requests a client transaction derives from its INVITE: the ACK for a non-2xx final
response (§17.1.1.3), which belongs to the transaction, and the CANCEL (§9.1), which is a
transaction of its own with the INVITE's branch.
"""

from __future__ import annotations

import logging
from typing import Protocol

from telephony.sip.headers import Headers
from telephony.sip.message import SipMessage, SipRequest, SipResponse, build_response
from telephony.sip.timers import TransactionTimers
from telephony.sip.transaction_base import LayerContext, Transaction
from telephony.sip.transaction_tables import (
    INVITE_CLIENT,
    NON_INVITE_CLIENT,
    Action,
    Input,
    State,
    Timer,
)
from telephony.sip.transaction_types import (
    Address,
    ClientKey,
    ResponseOrigin,
    ResponseReceived,
    Transmit,
)

logger = logging.getLogger(__name__)


class ClientLayerContext(LayerContext, Protocol):
    def start_cancel(self, invite: ClientTransaction, now: float) -> None: ...


def response_input(status: int) -> Input:
    """Classify a received status code as a table input."""
    if status < 200:
        return Input.RECV_1XX
    if status < 300:
        return Input.RECV_2XX
    return Input.RECV_FINAL_NON2XX


def build_non2xx_ack(invite: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK a client INVITE transaction sends for a 300-699 response (RFC 3261 §17.1.1.3).

    Request-URI, Call-ID, From and the single top Via are the INVITE's (same branch), To is the
    response's (with its tag), CSeq has the INVITE's number and method ACK, and the INVITE's
    Route header fields are kept so the ACK follows the same path.
    """
    headers = Headers()
    top_via = invite.headers.get("Via")
    if top_via is not None:
        headers.add("Via", top_via)
    for name in ("Max-Forwards", "From"):
        value = invite.headers.get(name)
        if value is not None:
            headers.add(name, value)
    to = response.headers.get("To") or invite.headers.get("To")
    if to is not None:
        headers.add("To", to)
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq.number} ACK")
    for route in invite.headers.get_lines("Route"):
        headers.add("Route", route)
    return SipRequest(method="ACK", uri=invite.uri, headers=headers)


def build_cancel(invite: SipRequest) -> SipRequest:
    """The CANCEL for a pending INVITE (RFC 3261 §9.1).

    Request-URI, Call-ID, To, From, CSeq number and the single top Via are the INVITE's; the CSeq
    method is CANCEL; the INVITE's Route header fields are kept. No body, no Require.
    """
    headers = Headers()
    top_via = invite.headers.get("Via")
    if top_via is not None:
        headers.add("Via", top_via)
    for name in ("Max-Forwards", "From", "To", "Call-ID"):
        value = invite.headers.get(name)
        if value is not None:
            headers.add(name, value)
    headers.add("CSeq", f"{invite.cseq.number} CANCEL")
    for route in invite.headers.get_lines("Route"):
        headers.add("Route", route)
    return SipRequest(method="CANCEL", uri=invite.uri, headers=headers)


class ClientTransaction(Transaction):
    """An INVITE or non-INVITE client transaction, chosen by the request method."""

    __slots__ = (
        "_ack",
        "_acks_for_2xx",
        "_cancel_pending",
        "_cancel_sent",
        "_request_bytes",
        "_seen_2xx_tags",
        "destination",
        "request",
        "sent_by",
    )

    _layer: ClientLayerContext

    def __init__(
        self,
        *,
        layer: ClientLayerContext,
        key: ClientKey,
        request: SipRequest,
        destination: Address,
        transport: str,
        timers: TransactionTimers,
    ) -> None:
        machine = INVITE_CLIENT if request.method == "INVITE" else NON_INVITE_CLIENT
        super().__init__(
            machine=machine,
            layer=layer,
            transaction_id=key,
            method=request.method,
            transport=transport,
            timers=timers,
        )
        # Kept for the transaction's life: the TU gets it with every response, and the ACK of
        # a non-2xx and the CANCEL are built from it.
        self.request = request
        self.destination = destination
        self.sent_by = request.top_via.sent_by
        self._request_bytes = request.to_bytes()
        self._ack: bytes | None = None
        self._cancel_pending = False
        self._cancel_sent = False
        self._seen_2xx_tags: set[str | None] = set()
        # To tag of a 2xx -> the ACK the TU sent for it, re-sent on each retransmission.
        self._acks_for_2xx: dict[str | None, Transmit] = {}

    @property
    def key(self) -> ClientKey:
        assert isinstance(self.id, ClientKey)
        return self.id

    @property
    def cancel_sent(self) -> bool:
        return self._cancel_sent

    def start(self, now: float) -> None:
        # §17.1.1.2 / §17.1.2.2: the request is passed to the transport on entering the
        # initial state, then the retransmit and timeout timers start.
        self._send(self._request_bytes)
        super().start(now)

    def on_response(self, response: SipResponse, now: float) -> None:
        self.fire(response_input(response.status), now, response)

    def remember_2xx_ack(self, ack_tag: str | None, transmit: Transmit) -> None:
        """Keep the TU's ACK for the 2xx with To tag `ack_tag`, to answer its retransmissions."""
        if self.state is State.ACCEPTED:
            self._acks_for_2xx[ack_tag] = transmit

    def _send(self, data: bytes) -> None:
        self._layer.transmit(data, self.destination, self.transport, self.id)

    def _do_specific(self, action: Action, now: float, message: SipMessage | None) -> None:
        if action is Action.PASS_RESPONSE:
            assert isinstance(message, SipResponse)
            self._pass_response(message)
        elif action is Action.RETRANSMIT_REQUEST:
            self._layer.counters.retransmissions_sent += 1
            self._send(self._request_bytes)
        elif action is Action.SEND_ACK:
            assert isinstance(message, SipResponse)
            if self._ack is None:
                self._ack = build_non2xx_ack(self.request, message).to_bytes()
            else:
                self._layer.counters.retransmissions_sent += 1
            # §17.1.1.3: to the same address, port and transport as the INVITE.
            self._send(self._ack)
        elif action is Action.MARK_CANCEL_PENDING:
            self._cancel_pending = True
        elif action is Action.SEND_CANCEL_IF_PENDING:
            if self._cancel_pending:
                self._send_cancel(now)
        elif action is Action.SEND_CANCEL:
            self._send_cancel(now)
        elif action is Action.INFORM_TIMEOUT:
            self._layer.counters.timeouts += 1
            self._inform_local(408, ResponseOrigin.TIMEOUT)
        elif action is Action.INFORM_TRANSPORT_ERROR:
            # §8.1.3.1: a transport failure is treated as a 503 (Service Unavailable).
            self._inform_local(503, ResponseOrigin.TRANSPORT_ERROR)
        else:
            super()._do_specific(action, now, message)

    def _send_cancel(self, now: float) -> None:
        if self._cancel_sent:
            return
        self._cancel_sent = True
        self._cancel_pending = False
        self._layer.start_cancel(self, now)
        # §9.1: without a final response 64*T1 after the CANCEL, the INVITE is given up.
        self._start_timer(Timer.CANCEL_GUARD, self.timers.b, now)

    def _pass_response(self, response: SipResponse) -> None:
        retransmission = False
        if 200 <= response.status < 300:
            tag = response.to.tag
            retransmission = tag in self._seen_2xx_tags
            self._seen_2xx_tags.add(tag)
            ack = self._acks_for_2xx.get(tag) if retransmission else None
            if ack is not None:
                # §13.2.2.4: each retransmitted 2xx is answered with the same ACK.
                self._layer.counters.retransmissions_sent += 1
                self._layer.transmit(ack.data, ack.destination, ack.transport, None)
        self._layer.deliver(
            ResponseReceived(
                transaction=self.key,
                request=self.request,
                response=response,
                retransmission=retransmission,
            )
        )

    def _inform_local(self, status: int, origin: ResponseOrigin) -> None:
        self._layer.deliver(
            ResponseReceived(
                transaction=self.key,
                request=self.request,
                response=build_response(self.request, status),
                origin=origin,
            )
        )
