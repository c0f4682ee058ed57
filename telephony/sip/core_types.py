"""The values the SIP UA core (`telephony.sip.core`) takes and gives: its settings, its counters,
and the event that asks the layer above to ring, answer or reject a new call."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from telephony.sip.transaction_types import Address
from telephony.stats import SipTally


@dataclass(frozen=True, slots=True, kw_only=True)
class IncomingCall:
    """A new inbound call the layer above must ring, answer or reject."""

    call_id: str
    did: str
    trunk_id: str
    offer: bytes
    entry_ivr: str | None
    entry_queue: str | None
    answer_after: float
    #: The SIP user of the agent whose softphone placed the call (authenticated), or None for a
    #: trunk's call; an agent's call has no entry point (the layer above routes what they dial).
    agent: str | None = None


@dataclass(slots=True)
class CoreCounters:
    """What the core refused or dropped, for metrics and tests. Mutable; only grows."""

    malformed_dropped: int = 0
    """Messages that did not parse and could not be answered (responses, ACKs, garbage)."""
    malformed_answered: int = 0
    """Requests that did not parse but were answered with the status of their error."""
    forbidden: int = 0
    """INVITEs from a source no trunk matches (403)."""
    rate_limited: int = 0
    """Requests dropped unanswered because their source is blocked or over its rate."""
    traffic: SipTally = field(default_factory=SipTally)
    """Requests (by method) and responses (by status) that parsed, before any refusal."""


@dataclass(slots=True)
class LocalAddresses:
    """Our socket address each phone registered to, by (source, transport): requests to the
    phone leave from there, so that they reach it through the NAT binding it keeps open.

    Bounded: past `capacity` sources the least recently registered one is forgotten (its
    requests then leave from the default address)."""

    capacity: int = 100_000
    _by_source: OrderedDict[tuple[Address, str], Address] = field(default_factory=OrderedDict)

    def remember(self, source: Address, transport: str, local: Address) -> None:
        key = (source, transport.lower())
        self._by_source[key] = local
        self._by_source.move_to_end(key)
        if len(self._by_source) > self.capacity:
            self._by_source.popitem(last=False)

    def get(self, source: Address, transport: str) -> Address | None:
        return self._by_source.get((source, transport.lower()))


@dataclass(frozen=True, slots=True, kw_only=True)
class CoreSettings:
    user_agent: str = "CXOS"
    """Server / User-Agent header value; empty for none."""
    max_message_bytes: int = 16384
    """Larger messages are answered 513 (RFC 3261 §21.5.14) when they can be answered."""
    #: Host to put in Contact when the socket address is not what peers should use (NAT).
    public_address: str | None = None


# --- what the core asks of the telephony service during a call (not published) -------------
#
# `call_id` below names a signalling leg: an inbound call's id or an outbound leg's id, the two
# kinds drawn from the same id generator.


@dataclass(frozen=True, slots=True, kw_only=True)
class ReofferReceived:
    """A re-INVITE or UPDATE with a new offer (RFC 3264 §8, RFC 3311) on a leg in progress was
    answered (see `telephony.sip.reoffer`). The service points the leg's media at the remote
    address and follows the peer's hold: `remote_hold` is True when the offer said a=sendonly,
    a=inactive or c=0.0.0.0 (RFC 3264 §8.4)."""

    call_id: str
    method: str
    remote_address: str
    remote_port: int
    remote_hold: bool
    remote_rtcp: tuple[str, int] | None = None
    """The offer's a=rtcp address (RFC 3605), None when it had none."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReofferAnswered:
    """Our re-INVITE (hold or resume of an outbound leg) was accepted; `answer` is the peer's
    SDP."""

    call_id: str
    answer: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ReofferFailed:
    """Our re-INVITE was refused with a final status other than 491 (which is retried, §14.1);
    the session goes on as it was before the offer (RFC 3261 §14.1)."""

    call_id: str
    status: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferRequested:
    """A REFER (RFC 3515) on a leg was accepted with 202 and a first NOTIFY (100 Trying).

    `target` is the user part of the Refer-To URI (an agent's SIP user or a number); `replaces`
    the Replaces header of that URI for an attended transfer (RFC 3891), else None. The service
    reports the outcome with `SipCore.notify_transfer` (RFC 3515 §2.4.5)."""

    call_id: str
    target: str
    refer_to: str
    replaces: str | None
