"""The values the SIP UA core (`telephony.sip.core`) takes and gives: its settings, its counters,
and the event that asks the layer above to ring, answer or reject a new call."""

from __future__ import annotations

from dataclasses import dataclass


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


@dataclass(frozen=True, slots=True, kw_only=True)
class CoreSettings:
    user_agent: str = "CXOS"
    """Server / User-Agent header value; empty for none."""
    max_message_bytes: int = 16384
    """Larger messages are answered 513 (RFC 3261 §21.5.14) when they can be answered."""
    #: Host to put in Contact when the socket address is not what peers should use (NAT).
    public_address: str | None = None
