"""The SIP transaction layer (RFC 3261 §17), sans-IO: one `TransactionLayer` per node.

The I/O layer feeds it parsed messages with `receive(message, source, transport, now)`, asks it
for `next_timer()` and calls `on_timer(now)` then, and transmits everything `datagrams_to_send()`
returns. The TU (the UA core) gets `TuEvent`s back from those calls and drives the layer with
`send_request`, `send_response`, `send_ack` and `cancel`.

What the layer does for the TU:
- matches responses to client transactions (§17.1.3) and requests to server transactions
  (§17.2.3, with the RFC 2543 fallback for branches without the magic cookie); retransmissions
  are absorbed, re-answered or re-sent here and never reach the TU;
- drops and counts responses that match no transaction (RFC 6026 §8.9 replacing §18.1.2);
- answers a CANCEL itself (§9.2): 200 to the CANCEL, 487 to a still-pending INVITE, 481 when
  the CANCEL matches nothing;
- sends 100 Trying at once for every new INVITE (§17.2.1), unless told not to; the TU may
  withdraw it while it is still unsent, when it answers at once (`withdraw_trying`);
- takes an INVITE that reuses the branch of an INVITE already answered with a final non-2xx
  response, but with another CSeq, for a new request (see `_reuses_branch`);
- retransmits 2xx responses to INVITE until the ACK comes (§13.3.1.4, the UAS core's duty,
  kept here because its 64*T1 window is exactly the Accepted state's timer L);
- re-sends the TU's ACK for each retransmitted 2xx (§13.2.2.4);
- turns timeouts and transport errors into the local 408/503 of §8.1.3.1 and §17.1.4.

Lookups are dict hits by key; timers live in one heap of (deadline, token) so `on_timer` only
touches transactions whose deadline has passed.
"""

from __future__ import annotations

import heapq
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from telephony.sip.errors import SipParseError
from telephony.sip.message import SipMessage, SipRequest, SipResponse, build_response
from telephony.sip.timers import TimerSettings, TransactionTimers
from telephony.sip.transaction_base import Transaction
from telephony.sip.transaction_client import ClientTransaction, build_cancel
from telephony.sip.transaction_server import ServerTransaction, response_destination
from telephony.sip.transaction_tables import Input, State, Timer
from telephony.sip.transaction_types import (
    MAGIC_COOKIE,
    AckReceived,
    AckTimeout,
    Address,
    ClientKey,
    InviteCancelled,
    LegacyServerKey,
    RequestReceived,
    RequestSummary,
    ResponseOrigin,
    ResponseReceived,
    ServerKey,
    ServerTransactionId,
    ServerTransportError,
    TransactionCounters,
    TransactionError,
    TransactionId,
    Transmit,
    TuEvent,
    UnknownTransactionError,
)

__all__ = [
    "MAGIC_COOKIE",
    "AckReceived",
    "AckTimeout",
    "Address",
    "ClientKey",
    "InviteCancelled",
    "LegacyServerKey",
    "RequestReceived",
    "RequestSummary",
    "ResponseOrigin",
    "ResponseReceived",
    "ServerKey",
    "ServerTransactionId",
    "ServerTransportError",
    "State",
    "TransactionCounters",
    "TransactionError",
    "TransactionId",
    "TransactionLayer",
    "TransactionSettings",
    "Transmit",
    "TuEvent",
    "UnknownTransactionError",
]

logger = logging.getLogger(__name__)

# Key of a 2xx awaiting its ACK: (Call-ID, CSeq number, To tag) — the ACK of a 2xx has a branch
# of its own, so it is matched like a dialog request (§13.3.1.4, §17.2.3 last paragraph).
_AckKey = tuple[str, int, str | None]


def _random_token() -> str:
    # RFC 3261 §19.3: tags and branches need at least 32 bits of randomness; 64 used here.
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionSettings:
    """How the transaction layer behaves; validated once, passed in."""

    timers: TimerSettings = field(default_factory=TimerSettings)
    """T1, T2, T4 and timer D (seconds)."""

    send_trying: bool = True
    """Answer every new INVITE with 100 Trying at once (§17.2.1: unless the TU answers within
    200 ms, which a TU that rings an agent cannot promise)."""

    max_server_transactions: int = 100_000
    """Above this many live server transactions, new requests get a stateless 503 with
    Retry-After (RFC 3261 §21.5.4) instead of a transaction."""

    overload_retry_after: int = 5
    """Retry-After seconds in that 503."""

    def __post_init__(self) -> None:
        if self.max_server_transactions < 1:
            raise ValueError("max_server_transactions must be at least 1")


class TransactionLayer:
    """All client and server transactions of one node (RFC 3261 §17)."""

    def __init__(
        self,
        settings: TransactionSettings | None = None,
        *,
        random_token: Callable[[], str] = _random_token,
    ) -> None:
        self.settings = settings if settings is not None else TransactionSettings()
        self.counters = TransactionCounters()
        self._random_token = random_token
        self._clients: dict[ClientKey, ClientTransaction] = {}
        self._servers: dict[ServerTransactionId, ServerTransaction] = {}
        self._awaiting_ack: dict[_AckKey, ServerTransaction] = {}
        self._heap: list[tuple[float, int, Transaction, Timer]] = []
        self._token = 0
        self._outbound: list[Transmit] = []
        #: The 100 Trying of each INVITE received since `datagrams_to_send` was last called.
        self._trying: dict[ServerTransactionId, Transmit] = {}
        self._events: list[TuEvent] = []
        self._timer_cache: dict[str, TransactionTimers] = {}

    # -- identifiers ------------------------------------------------------------------------

    def new_branch(self) -> str:
        """A fresh branch ID with the RFC 3261 magic cookie (§8.1.1.7)."""
        return MAGIC_COOKIE + self._random_token()

    def new_tag(self) -> str:
        """A fresh From/To tag (§19.3)."""
        return self._random_token()

    # -- I/O side ---------------------------------------------------------------------------

    def receive(
        self, message: SipMessage, source: Address, transport: str, now: float
    ) -> list[TuEvent]:
        """Handle one parsed message from the network; returns what the TU must see."""
        try:
            if isinstance(message, SipResponse):
                self._receive_response(message, now)
            else:
                self._receive_request(message, source, transport, now)
        except SipParseError as exc:
            # The parser checks Via and CSeq already; a message that still fails here is
            # dropped, as RFC 3261 §18 drops malformed responses.
            self.counters.malformed_dropped += 1
            logger.debug("dropped malformed message from %s: %s", source, exc.detail)
        return self._take_events()

    def on_timer(self, now: float) -> list[TuEvent]:
        """Fire every timer whose deadline is at or before `now`, in deadline order."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, token, transaction, timer = heapq.heappop(heap)
            transaction.on_timer(timer, token, now)
        return self._take_events()

    def next_timer(self) -> float | None:
        """The earliest live deadline, or None when no timer is armed."""
        heap = self._heap
        while heap and not heap[0][2].is_armed(heap[0][3], heap[0][1]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def transport_error(self, transaction: TransactionId, now: float) -> list[TuEvent]:
        """The I/O layer could not send a message of `transaction` (§17.1.4, §17.2.4)."""
        found: Transaction | None
        if isinstance(transaction, ClientKey):
            found = self._clients.get(transaction)
        else:
            found = self._servers.get(transaction)
        if found is not None:
            found.fire(Input.TRANSPORT_ERROR, now)
        return self._take_events()

    def datagrams_to_send(self) -> list[Transmit]:
        """Everything to transmit since the last call, in order."""
        out = self._outbound
        self._outbound = []
        self._trying.clear()
        return out

    def withdraw_trying(self, transaction: ServerTransactionId) -> None:
        """Do not send the 100 Trying of `transaction` after all, if it is still unsent: the
        TU answered at once, so none was needed (§17.2.1 asks for it only when the TU may
        take longer than 200 ms). Some phones (PyVoIP 1.6) take a 100 before a challenge for
        the end of the exchange and never answer the challenge."""
        trying = self._trying.pop(transaction, None)
        if trying is None:
            return
        for index in range(len(self._outbound) - 1, -1, -1):
            if self._outbound[index] is trying:
                del self._outbound[index]
                return

    # -- TU side ----------------------------------------------------------------------------

    def send_request(
        self,
        request: SipRequest,
        *,
        destination: Address,
        transport: str,
        now: float,
        sent_by: str | None = None,
    ) -> ClientKey:
        """Start a client transaction for `request` (anything but ACK) and send it.

        When the request has no Via yet, one is added with a fresh branch, `sent_by` (host:port
        to receive responses on) and `rport` (RFC 3581). A Via already present must carry an
        RFC 3261 branch (§8.1.1.7).
        """
        if request.method == "ACK":
            raise TransactionError("ACK is sent with send_ack, not in a transaction (§17.1)")
        self._ensure_via(request, transport, sent_by)
        branch = request.top_via.branch
        if branch is None or not branch.startswith(MAGIC_COOKIE):
            raise TransactionError(f"branch {branch!r} lacks the RFC 3261 magic cookie")
        key = ClientKey(branch=branch, method=request.method)
        if key in self._clients:
            raise TransactionError(f"a client transaction with branch {branch} already exists")
        transaction = ClientTransaction(
            layer=self,
            key=key,
            request=request,
            destination=destination,
            transport=transport,
            timers=self._timers(transport),
        )
        self._clients[key] = transaction
        transaction.start(now)
        return key

    def send_response(
        self, transaction: ServerTransactionId, response: SipResponse, now: float
    ) -> None:
        """Pass the TU's response to its server transaction, which sends it."""
        server = self._servers.get(transaction)
        if server is None:
            raise UnknownTransactionError(f"no server transaction {transaction}")
        server.respond(response, now)

    def send_ack(
        self,
        ack: SipRequest,
        *,
        destination: Address,
        transport: str,
        invite: ClientKey | None = None,
        sent_by: str | None = None,
    ) -> None:
        """Send the ACK for a 2xx (§13.2.2.4); it is end-to-end, outside any transaction.

        With `invite` (the key from the `ResponseReceived`), the layer re-sends this ACK each
        time that 2xx is retransmitted, until timer M ends the INVITE transaction.
        """
        if ack.method != "ACK":
            raise TransactionError(f"send_ack got a {ack.method}")
        self._ensure_via(ack, transport, sent_by)
        transmit = Transmit(data=ack.to_bytes(), destination=destination, transport=transport)
        self._outbound.append(transmit)
        if invite is not None:
            client = self._clients.get(invite)
            if client is not None:
                client.remember_2xx_ack(ack.to.tag, transmit)

    def send_stateless(self, message: SipMessage, destination: Address, transport: str) -> None:
        """Send a message with no transaction (a proxy's stateless forward, a last-ditch error)."""
        self._outbound.append(
            Transmit(data=message.to_bytes(), destination=destination, transport=transport)
        )

    def cancel(self, invite: ClientKey, now: float) -> None:
        """Cancel a pending INVITE (§9.1): the CANCEL goes out once a provisional response has
        come; after a final response it is not sent at all."""
        client = self._clients.get(invite)
        if client is None:
            return  # already terminated: the final response has been passed up
        if not client.is_invite:
            raise TransactionError("only an INVITE can be cancelled (§9.1)")
        client.fire(Input.TU_CANCEL, now)

    # -- introspection ----------------------------------------------------------------------

    def client_state(self, key: ClientKey) -> State | None:
        client = self._clients.get(key)
        return client.state if client is not None else None

    def server_state(self, key: ServerTransactionId) -> State | None:
        server = self._servers.get(key)
        return server.state if server is not None else None

    @property
    def client_count(self) -> int:
        return len(self._clients)

    @property
    def server_count(self) -> int:
        return len(self._servers)

    # -- LayerContext (called by transactions) ----------------------------------------------

    def transmit(
        self,
        data: bytes,
        destination: Address,
        transport: str,
        transaction: TransactionId | None,
    ) -> None:
        self._outbound.append(
            Transmit(
                data=data, destination=destination, transport=transport, transaction=transaction
            )
        )

    def deliver(self, event: TuEvent) -> None:
        self._events.append(event)

    def arm(self, transaction: Transaction, timer: Timer, deadline: float) -> int:
        self._token += 1
        heapq.heappush(self._heap, (deadline, self._token, transaction, timer))
        return self._token

    def terminated(self, transaction: Transaction) -> None:
        if isinstance(transaction, ClientTransaction):
            self._clients.pop(transaction.key, None)
        elif isinstance(transaction, ServerTransaction):
            self._servers.pop(transaction.key, None)
            for key in transaction.ack_keys:
                if self._awaiting_ack.get(key) is transaction:
                    del self._awaiting_ack[key]

    def expect_ack(self, transaction: ServerTransaction, to_tag: str | None) -> None:
        key = (transaction.call_id, transaction.cseq, to_tag)
        if key not in transaction.ack_keys:
            transaction.ack_keys += (key,)
        self._awaiting_ack[key] = transaction

    def start_cancel(self, invite: ClientTransaction, now: float) -> None:
        cancel = build_cancel(invite.request)
        key = ClientKey(branch=invite.key.branch, method="CANCEL")
        if key in self._clients:
            return
        transaction = ClientTransaction(
            layer=self,
            key=key,
            request=cancel,
            destination=invite.destination,
            transport=invite.transport,
            timers=invite.timers,
        )
        self._clients[key] = transaction
        transaction.start(now)

    # -- internals --------------------------------------------------------------------------

    def _take_events(self) -> list[TuEvent]:
        events = self._events
        self._events = []
        return events

    def _timers(self, transport: str) -> TransactionTimers:
        timers = self._timer_cache.get(transport)
        if timers is None:
            timers = self.settings.timers.for_transport(transport)
            self._timer_cache[transport] = timers
        return timers

    def _ensure_via(self, request: SipRequest, transport: str, sent_by: str | None) -> None:
        if "Via" in request.headers:
            return
        if sent_by is None:
            raise TransactionError("request has no Via and no sent_by was given")
        request.headers.prepend(
            "Via", f"SIP/2.0/{transport.upper()} {sent_by};branch={self.new_branch()};rport"
        )

    def _receive_response(self, response: SipResponse, now: float) -> None:
        via = response.top_via
        branch = via.branch
        client = None
        if branch is not None:
            client = self._clients.get(ClientKey(branch=branch, method=response.cseq.method))
        # §18.1.2: the sent-by of the top Via must be the one this element put there.
        if client is None or client.sent_by != via.sent_by:
            self.counters.stray_responses += 1
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("stray %d response dropped (branch %s)", response.status, branch)
            return
        client.on_response(response, now)

    def _receive_request(
        self, request: SipRequest, source: Address, transport: str, now: float
    ) -> None:
        via = request.top_via
        method = request.method
        key = self._server_key(request, via.branch, via.sent_by, method)
        if method == "ACK":
            self._receive_ack(request, key, source, transport, now)
            return
        server = self._servers.get(key)
        if server is not None and _reuses_branch(server, request):
            logger.debug("%s: new INVITE on the branch of an answered one", key)
            server.abandon()
            self.terminated(server)
            server = None
        if server is not None:
            server.on_retransmission(request, now)
            return
        if len(self._servers) >= self.settings.max_server_transactions:
            self._reject_overload(request, source, transport)
            return
        server = self._create_server(request, key, source, transport)
        if method == "CANCEL":
            self._receive_cancel(server, request, now)
            return
        if method == "INVITE" and self.settings.send_trying:
            server.respond(build_response(request, 100), now)
            self._trying[server.key] = self._outbound[-1]
        self.deliver(
            RequestReceived(
                transaction=server.key, request=request, source=source, transport=transport
            )
        )

    def _receive_ack(
        self,
        ack: SipRequest,
        key: ServerTransactionId,
        source: Address,
        transport: str,
        now: float,
    ) -> None:
        server = self._servers.get(key)
        if server is not None and isinstance(key, LegacyServerKey) and server.to_tag != ack.to.tag:
            server = None  # RFC 2543 matching also compares the To tag (§17.2.3)
        if server is None:
            # An ACK for a 2xx carries a branch of its own: find the 2xx by dialog fields.
            server = self._awaiting_ack.get((ack.call_id, ack.cseq.number, ack.to.tag))
        if server is not None:
            server.on_ack(ack, source, transport, now)
            return
        self.deliver(AckReceived(request=ack, source=source, transport=transport))

    def _receive_cancel(
        self, cancel_server: ServerTransaction, cancel: SipRequest, now: float
    ) -> None:
        # §9.2: the CANCEL matches the INVITE's server transaction by the same rules, with the
        # method taken as INVITE.
        via = cancel.top_via
        invite_key = self._server_key(cancel, via.branch, via.sent_by, "INVITE")
        invite = self._servers.get(invite_key)
        if invite is None or not invite.is_invite:
            self.counters.unmatched_cancels += 1
            cancel_server.respond(build_response(cancel, 481, to_tag=self.new_tag()), now)
            return
        # §9.2: the To tag of the CANCEL's response is the one of the INVITE's responses.
        tag = invite.to_tag or self.new_tag()
        cancel_server.respond(build_response(cancel, 200, to_tag=tag), now)
        if invite.state is State.PROCEEDING:
            request = invite.request  # released by the final response below
            invite.respond(build_response(request, 487, to_tag=tag), now)
            self.deliver(InviteCancelled(transaction=invite.key, invite=request, cancel=cancel))

    def _create_server(
        self,
        request: SipRequest,
        key: ServerTransactionId,
        source: Address,
        transport: str,
    ) -> ServerTransaction:
        server = ServerTransaction(
            layer=self,
            key=key,
            request=request,
            source=source,
            transport=transport,
            timers=self._timers(transport),
        )
        self._servers[key] = server
        return server

    def _reject_overload(self, request: SipRequest, source: Address, transport: str) -> None:
        self.counters.overload_rejections += 1
        response = build_response(
            request,
            503,
            to_tag=self.new_tag(),
            headers=[("Retry-After", str(self.settings.overload_retry_after))],
        )
        destination = response_destination(request.top_via, source, transport)
        self.send_stateless(response, destination, transport)

    @staticmethod
    def _server_key(
        request: SipRequest, branch: str | None, sent_by: str, method: str
    ) -> ServerTransactionId:
        if method == "ACK":
            method = "INVITE"
        if branch is not None and branch.startswith(MAGIC_COOKIE):
            return ServerKey(branch=branch, sent_by=sent_by, method=method)
        # §17.2.3: RFC 2543 peers are matched on the request's identifying fields.
        return LegacyServerKey(
            request_uri=request.uri,
            from_tag=request.from_.tag,
            call_id=request.call_id,
            cseq_number=request.cseq.number,
            top_via=request.headers.get("Via") or "",
            method=method,
        )


def _reuses_branch(server: ServerTransaction, request: SipRequest) -> bool:
    """Whether `request`, matched to `server` by §17.2.3, is in fact a new INVITE: one with
    another CSeq (a retransmission repeats the request as it was) after our final non-2xx
    response. §8.1.1.7 wants a new branch for it, but some phones (PyVoIP 1.6) send the
    INVITE with the credentials a 401 asked for on the branch of the challenged one; the ACK
    of the challenge ended that transaction as far as the phone is concerned."""
    return (
        request.method == "INVITE"
        and server.method == "INVITE"
        and server.final_status is not None
        and server.final_status >= 300
        and request.cseq.number != server.cseq
    )
