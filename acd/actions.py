"""Instructions from the ACD engine to the layer that owns calls (telephony's call API).

The engine never touches a call itself: it returns these, and the service around it carries them
out and reports the outcome back (``offer_ringing``, ``offer_answered``, ``offer_failed`` ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

ExitReason = Literal["timeout", "escalated", "empty"]
RouteReason = Literal[ExitReason, "full"]
CancelReason = Literal["expired", "abandoned", "answered_elsewhere", "withdrawn", "stale"]


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferCall:
    """Ring ``agent_id``'s softphone with ``call_id``; the offer lapses at ``lease_expires``.

    For a callback (``callback_destination`` set) the agent is rung first; once they answer the
    engine asks for the customer to be dialled with :class:`DialCallback`.
    """

    call_id: str
    agent_id: str
    queue_id: str
    lease_expires: float
    attributes: Mapping[str, str] = field(default_factory=dict)
    callback_destination: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelOffer:
    """Stop ringing ``agent_id`` for ``call_id`` (caller gone, answered elsewhere, lease over)."""

    call_id: str
    agent_id: str
    reason: CancelReason


@dataclass(frozen=True, slots=True, kw_only=True)
class Announce:
    """Tell the caller their position and/or estimated wait (None: not announced)."""

    call_id: str
    queue_id: str
    position: int | None
    ewt_seconds: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteCall:
    """Take the caller out of the queue to ``destination`` (None: the dial plan's default)."""

    call_id: str
    queue_id: str
    reason: RouteReason
    destination: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferCallbackChoice:
    """Offer the waiting caller to hang up and be called back keeping their place."""

    call_id: str
    queue_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DialCallback:
    """The agent answered a callback: dial the customer at ``destination`` and connect them."""

    call_id: str
    agent_id: str
    queue_id: str
    destination: str
    attempt: int


AcdAction = OfferCall | CancelOffer | Announce | RouteCall | OfferCallbackChoice | DialCallback
