"""A new offer on an inbound call in progress (re-INVITE, or UPDATE, RFC 3311), sans-IO.

The caller's side may move its media or hold the call (RFC 3264 §8); the answer is our session
turned as the offer asks (`telephony.sip.reoffer`), and the media follows the returned
`ReofferReceived`.
"""

from __future__ import annotations

from telephony.sdp import SdpError
from telephony.sip.core_types import ReofferReceived
from telephony.sip.inbound import InboundLeg, LegState
from telephony.sip.message import build_response
from telephony.sip.reoffer import answer_reoffer
from telephony.sip.transaction import TransactionLayer
from telephony.sip.transaction_types import RequestReceived

__all__ = ["answer_inbound_reoffer"]


def answer_inbound_reoffer(
    event: RequestReceived,
    leg: InboundLeg,
    transactions: TransactionLayer,
    now: float,
    *,
    server: list[tuple[str, str]],
) -> ReofferReceived | None:
    """Answer a re-INVITE/UPDATE on `leg`; the event for the media when the offer changed it."""
    request = event.request
    if leg.state is not LegState.CONFIRMED:
        # §14.2: an offer while ours is unanswered, or before the ACK.
        _reply(event, transactions, 491, now, server)
        return None
    extra = [("Contact", leg.local_contact)]
    # RFC 3264 §8 / RFC 3261 §14.2: a re-INVITE without an offer gets our session as the
    # offer; an UPDATE without one gets no body.
    body = leg.local_sdp if request.method == "INVITE" else b""
    reoffered = None
    if request.body:
        try:
            settled = answer_reoffer(leg.local_sdp, request.body)
        except SdpError as exc:
            _reply(event, transactions, exc.status, now, server)  # §14.2: the session stays
            return None
        leg.local_sdp = body = settled.answer
        reoffered = ReofferReceived(
            call_id=leg.call_id,
            method=request.method,
            remote_address=settled.remote_address,
            remote_port=settled.remote_port,
            remote_hold=settled.remote_hold,
            remote_rtcp=settled.remote_rtcp,
        )
    if body:
        extra.append(("Content-Type", "application/sdp"))
    response = build_response(request, 200, headers=[*extra, *server])
    response.body = body
    transactions.send_response(event.transaction, response, now)
    return reoffered


def _reply(
    event: RequestReceived,
    transactions: TransactionLayer,
    status: int,
    now: float,
    server: list[tuple[str, str]],
) -> None:
    transactions.send_response(
        event.transaction, build_response(event.request, status, headers=server), now
    )
