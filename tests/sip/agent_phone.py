"""An agent softphone written out by hand against the SIP core in memory, with a fake clock.

The core is wired as the telephony service wires it; `Node` feeds it bytes and collects what it
sends, per destination. `Softphone` registers with digest (so the core learns where to reach
it, as in production) and answers what it receives as a real phone would.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from config.settings import Dialplan, EntryPoint, Trunk
from telephony.sip.core import CoreSettings, SipCore
from telephony.sip.digest import StoredSecret, answer_challenge, choose_challenge
from telephony.sip.guard import GuardSettings, SourceGuard
from telephony.sip.message import SipMessage, SipRequest, SipResponse, build_response, parse_message
from telephony.sip.registrar import Registrar, RegistrarSettings
from telephony.sip.transaction import TransactionLayer
from telephony.sip.transaction_types import Address, Transmit
from telephony.sip.uri import NameAddr
from telephony.trunks import TrunkTable

LOCAL: Address = ("192.0.2.1", 5060)
REALM = "cxos"
VIA = "192.168.1.20:5060"  # the phone's private address: the NAT rewrites the source
PASSWORDS = {"1001": "pw-1001", "1002": "pw-1002"}
PHONE_SDP = (
    b"v=0\r\no=phone 7 7 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)
SERVER_OFFER = (
    b"v=0\r\no=- 42 0 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    b"m=audio 20000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
)


def make_core() -> SipCore:
    guard = SourceGuard(GuardSettings())
    ids = itertools.count(1)
    return SipCore(
        settings=CoreSettings(user_agent="CXOS-test"),
        transactions=TransactionLayer(),
        trunks=TrunkTable.build([Trunk(id="carrier", sources=("192.0.2.0/24",))]),
        dialplan=Dialplan(numbers={"*": EntryPoint(ivr="main")}),
        registrar=Registrar(
            RegistrarSettings(realm=REALM),
            credentials={user: StoredSecret(password=pw) for user, pw in PASSWORDS.items()},
            secret=b"k" * 32,
            guard=guard,
        ),
        guard=guard,
        new_id=lambda: f"id{next(ids)}",
    )


@dataclass
class Node:
    """One core, its fake clock, what it sent (by destination) and what it reported."""

    core: SipCore = field(default_factory=make_core)
    now: float = 0.0
    outbox: list[tuple[SipMessage, Transmit]] = field(default_factory=list)
    events: list[object] = field(default_factory=list)

    def deliver(self, data: bytes, source: Address, transport: str = "udp") -> None:
        self.core.receive(data, source, transport, LOCAL, self.now)
        self.flush()

    def flush(self) -> None:
        transmits, events = self.core.take_output()
        self.events.extend(events)
        for transmit in transmits:
            self.outbox.append((parse_message(transmit.data), transmit))

    def advance(self, seconds: float) -> None:
        """Move the clock, firing every timer that falls due on the way, in order."""
        end = self.now + seconds
        while (deadline := self.core.next_timer()) is not None and deadline <= end:
            self.now = max(self.now, deadline)
            self.core.on_timer(self.now)
            self.flush()
        self.now = end

    def take(self, destination: Address) -> list[SipMessage]:
        """The messages sent to `destination` since the last take, in order."""
        mine = [m for m, t in self.outbox if t.destination == destination]
        self.outbox = [(m, t) for m, t in self.outbox if t.destination != destination]
        return mine

    def of(self, kind: type[object]) -> list[object]:
        return [event for event in self.events if isinstance(event, kind)]


@dataclass
class Softphone:
    """A phone behind NAT: it registers from `source` with a private Contact."""

    node: Node
    user: str = "1001"
    source: Address = ("203.0.113.5", 40000)
    contact: str = "sip:1001@192.168.1.20:5060"
    tag: str = "phonetag1"
    cseq: int = 100
    branches: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def register(self) -> None:
        challenge = self._register(None)
        assert challenge.status == 401
        credentials = answer_challenge(
            choose_challenge(challenge.headers.get_all("WWW-Authenticate")),
            username=self.user,
            password=PASSWORDS[self.user],
            method="REGISTER",
            uri=f"sip:{REALM}",
            cnonce="c0ffee",
        )
        ok = self._register(str(credentials))
        assert ok.status == 200, ok.to_bytes()

    def _register(self, authorization: str | None) -> SipResponse:
        lines = [
            f"REGISTER sip:{REALM} SIP/2.0",
            f"Via: SIP/2.0/UDP {VIA};branch=z9hG4bKreg{self.tag}{next(self.branches)};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.user}@{REALM}>;tag=reg{self.tag}",
            f"To: <sip:{self.user}@{REALM}>",
            f"Call-ID: reg-{self.tag}",
            f"CSeq: {next(self.branches)} REGISTER",
            f"Contact: <{self.contact}>",
            "Expires: 3600",
        ]
        if authorization is not None:
            lines.append(f"Authorization: {authorization}")
        self.node.deliver(("\r\n".join(lines) + "\r\n\r\n").encode(), self.source)
        (response,) = self.received()
        assert isinstance(response, SipResponse)
        return response

    def received(self) -> list[SipMessage]:
        return self.node.take(self.source)

    def requests(self, method: str | None = None) -> list[SipRequest]:
        return [
            m
            for m in self.received()
            if isinstance(m, SipRequest) and (method is None or m.method == method)
        ]

    def invite(self) -> SipRequest:
        (invite,) = self.requests("INVITE")
        return invite

    def respond(
        self, request: SipRequest, status: int, *, body: bytes = b"", tag: str | None = None
    ) -> SipResponse:
        headers = [("Contact", f"<{self.contact}>")] if 100 < status < 300 else []
        if body:
            headers.append(("Content-Type", "application/sdp"))
        to_tag = (tag or self.tag) if status > 100 else None
        response = build_response(request, status, to_tag=to_tag, headers=headers)
        response.body = body
        self.node.deliver(response.to_bytes(), self.source)
        return response

    def answer(self, invite: SipRequest, *, tag: str | None = None) -> SipResponse:
        """180 then 200 with our SDP."""
        self.respond(invite, 180, tag=tag)
        return self.respond(invite, 200, body=PHONE_SDP, tag=tag)

    def send_in_dialog(
        self,
        invite: SipRequest,
        method: str,
        *,
        body: bytes = b"",
        content_type: str = "application/sdp",
        extra: tuple[str, ...] = (),
    ) -> None:
        """A request from the phone in the call the server placed (§12.2.1.1, UAS side)."""
        self.cseq += 1
        ours = NameAddr.parse(invite.headers.get("To") or "").with_tag(self.tag)
        lines = [
            f"{method} {NameAddr.parse(invite.headers.get('Contact') or '').uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {VIA};branch=z9hG4bKdlg{self.tag}{next(self.branches)};rport",
            "Max-Forwards: 70",
            f"From: {ours}",
            f"To: {invite.headers.get('From')}",
            f"Call-ID: {invite.call_id}",
            f"CSeq: {self.cseq} {method}",
            f"Contact: <{self.contact}>",
            *extra,
        ]
        if body:
            lines.append(f"Content-Type: {content_type}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        self.node.deliver(data, self.source)


def ok_to(request: SipRequest, *, body: bytes = b"") -> bytes:
    """A plain 200 to a request (for BYE, NOTIFY, CANCEL)."""
    response = build_response(request, 200)
    response.body = body
    return response.to_bytes()


def sdp_with(direction: str, *, address: str = "203.0.113.5", version: int = 8) -> bytes:
    """The phone's SDP with another direction attribute (and o= version)."""
    return (
        PHONE_SDP.replace(b"a=sendrecv", f"a={direction}".encode())
        .replace(b"o=phone 7 7", f"o=phone 7 {version}".encode())
        .replace(b"c=IN IP4 203.0.113.5", f"c=IN IP4 {address}".encode())
    )
