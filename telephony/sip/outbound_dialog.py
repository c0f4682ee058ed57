"""The dialog of an answered outbound leg (a call the server placed to an agent or out through a
trunk), sans-IO.

What happens after the agent answered: requests the phone sends in the call (BYE, re-INVITE or
UPDATE with a new offer, REFER for a blind transfer, INFO/OPTIONS/NOTIFY), the responses to the
requests we send in it (BYE, our re-INVITE for hold/resume, NOTIFY), and building those requests
with the dialog's route set and CSeq (`Dialog`, RFC 3261 §12.2). Requests go to the address the
answering phone registered from (symmetric signalling through its NAT, RFC 3581's reasoning).
A carrier that challenges one of our requests in a call out (401/407, §22.2) gets it once more
with the trunk's credentials under the dialog's next CSeq (§8.1.3.5).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from telephony.events import HangupParty
from telephony.sdp import Direction, SdpError
from telephony.sip.checks import ALLOW
from telephony.sip.core_types import (
    ReofferAnswered,
    ReofferFailed,
    ReofferReceived,
    TransferRequested,
)
from telephony.sip.dialog import DialogError, DialogState
from telephony.sip.message import SipRequest, build_response
from telephony.sip.outbound import OutboundInput, OutboundLeg, OutboundState
from telephony.sip.outbound_trunk import answer_for, ended_event, with_credentials
from telephony.sip.refer import SIPFRAG, ReferError, notify_headers, read_refer_to, sipfrag
from telephony.sip.reoffer import answer_reoffer, with_direction
from telephony.sip.transaction import TransactionLayer
from telephony.sip.transaction_types import RequestReceived, ResponseReceived

logger = logging.getLogger(__name__)

SDP = "application/sdp"
#: Seconds an ended leg stays known, so that late responses (a 2xx from another fork, 487s)
#: still find it: the 64*T1 an INVITE client transaction lives after its 2xx (RFC 6026 timer M).
LINGER = 32.0


@dataclass(slots=True)
class OutboundDialogs:
    """In-dialog behaviour of the outbound legs of one `Originator`."""

    transactions: TransactionLayer
    emit: Callable[[object], None]
    #: Arm one of the originator's timers: (deadline, kind, leg id).
    arm: Callable[[float, str, str], None]
    #: A fresh random string (the cnonce of credentials, RFC 2617 §3.2.2).
    new_id: Callable[[], str]
    user_agent: str = "CXOS"
    uniform: Callable[[float, float], float] = random.uniform

    # ------------------------------------------------------------------ our requests

    def reoffer(self, leg: OutboundLeg, sdp: bytes, now: float) -> None:
        """Send a new offer in the answered call (re-INVITE, RFC 3264 §8): hold or resume."""
        if leg.state is not OutboundState.CONFIRMED or leg.dialog is None:
            raise DialogError(f"leg {leg.leg_id} is not an answered call")
        leg.reoffer_out = sdp
        if leg.dialog.invite_pending:
            # §14.1: one INVITE at a time; try again once the other one is over.
            self._retry_reoffer(leg, now)
            return
        self.send(leg, "INVITE", now, body=sdp, content_type=SDP)

    def hold(self, leg: OutboundLeg, held: bool, now: float) -> None:
        """Our hold (a=sendonly, RFC 3264 §8.4) or resume (a=sendrecv) as a re-INVITE."""
        direction = Direction.SENDONLY if held else Direction.SENDRECV
        sdp = with_direction(leg.local_sdp, direction)
        if sdp != leg.local_sdp or leg.reoffer_out is not None:
            self.reoffer(leg, sdp, now)

    def notify_transfer(self, leg: OutboundLeg, status: int, now: float) -> None:
        """Report the final status of the call a REFER asked for (RFC 3515 §2.4.5)."""
        if not leg.refer_pending:
            return
        leg.refer_pending = False
        if leg.dialog is not None and leg.dialog.state is not DialogState.TERMINATED:
            self._send_notify(leg, status, now, final=True)

    def hangup(self, leg: OutboundLeg, now: float) -> None:
        """BYE (§15.1.1); the leg ends when it is answered."""
        leg.apply(OutboundInput.HANGUP)
        self.send(leg, "BYE", now)

    def send(
        self,
        leg: OutboundLeg,
        method: str,
        now: float,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        extra: Iterable[tuple[str, str]] = (),
    ) -> None:
        assert leg.dialog is not None
        request = leg.dialog.create_request(
            method, body=body, content_type=content_type, headers=[*extra, *self._ua()]
        )
        self._send_request(leg, request, now)

    def _send_request(self, leg: OutboundLeg, request: SipRequest, now: float) -> None:
        branch = leg.branch
        assert branch is not None
        # To the address the answering phone registered from, not its Contact (NAT).
        self.transactions.send_request(
            request,
            destination=branch.destination,
            transport=branch.transport,
            now=now,
            sent_by=branch.sent_by,
        )

    # ------------------------------------------------------------------ responses to them

    def on_response(self, leg: OutboundLeg, event: ResponseReceived, now: float) -> None:
        request = event.request
        dialog = leg.dialog
        if request.method == "CANCEL":
            return  # its INVITE's final response tells what happened
        if dialog is None or event.response.to.tag != dialog.remote_tag or event.retransmission:
            return  # the BYE to a fork we refused, or a 2xx already acknowledged
        status = event.response.status
        if status in (401, 407) and leg.trunk is not None and self._resend(leg, event, now):
            return
        if status >= 200:
            leg.auth_resent.pop(request.cseq.number, None)
        dialog.response_received(request, event.response)
        if status < 200:
            return
        method = request.method
        if method == "BYE":
            if leg.can(OutboundInput.BYE_ANSWERED):
                leg.apply(OutboundInput.BYE_ANSWERED)
                self.ended(leg, "normal", "server", now)
        elif status in (408, 481) and leg.can(OutboundInput.DIALOG_LOST):
            # §12.2.1.2: the phone no longer knows the call (or cannot be reached).
            leg.apply(OutboundInput.DIALOG_LOST)
            self.ended(leg, "error", "callee", now)
        elif method == "INVITE":
            self._reinvite_response(leg, event, now)

    def _resend(self, leg: OutboundLeg, event: ResponseReceived, now: float) -> bool:
        """A carrier challenged a request in the call (§22.2: a UAS may challenge any request,
        BYE and re-INVITE included): send it once more with credentials, under a new CSeq
        (§8.1.3.5). False when the challenge is not to be answered; the request has then
        failed with the 401/407."""
        assert leg.dialog is not None
        request = event.request
        answer = answer_for(leg, request, event.response, cnonce=self.new_id())
        if answer is None or leg.dialog.state is DialogState.TERMINATED:
            return False
        retry = with_credentials(request, leg.dialog.resend_cseq(request), answer)
        self._send_request(leg, retry, now)
        return True

    def _reinvite_response(self, leg: OutboundLeg, event: ResponseReceived, now: float) -> None:
        status = event.response.status
        assert leg.dialog is not None and leg.branch is not None
        if status < 300:
            # §13.2.2.4: the ACK of a 2xx to a re-INVITE is ours to send, too.
            ack = leg.dialog.create_ack(event.request.cseq.number, headers=self._ua())
            self.transactions.send_ack(
                ack,
                destination=leg.branch.destination,
                transport=leg.branch.transport,
                invite=event.transaction,
                sent_by=leg.branch.sent_by,
            )
            if leg.reoffer_out is not None:
                leg.local_sdp = leg.reoffer_out
            leg.reoffer_out = None
            self.emit(ReofferAnswered(call_id=leg.leg_id, answer=event.response.body))
        elif status == 491:
            self._retry_reoffer(leg, now)  # glare (§14.1)
        else:
            leg.reoffer_out = None
            self.emit(ReofferFailed(call_id=leg.leg_id, status=status))

    def _retry_reoffer(self, leg: OutboundLeg, now: float) -> None:
        assert leg.dialog is not None
        leg.reoffer_retry_at = now + leg.dialog.glare_retry_delay(self.uniform)
        self.arm(leg.reoffer_retry_at, "reoffer", leg.leg_id)

    # ------------------------------------------------------------------ requests from the phone

    def on_request(self, leg: OutboundLeg, event: RequestReceived, now: float) -> None:
        request = event.request
        dialog = leg.dialog
        if dialog is None or (request.from_.tag or "") != dialog.remote_tag:
            # A fork we ended, or a request before the answer: no such dialog (§12.2.2).
            self.reply(event, 481, now)
            return
        rejection = dialog.receive_request(request, uniform=self.uniform)
        if rejection is not None:
            response = rejection.response_to(request)
            dialog.response_sent(request, response)
            self.transactions.send_response(event.transaction, response, now)
            return
        method = request.method
        if method == "BYE":
            self.reply(event, 200, now)
            if leg.can(OutboundInput.BYE_RECEIVED):
                confirmed = leg.state is OutboundState.CONFIRMED
                leg.apply(OutboundInput.BYE_RECEIVED)
                if confirmed:
                    self.ended(leg, "normal", "callee", now)
        elif method in ("INVITE", "UPDATE"):
            self._on_reoffer(leg, event, now)
        elif method == "REFER":
            self._on_refer(leg, event, now)
        elif method in ("INFO", "OPTIONS", "NOTIFY"):
            self.respond(leg, event, 200, now)
        else:
            self.respond(leg, event, 405, now, extra=[("Allow", ALLOW)])

    def _on_reoffer(self, leg: OutboundLeg, event: RequestReceived, now: float) -> None:
        request = event.request
        if leg.state is not OutboundState.CONFIRMED:
            self.respond(leg, event, 491, now)  # §14.2: the call is being torn down
            return
        # RFC 3261 §14.2: a re-INVITE without an offer gets our session as the offer; RFC 3311
        # §5.2: an UPDATE without one only refreshes the target.
        body = leg.local_sdp if request.method == "INVITE" else b""
        if request.body:
            try:
                settled = answer_reoffer(leg.local_sdp, request.body)
            except SdpError as exc:
                self.respond(leg, event, exc.status, now)  # the session stays as it was
                return
            leg.local_sdp = body = settled.answer
            self.emit(
                ReofferReceived(
                    call_id=leg.leg_id,
                    method=request.method,
                    remote_address=settled.remote_address,
                    remote_port=settled.remote_port,
                    remote_hold=settled.remote_hold,
                    remote_rtcp=settled.remote_rtcp,
                )
            )
        extra = [("Allow", ALLOW), *([("Content-Type", SDP)] if body else [])]
        self.respond(leg, event, 200, now, body=body, extra=extra)

    def _on_refer(self, leg: OutboundLeg, event: RequestReceived, now: float) -> None:
        if leg.trunk is not None:
            # A carrier does not get to move our caller (RFC 3515 §2.4.2 lets us decline):
            # transfers of a call out are placed through the call API.
            self.respond(leg, event, 603, now)
            return
        if leg.state is not OutboundState.CONFIRMED or leg.refer_pending:
            # A transfer already running (RFC 3515 §2.4.2 lets us refuse), or a call ending.
            self.respond(leg, event, 491 if leg.refer_pending else 481, now)
            return
        try:
            target = read_refer_to(event.request)
        except ReferError as exc:
            logger.info("leg %s: REFER refused (%d): %s", leg.leg_id, exc.status, exc.detail)
            self.respond(leg, event, exc.status, now)
            return
        self.respond(leg, event, 202, now)
        leg.refer_pending = True
        # RFC 3515 §2.4.4: the first NOTIFY goes out at once after the 202.
        self._send_notify(leg, 100, now, final=False)
        self.emit(
            TransferRequested(
                call_id=leg.leg_id,
                target=target.user,
                refer_to=target.refer_to,
                replaces=target.replaces,
            )
        )

    # ------------------------------------------------------------------ helpers

    def _send_notify(self, leg: OutboundLeg, status: int, now: float, *, final: bool) -> None:
        self.send(
            leg,
            "NOTIFY",
            now,
            body=sipfrag(status),
            content_type=SIPFRAG,
            extra=notify_headers(final),
        )

    def respond(
        self,
        leg: OutboundLeg,
        event: RequestReceived,
        status: int,
        now: float,
        *,
        body: bytes = b"",
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        headers = list(extra or [])
        dialog = leg.dialog
        if dialog is not None and dialog.local_target is not None and status < 300:
            headers.insert(0, ("Contact", f"<{dialog.local_target}>"))
        response = build_response(event.request, status, headers=[*headers, *self._server()])
        response.body = body
        if dialog is not None:
            dialog.response_sent(event.request, response)
        self.transactions.send_response(event.transaction, response, now)

    def reply(self, event: RequestReceived, status: int, now: float) -> None:
        response = build_response(event.request, status, headers=self._server())
        self.transactions.send_response(event.transaction, response, now)

    def ended(self, leg: OutboundLeg, cause: str, by: HangupParty, now: float) -> None:
        """Report the end of a leg; an ended leg is forgotten `LINGER` seconds later."""
        if leg.ended_at is None:
            leg.ended_at = now
        if leg.state is OutboundState.ENDED:
            self.arm(now + LINGER, "purge", leg.leg_id)
        self.emit(ended_event(leg, cause, by, leg.talk_seconds(now)))

    def ua(self) -> list[tuple[str, str]]:
        return self._ua()

    def _ua(self) -> list[tuple[str, str]]:
        return [("User-Agent", self.user_agent)] if self.user_agent else []

    def _server(self) -> list[tuple[str, str]]:
        return [("Server", self.user_agent)] if self.user_agent else []
