"""The state of one outbound call leg at the UAC: the server rings an agent's softphone, or calls
a number through a trunk (RFC 3261 §13.2), and once it answers holds the dialog with it.

The leg's target is an agent's address of record (`aor`, every live binding rung) or a
`TrunkRoute` (one INVITE to the carrier's address, answered challenges re-sent, §22.2).

One INVITE goes to every live binding of the agent's address of record, as a forking proxy would
(§16.6): same Call-ID and From tag, one client transaction (branch) each. The first 2xx wins the
leg; the other branches are cancelled (§16.7 step 10), and a 2xx from another fork that still
arrives is acknowledged and ended with BYE (§13.2.2.4). The leg's own states follow one table;
anything else is a bug and raises.

```
CALLING --1xx--> RINGING --2xx--> CONFIRMED --BYE sent--> ENDING --BYE answered--> ENDED
   |                |                 '--BYE received / dialog lost--> ENDED
   |--every branch failed (either)--> ENDED
   '--ring timeout, 6xx, hangup (CANCEL sent, either)--> CANCELLING --branches done--> ENDED
```
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from telephony.events import CallOutFailure, RingFailure
from telephony.sip.dialog import Dialog
from telephony.sip.transaction_types import Address, ClientKey, ResponseOrigin


@dataclass(frozen=True, slots=True, kw_only=True)
class TrunkRoute:
    """A call out through a trunk, as the core needs it: the carrier's host for the
    Request-URI (``sip:NUMBER@host:port``), its resolved address, and our credentials."""

    trunk_id: str
    host: str
    #: The port the configuration names; None when DNS chose it (RFC 3263 SRV): the
    #: Request-URI then names the host alone.
    port: int | None
    #: The carrier's address the INVITE is sent to (the host resolved by the I/O layer).
    destination: Address
    transport: str = "udp"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    #: Answer only challenges of this realm; None: any realm the carrier names.
    realm: str | None = None
    #: Calls out through this trunk in progress at once.
    max_calls: int = 30


class OutboundState(enum.Enum):
    CALLING = "calling"  # INVITE(s) sent, nothing but 100 back
    RINGING = "ringing"  # a 180/183 came back (early dialog, §13.2.2.1)
    CANCELLING = "cancelling"  # we gave up ringing: CANCEL sent, waiting for the branches to end
    CONFIRMED = "confirmed"  # 2xx received and acknowledged: the agent is on the line
    ENDING = "ending"  # our BYE sent, waiting for its response
    ENDED = "ended"


class OutboundInput(enum.Enum):
    PROVISIONAL = "1xx received"
    ANSWERED = "2xx received (ACK sent)"
    ALL_FAILED = "every branch got a final non-2xx"
    GIVE_UP = "CANCEL sent (ring timeout, 6xx, hangup before answer)"
    BRANCHES_DONE = "every cancelled branch got its final response"
    BYE_RECEIVED = "BYE received"
    HANGUP = "BYE sent"
    BYE_ANSWERED = "response to our BYE"
    DIALOG_LOST = "481/408 to a request in the dialog (§12.2.1.2)"


_S, _I = OutboundState, OutboundInput
_TRANSITIONS: dict[tuple[OutboundState, OutboundInput], OutboundState] = {
    (_S.CALLING, _I.PROVISIONAL): _S.RINGING,
    (_S.CALLING, _I.ANSWERED): _S.CONFIRMED,
    (_S.CALLING, _I.ALL_FAILED): _S.ENDED,
    (_S.CALLING, _I.GIVE_UP): _S.CANCELLING,
    (_S.RINGING, _I.PROVISIONAL): _S.RINGING,
    (_S.RINGING, _I.ANSWERED): _S.CONFIRMED,
    (_S.RINGING, _I.ALL_FAILED): _S.ENDED,
    (_S.RINGING, _I.GIVE_UP): _S.CANCELLING,
    (_S.CANCELLING, _I.PROVISIONAL): _S.CANCELLING,
    (_S.CANCELLING, _I.BRANCHES_DONE): _S.ENDED,
    (_S.CONFIRMED, _I.BYE_RECEIVED): _S.ENDED,
    (_S.CONFIRMED, _I.HANGUP): _S.ENDING,
    (_S.CONFIRMED, _I.DIALOG_LOST): _S.ENDED,
    (_S.ENDING, _I.BYE_ANSWERED): _S.ENDED,
    # Both sides hung up at once: their BYE is answered, ours will be too (or time out).
    (_S.ENDING, _I.BYE_RECEIVED): _S.ENDING,
    (_S.ENDING, _I.DIALOG_LOST): _S.ENDED,
}

#: States in which the leg still rings the agent.
RINGING_STATES = frozenset({OutboundState.CALLING, OutboundState.RINGING})

# When branches fail differently, the reason reported is the first of these present: a
# deliberate refusal says more about the agent than an unreachable second phone does.
_FAILURE_PRIORITY = (
    RingFailure.REJECTED,
    RingFailure.BUSY,
    RingFailure.NO_ANSWER,
    RingFailure.UNREGISTERED,
)


class IllegalOutboundTransitionError(Exception):
    def __init__(self, state: OutboundState, event: OutboundInput) -> None:
        super().__init__(f"outbound leg: no transition for {event.value} in state {state.value}")


def failure_for(status: int, origin: ResponseOrigin = ResponseOrigin.PEER) -> RingFailure:
    """The ring outcome a final non-2xx status stands for."""
    if origin is ResponseOrigin.TRANSPORT_ERROR:
        return RingFailure.UNREGISTERED  # §8.1.3.1: the phone cannot be reached at all
    if status in (486, 600):
        return RingFailure.BUSY
    if status in (404, 410, 480, 484, 503):
        # Not found / temporarily unavailable: the binding is stale or the phone is offline.
        return RingFailure.UNREGISTERED
    if status in (408, 487):
        # No final answer in time (timer B), or the CANCEL we sent at the ring timeout.
        return RingFailure.NO_ANSWER
    return RingFailure.REJECTED


def worst_case(failures: list[RingFailure]) -> RingFailure:
    """The one reason to report for several branches (see `_FAILURE_PRIORITY`)."""
    for reason in _FAILURE_PRIORITY:
        if reason in failures:
            return reason
    return RingFailure.UNREGISTERED


@dataclass(slots=True, kw_only=True)
class OutboundBranch:
    """One INVITE of the leg, to one registered contact of the agent."""

    key: ClientKey
    contact: str  # the binding's Contact: the INVITE's Request-URI
    destination: Address  # where the binding's REGISTER came from (the NAT path)
    transport: str  # "udp" / "tcp", as the transport layer names them
    sent_by: str  # our host:port in Via, where the phone answers
    final: bool = False
    failure: RingFailure | None = None
    status: int | None = None


@dataclass(slots=True, kw_only=True)
class OutboundLeg:
    """A call the server placed to an agent's softphone."""

    leg_id: str
    call_id: str  # the call this leg serves, named in its events
    aor: str  # the agent's SIP user
    sip_call_id: str
    local_tag: str
    offer: bytes
    #: Our current session description: the offer, then as re-offers changed it (RFC 3264 §8).
    local_sdp: bytes
    started_at: float
    ring_deadline: float
    branches: dict[ClientKey, OutboundBranch] = field(default_factory=dict)
    state: OutboundState = OutboundState.CALLING
    dialog: Dialog | None = None
    #: The branch that answered: in-dialog requests go to its destination (symmetric
    #: signalling through the agent's NAT, as for responses in RFC 3581).
    branch: OutboundBranch | None = None
    answer: bytes = b""
    answered_at: float | None = None
    ended_at: float | None = None
    failure: RingFailure | None = None
    ringing_reported: bool = False
    #: Our re-offer (hold/resume) waiting to be sent or re-sent after a 491 (§14.1).
    reoffer_out: bytes | None = None
    reoffer_retry_at: float | None = None
    #: A REFER was accepted and its implicit subscription awaits its final NOTIFY (RFC 3515).
    refer_pending: bool = False
    #: Set for a call out through a trunk (`aor` is then the number called).
    trunk: TrunkRoute | None = None
    #: CSeq of each request re-sent with credentials -> how often its original was challenged
    #: (§22.2; see `outbound_trunk.answer_for`). An entry goes when its request is answered.
    auth_resent: dict[int, int] = field(default_factory=dict)
    #: Realm -> the last nonce answered and its nonce count (RFC 2617 §3.2.2).
    nonce_counts: dict[str, tuple[str, int]] = field(default_factory=dict)
    auth_failed: bool = False
    #: Any response (even 100 Trying) came back: a leg that times out without one was
    #: unreachable rather than unanswered.
    heard_back: bool = False
    #: A call out's outcome decided before any request went out (no capacity).
    call_out_failure: CallOutFailure | None = None

    def apply(self, event: OutboundInput) -> OutboundState:
        try:
            self.state = _TRANSITIONS[(self.state, event)]
        except KeyError:
            raise IllegalOutboundTransitionError(self.state, event) from None
        return self.state

    def can(self, event: OutboundInput) -> bool:
        return (self.state, event) in _TRANSITIONS

    @property
    def ringing(self) -> bool:
        return self.state in RINGING_STATES

    def pending_branches(self) -> list[OutboundBranch]:
        return [branch for branch in self.branches.values() if not branch.final]

    def talk_seconds(self, now: float) -> float:
        return max(0.0, now - self.answered_at) if self.answered_at is not None else 0.0
