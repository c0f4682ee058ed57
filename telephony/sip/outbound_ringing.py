"""The ringing of an outbound leg (sans-IO): its INVITEs until one is answered or all fail.

What `Originator` does between sending a leg's INVITE(s) and the answer: provisional responses
(ringing reported once), the carrier's 401/407 answered with credentials (§22.2, as
`outbound_trunk` says), the first 2xx acknowledged and kept while the other branches are
cancelled (§16.7 step 10), a 2xx of another fork or one that crossed our CANCEL acknowledged and
ended with BYE (§13.2.2.4), and the leg's failure once every branch got a final non-2xx (or a
6xx came, §16.7 step 6). What happens after the answer is `OutboundDialogs`'.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from telephony.events import RingFailure
from telephony.sip.dialog import Dialog
from telephony.sip.message import SipRequest
from telephony.sip.outbound import (
    OutboundBranch,
    OutboundInput,
    OutboundLeg,
    OutboundState,
    failure_for,
    worst_case,
)
from telephony.sip.outbound_dialog import LINGER, OutboundDialogs
from telephony.sip.outbound_trunk import (
    answer_for,
    answered_event,
    call_out_failure,
    failed_event,
    ringing_event,
    with_credentials,
)
from telephony.sip.transaction import TransactionLayer
from telephony.sip.transaction_types import Address, ClientKey, ResponseOrigin, ResponseReceived

logger = logging.getLogger(__name__)


def codec_of(sdp: bytes) -> str:
    """The first codec named in an SDP body (for events), or ""."""
    for line in sdp.decode("ascii", "replace").splitlines():
        if line.startswith("a=rtpmap:"):
            return line.split(" ", 1)[1].split("/", 1)[0] if " " in line else ""
    return ""


@dataclass(slots=True)
class OutboundRinging:
    """The INVITE side of the outbound legs of one `Originator`."""

    transactions: TransactionLayer
    emit: Callable[[object], None]
    #: Arm one of the originator's timers: (deadline, kind, leg id).
    arm: Callable[[float, str, str], None]
    #: A fresh random string (the cnonce of credentials, RFC 2617 §3.2.2).
    new_id: Callable[[], str]
    dialogs: OutboundDialogs
    #: The originator's legs by INVITE client transaction (shared with it).
    by_branch: dict[ClientKey, OutboundLeg]

    def on_invite_response(
        self, leg: OutboundLeg, branch: OutboundBranch, event: ResponseReceived, now: float
    ) -> None:
        """A response to the leg's INVITE of `branch`."""
        status = event.response.status
        if event.origin is ResponseOrigin.PEER:
            leg.heard_back = True
        if event.retransmission or status == 100:
            return
        if status < 200:
            if leg.can(OutboundInput.PROVISIONAL):
                leg.apply(OutboundInput.PROVISIONAL)
                if not leg.ringing_reported:
                    leg.ringing_reported = True
                    self.emit(ringing_event(leg))
            return
        if status in (401, 407) and leg.trunk is not None and leg.ringing:
            if self._answer_challenge(leg, branch, event, now):
                return
            leg.auth_failed = True
        branch.final = True
        branch.status = status
        if status < 300:
            self._on_answer(leg, branch, event, now)
            return
        branch.failure = failure_for(status, event.origin)
        if leg.trunk is not None:
            leg.call_out_failure = call_out_failure(leg, status, event.origin)
        if leg.ringing and status >= 600:
            # A 6xx is the agent's answer for every device: stop the others (§16.7 step 6).
            self.give_up(leg, branch.failure, now, status=status)
        elif leg.ringing and not leg.pending_branches():
            failed = [b for b in leg.branches.values() if b.failure is not None]
            leg.failure = worst_case([b.failure for b in failed if b.failure is not None])
            leg.apply(OutboundInput.ALL_FAILED)
            leg.ended_at = now
            decisive = next((b.status for b in failed if b.failure is leg.failure), status)
            self._emit_failed(leg, decisive, now)
            self.arm(now + LINGER, "purge", leg.leg_id)
        self.check_cancelled(leg, now)

    def _on_answer(
        self, leg: OutboundLeg, branch: OutboundBranch, event: ResponseReceived, now: float
    ) -> None:
        response = event.response
        dialog = Dialog.uac(event.request, response, transport=branch.transport.upper())
        # §13.2.2.4: every 2xx is acknowledged by the UAC core, end to end.
        ack = dialog.create_ack(event.request.cseq.number, headers=self.dialogs.ua())
        self.transactions.send_ack(
            ack,
            destination=branch.destination,
            transport=branch.transport,
            invite=event.transaction,
            sent_by=branch.sent_by,
        )
        if leg.dialog is None and leg.can(OutboundInput.ANSWERED):
            leg.apply(OutboundInput.ANSWERED)
            leg.dialog, leg.branch = dialog, branch
            leg.answer, leg.answered_at = response.body, now
            for other in leg.pending_branches():
                # The other devices stop ringing (§16.7 step 10 for a forking element).
                self.transactions.cancel(other.key, now)
            self.emit(answered_event(leg, codec_of(response.body), max(0.0, now - leg.started_at)))
            return
        # Another fork answered too, or the answer crossed our CANCEL (§9.1): that dialog is
        # ended at once with BYE (§13.2.2.4, §15).
        logger.info("leg %s: extra 2xx from %s ended with BYE", leg.leg_id, branch.contact)
        bye = dialog.create_request("BYE", headers=self.dialogs.ua())
        self.transactions.send_request(
            bye,
            destination=branch.destination,
            transport=branch.transport,
            now=now,
            sent_by=branch.sent_by,
        )
        self.check_cancelled(leg, now)

    def send_branch(
        self,
        leg: OutboundLeg,
        invite: SipRequest,
        contact: str,
        destination: Address,
        transport: str,
        sent_by: str,
        now: float,
    ) -> None:
        """Send one INVITE of the leg (a new client transaction) and know its responses."""
        key = self.transactions.send_request(
            invite, destination=destination, transport=transport, now=now, sent_by=sent_by
        )
        leg.branches[key] = OutboundBranch(
            key=key,
            contact=contact,
            destination=destination,
            transport=transport,
            sent_by=sent_by,
        )
        self.by_branch[key] = leg

    def _answer_challenge(
        self, leg: OutboundLeg, branch: OutboundBranch, event: ResponseReceived, now: float
    ) -> bool:
        """Re-send the trunk leg's INVITE with credentials (§22.2); False when it must fail.
        The challenged transaction is over (the layer ACKed the 401/407, §17.1.1.3): its
        branch is replaced by the new one."""
        request = event.request
        answer = answer_for(leg, request, event.response, cnonce=self.new_id())
        if answer is None:
            return False
        retry = with_credentials(request, request.cseq.number + 1, answer)
        del leg.branches[branch.key]
        self.by_branch.pop(branch.key, None)
        self.send_branch(
            leg, retry, branch.contact, branch.destination, branch.transport, branch.sent_by, now
        )
        return True

    def give_up(
        self, leg: OutboundLeg, reason: RingFailure | None, now: float, status: int | None = None
    ) -> None:
        """Stop ringing: CANCEL what is still pending (sent once a 1xx has come, §9.1)."""
        for branch in leg.pending_branches():
            self.transactions.cancel(branch.key, now)
        leg.apply(OutboundInput.GIVE_UP)
        if reason is not None:
            leg.failure = reason
            self._emit_failed(leg, status, now)
        self.check_cancelled(leg, now)

    def check_cancelled(self, leg: OutboundLeg, now: float) -> None:
        if leg.state is OutboundState.CANCELLING and not leg.pending_branches():
            leg.apply(OutboundInput.BRANCHES_DONE)
            leg.ended_at = leg.ended_at if leg.ended_at is not None else now
            self.arm(now + LINGER, "purge", leg.leg_id)

    def _emit_failed(self, leg: OutboundLeg, status: int | None, now: float) -> None:
        assert leg.failure is not None
        self.emit(failed_event(leg, status, max(0.0, now - leg.started_at)))
