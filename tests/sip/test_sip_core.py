"""The SIP UA core (telephony/sip/core.py) in memory: bytes in, responses and call events out.

The core is built the way the telephony service builds it; a fake clock moves only when a test
says so. Requests are written out as a trunk or a phone would send them.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.settings import Dialplan, EntryPoint, Trunk
from telephony.events import CallAnswered, CallEnded, CallRejected, CallStarted
from telephony.sip.core import CoreSettings, IncomingCall, SipCore
from telephony.sip.errors import SipParseError
from telephony.sip.guard import GuardSettings, SourceGuard
from telephony.sip.message import SipMessage, SipRequest, SipResponse, build_response, parse_message
from telephony.sip.registrar import Registrar, RegistrarSettings
from telephony.sip.transaction import TransactionLayer
from telephony.sip.transaction_types import Address, Transmit
from telephony.sip.transport import SipTransport
from telephony.sip.uri import NameAddr
from telephony.trunks import TrunkTable

TRUNK: Address = ("192.0.2.10", 5060)
STRANGER: Address = ("198.51.100.7", 5060)
LOCAL: Address = ("192.0.2.1", 5060)
T1 = 0.5
OFFER = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
ANSWER = (
    b"v=0\r\no=- 2 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    b"m=audio 20000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def request(
    method: str,
    *,
    uri: str = "sip:100@192.0.2.1",
    call_id: str = "call-1",
    cseq: int = 1,
    cseq_method: str | None = None,
    from_tag: str = "caller1",
    to_tag: str | None = None,
    branch: str = "z9hG4bKa1",
    via: str = "192.0.2.10:5060",
    body: bytes = b"",
    extra: Iterable[str] = (),
) -> bytes:
    """A request as a trunk sends it; `to_tag` makes it an in-dialog request."""
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {via};branch={branch}",
        "Max-Forwards: 70",
        f"From: <sip:0612345678@carrier.example>;tag={from_tag}",
        f"To: <sip:100@192.0.2.1>{f';tag={to_tag}' if to_tag else ''}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        "Contact: <sip:0612345678@192.0.2.10:5060>",
        *extra,
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Harness:
    """One core, its fake clock, and everything it sent and reported."""

    core: SipCore
    now: float = 0.0
    wire: list[tuple[SipMessage, Transmit]] = field(default_factory=list)
    events: list[object] = field(default_factory=list)

    def receive(
        self, data: bytes, source: Address = TRUNK, transport: str = "udp"
    ) -> list[SipMessage]:
        """Feed `data`; returns the messages the core sent in reply."""
        self.core.receive(data, source, transport, LOCAL, self.now)
        return self.flush()

    def flush(self) -> list[SipMessage]:
        transmits, events = self.core.take_output()
        self.events.extend(events)
        out = []
        for transmit in transmits:
            message = parse_message(transmit.data)
            self.wire.append((message, transmit))
            out.append(message)
        return out

    def advance(self, seconds: float) -> list[SipMessage]:
        """Move the clock, firing every timer that falls due on the way, in order."""
        end = self.now + seconds
        out: list[SipMessage] = []
        while (deadline := self.core.next_timer()) is not None and deadline <= end:
            self.now = max(self.now, deadline)
            self.core.on_timer(self.now)
            out += self.flush()
        self.now = end
        return out

    def of(self, kind: type[object]) -> list[object]:
        return [event for event in self.events if isinstance(event, kind)]

    def incoming(self) -> IncomingCall:
        calls = self.of(IncomingCall)
        assert len(calls) == 1, self.events
        call = calls[0]
        assert isinstance(call, IncomingCall)
        return call

    def call_up(self) -> tuple[IncomingCall, SipResponse]:
        """INVITE, answer, ACK: a call in progress. Returns the call and our 200."""
        self.receive(request("INVITE", body=OFFER))
        call = self.incoming()
        self.core.answer(call.call_id, ANSWER, self.now)
        (ok,) = responses(self.flush())
        self.receive(ack_for(ok))
        return call, ok


def responses(messages: list[SipMessage]) -> list[SipResponse]:
    out = [m for m in messages if isinstance(m, SipResponse)]
    assert len(out) == len(messages), messages
    return out


def statuses(messages: list[SipMessage]) -> list[int]:
    return [m.status for m in responses(messages)]


def ack_for(ok: SipResponse, *, branch: str = "z9hG4bKack1") -> bytes:
    return request("ACK", cseq=ok.cseq.number, to_tag=ok.to.tag, branch=branch, uri=contact_of(ok))


def contact_of(message: SipMessage) -> str:
    return str(NameAddr.parse(message.headers.get("Contact") or "").uri)


def make_core(numbers: dict[str, EntryPoint] | None = None) -> SipCore:
    """Wired as telephony/service.py wires it, with a trunk at 192.0.2.0/24."""
    guard = SourceGuard(GuardSettings())
    ids = itertools.count(1)
    return SipCore(
        settings=CoreSettings(user_agent="CXOS-test"),
        transactions=TransactionLayer(),
        trunks=TrunkTable.build([Trunk(id="carrier", sources=("192.0.2.0/24",))]),
        dialplan=Dialplan(
            numbers=numbers if numbers is not None else {"*": EntryPoint(ivr="main")}
        ),
        registrar=Registrar(
            RegistrarSettings(realm="cxos"), credentials={}, secret=b"k" * 32, guard=guard
        ),
        guard=guard,
        new_id=lambda: f"id{next(ids)}",
    )


@pytest.fixture
def sip() -> Harness:
    return Harness(make_core())


# --- requests outside a call ------------------------------------------------------------


def test_options_is_answered_200_with_allow(sip: Harness) -> None:
    (ok,) = responses(sip.receive(request("OPTIONS")))
    assert ok.status == 200
    allowed = {m.strip() for m in (ok.headers.get_all("Allow"))}
    assert {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"} <= allowed
    assert ok.to.tag is not None
    assert ok.headers.get("Call-ID") == "call-1"


def test_unknown_method_is_501_with_allow(sip: Harness) -> None:
    (answer,) = responses(sip.receive(request("FROBNICATE")))
    assert answer.status == 501
    assert "INVITE" in answer.headers.get_all("Allow")


def test_unknown_require_option_is_420_with_unsupported(sip: Harness) -> None:
    (answer,) = responses(sip.receive(request("OPTIONS", extra=["Require: foo"])))
    assert answer.status == 420
    assert answer.headers.get_all("Unsupported") == ["foo"]


def test_max_forwards_zero_is_483(sip: Harness) -> None:
    data = request("INVITE", body=OFFER).replace(b"Max-Forwards: 70", b"Max-Forwards: 0")
    assert statuses(sip.receive(data)) == [100, 483]
    assert sip.of(IncomingCall) == []


def test_in_dialog_request_for_unknown_dialog_is_481(sip: Harness) -> None:
    assert statuses(sip.receive(request("BYE", to_tag="nosuchtag"))) == [481]


def test_accept_without_sdp_is_406(sip: Harness) -> None:
    # RFC 4475 §3.3.15: our answer would carry SDP, which the caller says it cannot take.
    data = request("INVITE", body=OFFER, extra=["Accept: text/nobodyKnowsThis"])
    assert statuses(sip.receive(data)) == [100, 406]


def test_register_for_a_non_sip_address_of_record_is_400(sip: Harness) -> None:
    data = request("REGISTER", uri="sip:192.0.2.1").replace(
        b"To: <sip:100@192.0.2.1>", b"To: isbn:2983792873"
    )
    assert statuses(sip.receive(data)) == [400]


def test_register_with_unknown_auth_scheme_is_challenged(sip: Harness) -> None:
    # RFC 4475 §3.3.7: credentials in a scheme we do not implement are not an error.
    data = request(
        "REGISTER", uri="sip:192.0.2.1", extra=["Authorization: NoOneKnowsThisScheme a=b"]
    )
    (answer,) = responses(sip.receive(data))
    assert answer.status == 401
    assert (answer.headers.get("WWW-Authenticate") or "").startswith("Digest")


# --- an inbound call ---------------------------------------------------------------------


def test_invite_from_trunk_is_offered_answered_and_acknowledged(sip: Harness) -> None:
    assert statuses(sip.receive(request("INVITE", body=OFFER))) == [100]
    call = sip.incoming()
    assert (call.did, call.trunk_id, call.entry_ivr, call.offer) == (
        "100",
        "carrier",
        "main",
        OFFER,
    )
    (started,) = sip.of(CallStarted)
    assert isinstance(started, CallStarted) and started.caller_id == "0612345678"

    sip.core.answer(call.call_id, ANSWER, sip.now)
    (ok,) = responses(sip.flush())
    assert ok.status == 200
    assert ok.body == ANSWER and ok.content_type == "application/sdp"
    assert ok.to.tag is not None
    assert contact_of(ok) == "sip:100@192.0.2.1:5060"
    assert sip.of(CallAnswered) == []

    assert sip.receive(ack_for(ok)) == []
    assert sip.of(CallAnswered) == [CallAnswered(call_id=call.call_id, codec="PCMU")]


def test_caller_bye_ends_the_call(sip: Harness) -> None:
    call, ok = sip.call_up()
    sip.now += 30.0
    bye = request("BYE", cseq=2, to_tag=ok.to.tag, branch="z9hG4bKbye1")
    assert statuses(sip.receive(bye)) == [200]
    (ended,) = sip.of(CallEnded)
    assert isinstance(ended, CallEnded)
    assert (ended.call_id, ended.cause, ended.hangup_by) == (call.call_id, "normal", "caller")
    assert ended.talk_seconds == pytest.approx(30.0)
    assert sip.core.active_calls() == []


def test_hangup_sends_bye_and_ends_on_its_200(sip: Harness) -> None:
    call, ok = sip.call_up()
    sip.core.hangup(call.call_id, sip.now)
    (bye,) = sip.flush()
    assert isinstance(bye, SipRequest) and bye.method == "BYE"
    # §12.2.1.1: to the remote target, our tag in From, theirs in To, next CSeq.
    assert bye.uri == "sip:0612345678@192.0.2.10:5060"
    assert bye.from_.tag == ok.to.tag and bye.to.tag == "caller1"
    assert sip.wire[-1][1].destination == TRUNK
    assert sip.of(CallEnded) == []

    sip.receive(build_response(bye, 200).to_bytes())
    (ended,) = sip.of(CallEnded)
    assert isinstance(ended, CallEnded)
    assert (ended.cause, ended.hangup_by) == ("normal", "server")


def test_cancel_before_answer_is_487_and_ends_cancelled(sip: Harness) -> None:
    sip.receive(request("INVITE", body=OFFER))
    call = sip.incoming()
    cancel = request("CANCEL", branch="z9hG4bKa1")
    assert sorted(statuses(sip.receive(cancel))) == [200, 487]
    (ended,) = sip.of(CallEnded)
    assert isinstance(ended, CallEnded)
    assert (ended.call_id, ended.cause, ended.hangup_by) == (call.call_id, "cancelled", "caller")


def test_invite_from_unknown_source_is_403(sip: Harness) -> None:
    assert statuses(sip.receive(request("INVITE", body=OFFER), source=STRANGER)) == [100, 403]
    (rejected,) = sip.of(CallRejected)
    assert isinstance(rejected, CallRejected)
    assert (rejected.status, rejected.source) == (403, STRANGER[0])
    assert sip.of(IncomingCall) == []


def test_unknown_number_without_catch_all_is_404() -> None:
    sip = Harness(make_core({"100": EntryPoint(ivr="main")}))
    data = request("INVITE", uri="sip:999@192.0.2.1", body=OFFER)
    assert statuses(sip.receive(data)) == [100, 404]
    again = request("INVITE", call_id="call-2", branch="z9hG4bKa2", body=OFFER)
    assert statuses(sip.receive(again)) == [100]


def test_lower_cseq_in_dialog_is_500(sip: Harness) -> None:
    _, ok = sip.call_up()
    sip.receive(request("INFO", cseq=5, to_tag=ok.to.tag, branch="z9hG4bKinfo5"))
    (answer,) = responses(
        sip.receive(request("INFO", cseq=3, to_tag=ok.to.tag, branch="z9hG4bKi3"))
    )
    assert answer.status == 500
    assert answer.headers.get("Retry-After") is not None


def test_reinvite_in_call_gets_our_sdp(sip: Harness) -> None:
    _, ok = sip.call_up()
    reinvite = request("INVITE", cseq=2, to_tag=ok.to.tag, branch="z9hG4bKre2", body=OFFER)
    (trying, answer) = responses(sip.receive(reinvite))
    assert (trying.status, answer.status) == (100, 200)
    assert answer.body == ANSWER
    # §14.2: a re-INVITE without an offer gets our session as the offer.
    bare = request("INVITE", cseq=3, to_tag=ok.to.tag, branch="z9hG4bKre3")
    assert responses(sip.receive(bare))[-1].body == ANSWER


def test_reinvite_before_ack_is_491(sip: Harness) -> None:
    sip.receive(request("INVITE", body=OFFER))
    call = sip.incoming()
    sip.core.answer(call.call_id, ANSWER, sip.now)
    (ok,) = responses(sip.flush())
    reinvite = request("INVITE", cseq=2, to_tag=ok.to.tag, branch="z9hG4bKre2", body=OFFER)
    assert statuses(sip.receive(reinvite)) == [100, 491]


def test_no_ack_for_the_200_ends_the_call_with_bye_after_64_t1(sip: Harness) -> None:
    sip.receive(request("INVITE", body=OFFER))
    call = sip.incoming()
    sip.core.answer(call.call_id, ANSWER, sip.now)
    sip.flush()
    # §13.3.1.4: the 2xx is retransmitted meanwhile; no BYE before 64*T1.
    before = sip.advance(64 * T1 - 0.01)
    assert before and all(isinstance(m, SipResponse) and m.status == 200 for m in before)
    after = sip.advance(0.02)
    byes = [m for m in after if isinstance(m, SipRequest) and m.method == "BYE"]
    assert len(byes) == 1
    sip.receive(build_response(byes[0], 200).to_bytes())
    (ended,) = sip.of(CallEnded)
    assert isinstance(ended, CallEnded) and ended.hangup_by == "server"


def test_merged_request_is_482(sip: Harness) -> None:
    # §8.2.2.2: the same INVITE (From tag, Call-ID, CSeq) forked to us over another path.
    assert statuses(sip.receive(request("INVITE", body=OFFER, branch="z9hG4bKpathA"))) == [100]
    again = request("INVITE", body=OFFER, branch="z9hG4bKpathB", via="192.0.2.11:5060")
    assert statuses(sip.receive(again)) == [100, 482]
    assert len(sip.of(IncomingCall)) == 1
    # A retransmission on the first path is absorbed, not taken for a merged copy.
    assert statuses(sip.receive(request("INVITE", body=OFFER, branch="z9hG4bKpathA"))) == [100]


def test_responses_find_a_caller_behind_nat(sip: Harness) -> None:
    # RFC 3581 §4: rport asked for: received and rport stamped, answer to the source port.
    behind_nat: Address = ("203.0.113.9", 40123)
    data = request("OPTIONS", via="10.0.0.5:5060").replace(b";branch=", b";rport;branch=")
    (ok,) = responses(sip.receive(data, source=behind_nat))
    via = ok.top_via
    assert (via.received, via.rport) == ("203.0.113.9", 40123)
    assert sip.wire[-1][1].destination == behind_nat
    # Without rport (RFC 3261 §18.2.2): received stamped, answer to the Via port at the source.
    (ok,) = responses(
        sip.receive(request("OPTIONS", via="10.0.0.5:5062", call_id="c2"), behind_nat)
    )
    assert ok.top_via.received == "203.0.113.9"
    assert sip.wire[-1][1].destination == ("203.0.113.9", 5062)


# --- malformed input ---------------------------------------------------------------------


def test_malformed_request_with_enough_headers_is_answered_400(sip: Harness) -> None:
    # Two spaces in the request line (RFC 4475 §3.1.2.9): the parser refuses it, but Via,
    # From, To, Call-ID and CSeq can be read, so the answer can be built and routed.
    data = request("OPTIONS").replace(b"OPTIONS sip:", b"OPTIONS  sip:", 1)
    (answer,) = responses(sip.receive(data))
    assert answer.status == 400
    assert answer.headers.get("Call-ID") == "call-1"
    assert answer.to.tag is not None
    assert sip.wire[-1][1].destination == TRUNK
    assert sip.core.counters.malformed_answered == 1


def test_unroutable_malformed_request_and_malformed_ack_are_dropped(sip: Harness) -> None:
    no_via = b"OPTIONS  sip:100@192.0.2.1 SIP/2.0\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n"
    assert sip.receive(no_via) == []
    bad_ack = request("ACK").replace(b"CSeq: 1 ACK", b"CSeq: one ACK")
    assert sip.receive(bad_ack) == []  # an ACK is never answered (§17.2.1)
    assert sip.core.counters.malformed_dropped == 2


def test_malformed_response_is_dropped_and_counted(sip: Harness) -> None:
    bad = b"SIP/2.0 4294967301 Big\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n\r\n"
    assert sip.receive(bad) == []
    assert sip.core.counters.malformed_dropped == 1


def test_broken_via_is_answered_to_the_source(sip: Harness) -> None:
    # RFC 4475 §3.1.2.1: the Via itself is broken, so the datagram's source is the only address
    # known to reach the sender; the answer echoes the Via as received.
    data = request("OPTIONS", via="192.0.2.10;;,;,,").replace(b";branch=z9hG4bKa1", b"")
    sip.core.receive(data, ("192.0.2.10", 40999), "udp", LOCAL, sip.now)
    (transmit,), _ = sip.core.take_output()
    assert transmit.data.startswith(b"SIP/2.0 400 ")
    assert b"\r\nVia: SIP/2.0/UDP 192.0.2.10;;,;,,\r\n" in transmit.data
    assert transmit.destination == ("192.0.2.10", 40999)


def test_wrong_version_is_505_and_oversized_is_513(sip: Harness) -> None:
    assert statuses(
        sip.receive(request("OPTIONS").replace(b" SIP/2.0\r\n", b" SIP/7.0\r\n", 1))
    ) == [505]
    big = request("OPTIONS", call_id="big", body=b"x" * 17000)
    assert statuses(sip.receive(big)) == [513]


def test_stream_message_without_content_length_is_400(sip: Harness) -> None:
    # RFC 3261 §18.3: on TCP only Content-Length frames a message.
    data = request("OPTIONS").replace(b"Content-Length: 0\r\n", b"")
    assert statuses(sip.receive(data, transport="tcp")) == [400]
    assert statuses(sip.receive(data.replace(b"call-1", b"call-2"))) == [200]


# --- nothing a peer sends makes the core raise --------------------------------------------

TORTURE = tuple(
    sorted(p.read_bytes() for p in (Path(__file__).parent.parent / "fixtures/sip").glob("*/*.dat"))
)
SEEDS = (
    *TORTURE,
    request("INVITE", body=OFFER),
    request("OPTIONS", extra=["Require: foo", "Accept: application/sdp"]),
    request("BYE", to_tag="id1"),
    request("CANCEL"),
    request("ACK", to_tag="id1"),
    request("REGISTER", uri="sip:192.0.2.1", extra=['Authorization: Digest username="1001"']),
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1"
    b"\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
)
TOKENS = st.sampled_from(
    [b"\r\n", b" ", b":", b";", b",", b"<", b">", b'"', b"\\", b"%", b"\x00", b"\xff", b"[", b"]",
     b"=", b"@", b"/", b"\r\n ", b"0", b"-1", b"99999999999999999999", b"z9hG4bK", b"tag=",
     b"INVITE", b"ACK", b"SIP/2.0", b"rport"]
)  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        if action == "insert":
            data[at:at] = draw(TOKENS)
        elif action == "delete":
            data[at : at + draw(st.integers(1, 12))] = b""
        else:
            data[at : at + 1] = draw(st.binary(min_size=1, max_size=3))
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=st.lists(st.one_of(mutated(), st.binary(max_size=300)), min_size=1, max_size=6),
    transport=st.sampled_from(["udp", "tcp"]),
    source=st.sampled_from([TRUNK, STRANGER, ("2001:db8::5", 5060)]),
)
def test_core_never_raises_on_what_a_peer_sends(
    messages: list[bytes], transport: str, source: Address
) -> None:
    sip = Harness(make_core())
    for data in messages:
        sip.core.receive(data, source, transport, LOCAL, sip.now)
        transmits, events = sip.core.take_output()
        if _parses(data):
            # What we send parses (answers to malformed requests echo their broken headers).
            for transmit in transmits:
                parse_message(transmit.data)
        for event in events:
            if isinstance(event, IncomingCall):
                sip.core.answer(event.call_id, ANSWER, sip.now)
        sip.now += 1.0
    sip.advance(40.0)


def _parses(data: bytes) -> bool:
    try:
        parse_message(data)
    except SipParseError:
        return False
    return True


# --- the TCP transport hands unframeable bytes to the core before closing ------------------


async def test_tcp_framing_error_delivers_what_framed_then_the_rest_and_closes() -> None:
    # RFC 3261 §18.3: a negative Content-Length cannot frame a message; the good message
    # before it in the same segment still counts, the bad one goes to the core to answer 400,
    # and the stream, which cannot be re-synchronised, is closed.
    delivered: list[bytes] = []
    transport = SipTransport(lambda data, source, kind, local: delivered.append(data))
    _, port = await transport.listen_tcp("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    good = request("OPTIONS")
    bad = request("OPTIONS", call_id="call-2").replace(b"Content-Length: 0", b"Content-Length: -1")
    try:
        writer.write(b"\r\n\r\n" + good + bad)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), timeout=5.0) == b""  # closed by the server
    finally:
        writer.close()
        await transport.close()
    assert delivered == [good, bad]
    assert transport.counters.tcp_framing_errors == 1
