"""Two SIP transaction layers wired together in memory, with a fake clock and a scriptable link.

Like h11's ConnectionPair: what one side transmits is serialised, parsed and fed to the other;
nothing sleeps, time moves only when a test calls `advance`. The link may drop or duplicate
messages (a `LinkPolicy` per direction) to exercise retransmissions, and may rewrite a message on
the way (to play a Record-Route-ing proxy). Every transmitted message is kept in `wire`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from telephony.sip.dialog import Dialog
from telephony.sip.headers import Headers
from telephony.sip.message import (
    SipMessage,
    SipRequest,
    SipResponse,
    build_response,
    parse_message,
)
from telephony.sip.transaction import (
    Address,
    ClientKey,
    RequestReceived,
    ServerTransactionId,
    TransactionLayer,
    TransactionSettings,
    TuEvent,
)

E = TypeVar("E")


@dataclass(slots=True)
class FakeClock:
    now: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Wire:
    """One message put on the link (delivered `copies` times; 0 means the link lost it)."""

    at: float
    sender: str
    receiver: str
    message: SipMessage
    copies: int

    @property
    def is_request(self) -> bool:
        return isinstance(self.message, SipRequest)

    def method(self) -> str:
        """Request method, or the CSeq method of a response."""
        if isinstance(self.message, SipRequest):
            return self.message.method
        return self.message.cseq.method

    def status(self) -> int | None:
        return self.message.status if isinstance(self.message, SipResponse) else None


LinkPolicy = Callable[[Wire], int]
"""How many copies of a message the link delivers: 0 drops it, 2 duplicates it."""


def deliver_all(wire: Wire) -> int:
    return 1


def drop(predicate: Callable[[Wire], bool], *, times: int | None = None) -> LinkPolicy:
    """Lose the messages `predicate` picks (only the first `times` of them, if given)."""
    dropped = 0

    def policy(wire: Wire) -> int:
        nonlocal dropped
        if predicate(wire) and (times is None or dropped < times):
            dropped += 1
            return 0
        return 1

    return policy


def duplicate(predicate: Callable[[Wire], bool]) -> LinkPolicy:
    """Deliver the messages `predicate` picks twice (a retransmission the network made)."""
    return lambda wire: 2 if predicate(wire) else 1


def requests(method: str) -> Callable[[Wire], bool]:
    return lambda wire: wire.is_request and wire.method() == method


def responses(status: int, method: str | None = None) -> Callable[[Wire], bool]:
    return lambda wire: wire.status() == status and (method is None or wire.method() == method)


class Node:
    """One side: a transaction layer, its address and the TU events it has received so far.

    The test plays the TU: it reads `events` (or `take`s them) and calls `send_request`,
    `respond` and `send_ack`.
    """

    def __init__(
        self, name: str, address: Address, layer: TransactionLayer, clock: FakeClock
    ) -> None:
        self.name = name
        self.address = address
        self.layer = layer
        self.clock = clock
        self.transport = "UDP"
        self.peer: Node | None = None
        self.events: list[TuEvent] = []
        self._requests: dict[ServerTransactionId, SipRequest] = {}

    @property
    def sent_by(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    @property
    def contact(self) -> str:
        return f"sip:{self.name}@{self.sent_by}"

    def record(self, events: Iterable[TuEvent]) -> None:
        for event in events:
            if isinstance(event, RequestReceived):
                self._requests[event.transaction] = event.request
            self.events.append(event)

    def take(self, kind: type[E]) -> list[E]:
        """Remove and return the events of type `kind`, in order."""
        taken: list[E] = [e for e in self.events if isinstance(e, kind)]
        self.events = [e for e in self.events if not isinstance(e, kind)]
        return taken

    def only(self, kind: type[E]) -> E:
        """Remove and return the single event of type `kind` (fails if not exactly one)."""
        taken = self.take(kind)
        assert len(taken) == 1, f"{self.name}: expected one {kind.__name__}, got {taken}"
        return taken[0]

    def send_request(self, request: SipRequest) -> ClientKey:
        assert self.peer is not None
        return self.layer.send_request(
            request,
            destination=self.peer.address,
            transport=self.transport,
            now=self.clock.now,
            sent_by=self.sent_by,
        )

    def respond(
        self,
        transaction: ServerTransactionId,
        status: int,
        *,
        to_tag: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        contact: bool = False,
    ) -> SipResponse:
        request = self._requests[transaction]
        extra = list(headers)
        if contact:
            extra.append(("Contact", f"<{self.contact}>"))
        response = build_response(request, status, to_tag=to_tag, headers=extra)
        self.layer.send_response(transaction, response, self.clock.now)
        return response

    def send_ack(self, ack: SipRequest, *, invite: ClientKey | None = None) -> None:
        assert self.peer is not None
        self.layer.send_ack(
            ack,
            destination=self.peer.address,
            transport=self.transport,
            invite=invite,
            sent_by=self.sent_by,
        )

    def new_request(
        self,
        method: str,
        *,
        call_id: str = "call-1@cxos.test",
        from_tag: str = "uac-tag",
        cseq: int = 1,
        to_tag: str | None = None,
    ) -> SipRequest:
        """An out-of-dialog request to the peer (§8.1.1), Via left to the transaction layer."""
        assert self.peer is not None
        to = f"<sip:{self.peer.name}@{self.peer.sent_by}>"
        headers = Headers(
            [
                ("Max-Forwards", "70"),
                ("From", f"<sip:{self.name}@{self.sent_by}>;tag={from_tag}"),
                ("To", to if to_tag is None else f"{to};tag={to_tag}"),
                ("Call-ID", call_id),
                ("CSeq", f"{cseq} {method}"),
                ("Contact", f"<{self.contact}>"),
            ]
        )
        return SipRequest(
            method=method, uri=f"sip:{self.peer.name}@{self.peer.sent_by}", headers=headers
        )


class Pair:
    """A UAC node and a UAS node on one in-memory link with a fake clock."""

    def __init__(
        self,
        *,
        transport: str = "UDP",
        settings: TransactionSettings | None = None,
        uas_settings: TransactionSettings | None = None,
        to_uas: LinkPolicy = deliver_all,
        to_uac: LinkPolicy = deliver_all,
        rewrite: Callable[[Wire], None] | None = None,
    ) -> None:
        self.clock = FakeClock()
        counter = iter(range(1, 1_000_000))

        def tokens(prefix: str) -> Callable[[], str]:
            return lambda: f"{prefix}{next(counter):06d}"

        self.uac = Node(
            "alice",
            ("192.0.2.1", 5060),
            TransactionLayer(settings, random_token=tokens("a")),
            self.clock,
        )
        self.uas = Node(
            "bob",
            ("192.0.2.2", 5060),
            TransactionLayer(uas_settings or settings, random_token=tokens("b")),
            self.clock,
        )
        self.uac.peer, self.uas.peer = self.uas, self.uac
        self.uac.transport = self.uas.transport = transport
        self.policies = {self.uas.name: to_uas, self.uac.name: to_uac}
        self.rewrite = rewrite
        self.wire: list[Wire] = []

    @property
    def now(self) -> float:
        return self.clock.now

    def _node_at(self, address: Address) -> Node:
        for node in (self.uac, self.uas):
            if node.address == address:
                return node
        raise AssertionError(f"nothing listens on {address}")

    def flush(self) -> None:
        """Carry messages both ways until neither side has anything left to send."""
        for _ in range(1000):
            moved = False
            for sender in (self.uac, self.uas):
                for transmit in sender.layer.datagrams_to_send():
                    moved = True
                    receiver = self._node_at(transmit.destination)
                    # Serialise and parse, as the wire would.
                    message = parse_message(transmit.data)
                    probe = Wire(
                        at=self.clock.now,
                        sender=sender.name,
                        receiver=receiver.name,
                        message=message,
                        copies=1,
                    )
                    copies = self.policies[receiver.name](probe)
                    wire = Wire(
                        at=probe.at,
                        sender=probe.sender,
                        receiver=probe.receiver,
                        message=message,
                        copies=copies,
                    )
                    self.wire.append(wire)
                    if self.rewrite is not None:
                        self.rewrite(wire)
                    for _ in range(copies):
                        copy = parse_message(wire.message.to_bytes())
                        receiver.record(
                            receiver.layer.receive(
                                copy, sender.address, transmit.transport, self.clock.now
                            )
                        )
            if not moved:
                return
        raise AssertionError("messages kept flowing: a retransmission loop")

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass, firing each timer at its deadline and flushing after each."""
        self.flush()
        target = self.clock.now + seconds
        while True:
            deadlines = [d for d in (self.uac.layer.next_timer(), self.uas.layer.next_timer()) if d]
            if not deadlines or min(deadlines) > target:
                break
            self.clock.now = max(self.clock.now, min(deadlines))
            for node in (self.uac, self.uas):
                node.record(node.layer.on_timer(self.clock.now))
            self.flush()
        self.clock.now = target

    def sent(
        self,
        sender: str,
        *,
        method: str | None = None,
        status: int | None = None,
    ) -> list[Wire]:
        """Messages `sender` ("alice"/"bob") put on the link, filtered by method and status."""
        return [
            w
            for w in self.wire
            if w.sender == sender
            and (method is None or w.method() == method)
            and (status is None or w.status() == status)
            and (status is not None or method is None or w.is_request)
        ]


def establish(pair: Pair) -> tuple[Dialog, Dialog, ClientKey]:
    """Run INVITE -> 200 -> ACK and return (UAC dialog, UAS dialog, INVITE key)."""
    from telephony.sip.transaction import ResponseReceived

    uac, uas = pair.uac, pair.uas
    invite = uac.new_request("INVITE")
    key = uac.send_request(invite)
    pair.flush()
    received = uas.only(RequestReceived)
    ok = uas.respond(received.transaction, 200, to_tag="uas-tag", contact=True)
    uas_dialog = Dialog.uas(received.request, ok)
    pair.flush()
    answers = [e for e in uac.take(ResponseReceived) if e.response.status == 200]
    uac_dialog = Dialog.uac(invite, answers[0].response)
    uac.send_ack(uac_dialog.create_ack(invite.cseq.number), invite=key)
    pair.flush()
    return uac_dialog, uas_dialog, key
