"""What the ACD service needs from the layer that owns calls, and how it reports back.

The ACD never touches SIP or RTP: :class:`acd.service.AcdService` carries out the engine's actions
through a :class:`TelephonyPort`, and the telephony side reports outcomes by calling the service's
report methods (``ringing``, ``answered``, ``ring_failed``, ``agent_hung_up``, ``caller_hung_up``,
``callback_result``). Port methods start an operation and return; they must not wait for its
outcome (a ring lasts seconds) nor await the service's own API methods (the service runs one
operation at a time, in order, and would wait for itself).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from acd.actions import CancelReason, RouteReason


class TelephonyPort(Protocol):
    async def ring_agent(
        self,
        call_id: str,
        agent_id: str,
        sip_user: str,
        ring_timeout: float,
        attributes: Mapping[str, str],
    ) -> None:
        """Start ringing the softphone registered as ``sip_user`` for ``call_id``.

        Report ``ringing`` (180/183 received), then ``answered`` (200) or ``ring_failed`` with
        the reason (408/480 no answer, 486/600 busy, 603 rejected, no binding unregistered).
        ``attributes`` travel to the agent as screen-pop data.
        """
        ...

    async def cancel_ring(self, call_id: str, agent_id: str, reason: CancelReason) -> None:
        """Stop ringing the agent for ``call_id`` (CANCEL), or hang up the agent's leg if it was
        answered too late (``reason`` ``"stale"`` or ``"answered_elsewhere"``)."""
        ...

    async def bridge(self, call_id: str, agent_id: str) -> None:
        """Connect the waiting caller with the agent's answered leg (media through the server)."""
        ...

    async def announce(
        self, call_id: str, queue_id: str, position: int | None, ewt_seconds: float | None
    ) -> None:
        """Play the caller their position and/or estimated wait (None: not announced)."""
        ...

    async def route_call(
        self, call_id: str, queue_id: str, destination: str | None, reason: RouteReason
    ) -> None:
        """Send the caller out of the queue to ``destination`` (None: the dial plan's default)."""
        ...

    async def offer_callback(self, call_id: str, queue_id: str) -> None:
        """Ask the waiting caller whether they want to be called back, keeping their place."""
        ...

    async def dial_callback(
        self, call_id: str, agent_id: str, destination: str, attempt: int
    ) -> None:
        """The agent answered a callback: dial ``destination`` and connect it to the agent.

        Report ``callback_result(call_id, connected)``.
        """
        ...
