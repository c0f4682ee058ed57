"""A raw SIP peer on a Python socket, for sending the RFC 4475 / RFC 5118 torture messages to a
running server byte for byte and reading what comes back.

Responses over UDP go where the top Via says (RFC 3261 §18.2.2): to the Via's sent-by port at the
source address, or to the source port when the Via has `rport` (RFC 3581). The fixtures carry the
hosts and ports of the RFCs' examples, so `with_sent_by` rewrites the sent-by of the first Via to
the test socket's own address; every other byte of the fixture is sent as it is.

To know that the server stayed silent without sleeping, each fixture is followed by an OPTIONS
"probe" on the same socket: the server handles a socket's messages in order, so whatever it
answered to the fixture arrives before the probe's 200.
"""

from __future__ import annotations

import re
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from telephony.sip.errors import SipParseError
from telephony.sip.headers import Headers, parse_header_lines
from telephony.sip.message import SipMessage, SipRequest, StreamFramer, parse_message

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sip"

# The first Via of a message, up to its sent-by (RFC 3261 §20.42), allowing the LWS and line
# folding the torture messages put between the pieces (RFC 3261 §7.3.1).
_LWS = rb"[ \t]*(?:\r\n[ \t]+)?"
_TOP_VIA = re.compile(
    rb"^(?:via|v)[ \t]*:"
    + _LWS
    + rb"SIP"
    + _LWS
    + rb"/"
    + _LWS
    + rb"[0-9]+\.[0-9]+"
    + _LWS
    + rb"/"
    + _LWS
    + rb"[A-Za-z0-9.!%*_+`'~-]+"
    + _LWS
    + rb"(?P<sent_by>\[[0-9A-Fa-f:.]*\](?::[0-9]+)?|[^ \t\r\n;,:]+(?::[0-9]+)?)",
    re.IGNORECASE | re.MULTILINE,
)


def with_sent_by(data: bytes, sent_by: str) -> bytes:
    """`data` with the sent-by (host[:port]) of its first Via replaced by `sent_by`."""
    head_end = data.find(b"\r\n\r\n")
    head = data if head_end < 0 else data[:head_end]
    match = _TOP_VIA.search(head)
    if match is None:
        raise ValueError("no Via header to rewrite")
    start, end = match.span("sent_by")
    return data[:start] + sent_by.encode() + data[end:]


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _token() -> str:
    return secrets.token_hex(6)


@dataclass(frozen=True)
class Answer:
    """One message from the server, read leniently: a response to a malformed request echoes
    the request's broken From, To, CSeq or Via (RFC 3261 §8.2.6.2), so it need not parse.
    `message` is the strict parse, None when that failed."""

    raw: bytes
    status: int | None  # None for a request the server sent
    headers: Headers
    message: SipMessage | None

    @classmethod
    def read(cls, raw: bytes) -> Answer:
        head = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8", "surrogateescape").split("\r\n")
        status = int(head[0][8:11]) if head[0].startswith("SIP/2.0 ") else None
        try:
            message: SipMessage | None = parse_message(raw)
        except SipParseError:
            message = None
        return cls(raw=raw, status=status, headers=parse_header_lines(head[1:]), message=message)

    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        number, _, method = (self.headers.get("CSeq") or "0 ?").partition(" ")
        return int(number), method.strip()

    @property
    def is_final(self) -> bool:
        return self.status is not None and self.status >= 200

    def final_for(self, call_id: str, method: str) -> bool:
        return self.is_final and self.call_id == call_id and self.cseq[1] == method


@dataclass
class RawPeer:
    """One UDP socket or TCP connection to the server, with everything received kept in order."""

    transport: str  # "udp" or "tcp"
    server: tuple[str, int]
    sock: socket.socket
    received: list[Answer] = field(default_factory=list)
    closed_by_server: bool = False
    _framer: StreamFramer = field(default_factory=StreamFramer)

    @classmethod
    def open(cls, transport: str, server: tuple[str, int]) -> RawPeer:
        family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
        if transport == "udp":
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.bind((server[0], 0))
        else:
            sock = socket.create_connection(server, timeout=5.0)
        return cls(transport=transport, server=server, sock=sock)

    @property
    def sent_by(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return host_port(str(host), int(port))

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        if self.transport == "udp":
            self.sock.sendto(data, self.server)
        else:
            self.sock.sendall(data)

    def read_until(self, done: Callable[[list[Answer]], bool], timeout: float) -> bool:
        """Receive until `done(received)` holds (True), or the timeout passes or the server
        closes the connection (False)."""
        deadline = time.monotonic() + timeout
        while not done(self.received):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed_by_server:
                return False
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65535)
            except TimeoutError:
                return False
            except ConnectionResetError:
                self.closed_by_server = True
                return False
            if self.transport == "udp":
                self.received.append(Answer.read(chunk))
            elif not chunk:
                self.closed_by_server = True
            else:
                self.received.extend(Answer.read(frame) for frame in self._framer.feed(chunk))
        return True

    # ------------------------------------------------------------------ requests we make

    def options_probe(self) -> str:
        """Send an OPTIONS; returns its Call-ID."""
        call_id = f"probe-{_token()}"
        host = self.server[0]
        target = f"[{host}]" if ":" in host else host
        self.send(
            (
                f"OPTIONS sip:probe@{target} SIP/2.0\r\n"
                f"Via: {self._new_via()}\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:probe@{target}>;tag={_token()}\r\n"
                f"To: <sip:probe@{target}>\r\n"
                f"Call-ID: {call_id}\r\n"
                "CSeq: 1 OPTIONS\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode()
        )
        return call_id

    def acknowledge(self, response: Answer, invite: SipRequest | None) -> None:
        """ACK a final response to an INVITE: §17.1.1.3 for a non-2xx (same branch and
        Request-URI as the INVITE), §13.2.2.4 for a 2xx (a new request to the Contact)."""
        assert response.status is not None
        if response.status >= 300:
            if invite is None:
                return
            via, uri = response.headers.get_all("Via")[0], invite.uri
        else:
            via, uri = self._new_via(), _contact_uri(response)
        self.send(_in_dialog("ACK", uri, via, response, response.cseq[0]))

    def hang_up(self, response: Answer) -> Answer | None:
        """BYE for the call a 2xx set up; returns the BYE's final response."""
        cseq = response.cseq[0] + 1
        self.send(_in_dialog("BYE", _contact_uri(response), self._new_via(), response, cseq))

        def answered(received: list[Answer]) -> bool:
            return any(a.final_for(response.call_id, "BYE") for a in received)

        self.read_until(answered, timeout=5.0)
        return next((a for a in self.received if a.final_for(response.call_id, "BYE")), None)

    def _new_via(self) -> str:
        return f"SIP/2.0/{self.transport.upper()} {self.sent_by};branch=z9hG4bK{_token()};rport"


def _contact_uri(response: Answer) -> str:
    contact = response.headers.get("Contact") or ""
    return contact[contact.find("<") + 1 : contact.find(">")] if "<" in contact else contact


def _in_dialog(method: str, uri: str, via: str, response: Answer, cseq: int) -> bytes:
    headers = response.headers
    return (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: {via}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: {headers.get('From')}\r\n"
        f"To: {headers.get('To')}\r\n"
        f"Call-ID: {response.call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class Outcome:
    """What the server sent back for one fixture (the probe's answer left out)."""

    answers: tuple[Answer, ...]
    closed: bool

    @property
    def finals(self) -> list[int]:
        return [a.status for a in self.answers if a.status is not None and a.status >= 200]

    @property
    def statuses(self) -> list[int | None]:
        return [a.status for a in self.answers]

    def answered_call_ids(self) -> set[str]:
        return {a.call_id for a in self.answers if a.is_final}

    def unparseable(self) -> list[bytes]:
        return [a.raw for a in self.answers if a.message is None]


def send_fixture(peer: RawPeer, data: bytes, *, probe: bool, quiet: float = 0.5) -> Outcome:
    """Send `data` and gather the server's answers to it.

    With `probe`, an OPTIONS follows and everything before its 200 is the answer to `data`;
    an INVITE that got its 100 is then awaited to its final response (the server answers
    calls asynchronously). Without it (bytes that do not end at a message boundary on a
    stream), answers are gathered until `quiet` seconds pass without a final response.
    Final responses to INVITEs are acknowledged, and calls they set up hung up.
    """
    start = len(peer.received)
    peer.send(data)
    probe_id = peer.options_probe() if probe else None

    def mine(received: list[Answer]) -> list[Answer]:
        return [a for a in received[start:] if a.status is not None and a.call_id != probe_id]

    def probe_answered(received: list[Answer]) -> bool:
        return any(a.final_for(probe_id or "", "OPTIONS") for a in received[start:])

    def invites_settled(received: list[Answer]) -> bool:
        invites = [a for a in mine(received) if a.cseq[1] == "INVITE"]
        return {a.call_id for a in invites} <= {a.call_id for a in invites if a.is_final}

    if probe:
        peer.read_until(probe_answered, timeout=5.0)
    else:
        peer.read_until(lambda received: bool(mine(received)), quiet)
    peer.read_until(invites_settled, timeout=5.0)
    answers = tuple(mine(peer.received))
    if not peer.closed_by_server:
        _clean_up(peer, data, answers)
    return Outcome(answers=answers, closed=peer.closed_by_server)


def _clean_up(peer: RawPeer, data: bytes, answers: tuple[Answer, ...]) -> None:
    try:
        sent = parse_message(data)
    except SipParseError:
        sent = None
    invite = sent if isinstance(sent, SipRequest) and sent.method == "INVITE" else None
    for answer in answers:
        if answer.cseq[1] != "INVITE" or not answer.is_final:
            continue
        same_call = invite is not None and invite.call_id == answer.call_id
        peer.acknowledge(answer, invite if same_call else None)
        if answer.status is not None and answer.status < 300:
            bye = peer.hang_up(answer)
            assert bye is not None and bye.status == 200, f"BYE for {answer.call_id}: {bye}"
