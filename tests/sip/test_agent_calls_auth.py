"""INVITEs from agents' softphones (telephony/sip/agent_auth.py) against the SIP core in memory.

A softphone registers from 203.0.113.5 (no trunk covers it), then places a call: challenged
with 401 (the server is the UAS of the call, RFC 3261 §22.2) whatever its From says, let in
with the right digest (MD5 or SHA-256) in Authorization, challenged again (and counted by the
source guard) with a wrong password or an unknown user, stale=true for an old nonce. Addresses
where no softphone is registered keep getting 403, unless the INVITE carries credentials of our
realm or ``challenge_unregistered_calls`` is on: then a phone that never registered calls as the
agent its credentials name.
"""

from __future__ import annotations

import hashlib
import itertools

from config.settings import Dialplan, EntryPoint, Trunk
from telephony.events import AgentCallStarted, CallAnswered, CallStarted
from telephony.sip.agent_auth import AgentCallAuth
from telephony.sip.core import CoreSettings, IncomingCall, SipCore
from telephony.sip.digest import Algorithm, Challenge, StoredSecret, answer_challenge
from telephony.sip.guard import GuardSettings, SourceGuard
from telephony.sip.message import SipResponse, parse_message
from telephony.sip.registrar import Registrar, RegistrarSettings
from telephony.sip.registrar_events import AuthenticationFailed, SourceBlocked
from telephony.sip.transaction import TransactionLayer
from telephony.sip.transaction_types import Address
from telephony.trunks import TrunkTable

LOCAL: Address = ("192.0.2.1", 5060)
PHONE: Address = ("203.0.113.5", 5062)
STRANGER: Address = ("198.51.100.7", 5060)
PASSWORDS = {"1001": "pw-1001", "1002": "pw-1002"}
SDP = (
    b"v=0\r\no=- 1 1 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


class Node:
    def __init__(
        self,
        *,
        algorithms: tuple[Algorithm, ...] = (Algorithm.MD5, Algorithm.SHA256),
        challenge_unregistered: bool = False,
    ):
        self.guard = SourceGuard(GuardSettings(max_failures=3))
        secrets = {user: StoredSecret(password=pw) for user, pw in PASSWORDS.items()}
        settings = RegistrarSettings(
            realm="cxos",
            algorithms=algorithms,
            challenge_unregistered_calls=challenge_unregistered,
        )
        ids = itertools.count(1)
        self.core = SipCore(
            settings=CoreSettings(),
            transactions=TransactionLayer(),
            trunks=TrunkTable.build([Trunk(id="carrier", sources=("192.0.2.0/24",))]),
            dialplan=Dialplan(numbers={"*": EntryPoint(ivr="main")}),
            registrar=Registrar(settings, credentials=secrets, secret=b"r" * 32, guard=self.guard),
            guard=self.guard,
            new_id=lambda: f"id{next(ids)}",
            agent_auth=AgentCallAuth(
                settings, credentials=secrets.get, secret=b"a" * 32, guard=self.guard
            ),
        )
        self.now = 0.0
        self.events: list[object] = []
        self._branch = itertools.count(1)

    def send(self, data: str, source: Address = PHONE) -> list[SipResponse]:
        self.core.receive(data.encode(), source, "udp", LOCAL, self.now)
        return self.take()

    def take(self) -> list[SipResponse]:
        """The responses the core sent since the last take; its events go to `events`."""
        transmits, events = self.core.take_output()
        self.events.extend(events)
        out = [parse_message(t.data) for t in transmits]
        return [m for m in out if isinstance(m, SipResponse)]

    def request(
        self,
        method: str,
        *,
        user: str = "1001",
        uri: str = "sip:*45@192.0.2.1",
        cseq: int = 1,
        call_id: str = "c1",
        auth: tuple[str, str] | None = None,
        from_user: str | None = None,
    ) -> str:
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP 203.0.113.5:5062;branch=z9hG4bK{next(self._branch)}",
            "Max-Forwards: 70",
            f"From: <sip:{from_user or user}@192.0.2.1>;tag=ft{call_id}",
            f"To: <sip:{user if method == 'REGISTER' else uri[4:].partition('@')[0]}@192.0.2.1>",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:{user}@203.0.113.5:5062>",
        ]
        if auth is not None:
            lines.append(f"{auth[0]}: {auth[1]}")
        body = SDP.decode() if method == "INVITE" else ""
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        return "\r\n".join(lines) + "\r\n\r\n" + body

    def register(self, user: str = "1001") -> None:
        (challenge,) = self.send(self.request("REGISTER", user=user, uri="sip:192.0.2.1"))[-1:]
        credentials = answer(challenge, "WWW-Authenticate", user, PASSWORDS[user], "REGISTER")
        final = self.send(
            self.request(
                "REGISTER",
                user=user,
                uri="sip:192.0.2.1",
                cseq=2,
                auth=("Authorization", credentials),
            )
        )
        assert final[-1].status == 200

    def invite(self, **kwargs: object) -> SipResponse:
        return self.send(self.request("INVITE", **kwargs))[-1]  # type: ignore[arg-type]


def answer(
    response: SipResponse,
    header: str,
    user: str,
    password: str,
    method: str,
    uri: str = "sip:192.0.2.1",
    algorithm: Algorithm = Algorithm.MD5,
) -> str:
    challenges = [Challenge.parse(v) for v in response.headers.get_all(header)]
    challenge = next(c for c in challenges if c.algorithm is algorithm)
    return str(
        answer_challenge(
            challenge, username=user, password=password, method=method, uri=uri, cnonce="cn"
        )
    )


def test_invite_from_where_no_phone_is_registered_gets_403() -> None:
    node = Node()
    assert node.invite().status == 403
    node.register()
    # Registered from PHONE: a stranger elsewhere still gets 403, with any From.
    assert node.send(node.request("INVITE", call_id="c3"), source=STRANGER)[-1].status == 403
    assert node.core.counters.forbidden == 2


def test_a_registered_phone_is_challenged_401_whatever_its_from() -> None:
    node = Node()
    node.register()
    known = node.invite(call_id="k1")
    unknown = node.invite(user="9999", from_user="9999", call_id="k2")
    for response in (known, unknown):
        assert (response.status, response.reason) == (401, "Unauthorized")
        algorithms = [
            Challenge.parse(v).algorithm for v in response.headers.get_all("WWW-Authenticate")
        ]
        assert algorithms == [Algorithm.MD5, Algorithm.SHA256]
        assert response.headers.get_all("Proxy-Authenticate") == []
    assert not any(isinstance(e, IncomingCall) for e in node.events)


def test_the_right_digest_makes_a_call_from_the_agent() -> None:
    for algorithm in (Algorithm.MD5, Algorithm.SHA256):
        node = Node()
        node.register()
        challenge = node.invite(call_id="a1")
        uri = "sip:*45@192.0.2.1"
        credentials = answer(
            challenge, "WWW-Authenticate", "1001", "pw-1001", "INVITE", uri, algorithm
        )
        response = node.invite(call_id="a1", cseq=2, auth=("Authorization", credentials))
        assert response.status == 100
        (incoming,) = [e for e in node.events if isinstance(e, IncomingCall)]
        assert (incoming.agent, incoming.did, incoming.trunk_id) == ("1001", "*45", "")
        assert (incoming.entry_ivr, incoming.entry_queue) == (None, None)
        (started,) = [e for e in node.events if isinstance(e, AgentCallStarted)]
        assert (started.sip_user, started.dialled, started.source) == ("1001", "*45", PHONE[0])
        assert not [e for e in node.events if isinstance(e, CallStarted)]


def test_credentials_in_proxy_authorization_are_not_read() -> None:
    """The answer to a UAS's 401 goes in Authorization (§22.2): credentials in
    Proxy-Authorization are a proxy's, so the phone is challenged afresh, and nothing counted."""
    node = Node()
    node.register()
    challenge = node.invite(call_id="b1")
    credentials = answer(
        challenge, "WWW-Authenticate", "1001", "pw-1001", "INVITE", "sip:*45@192.0.2.1"
    )
    response = node.invite(call_id="b1", cseq=2, auth=("Proxy-Authorization", credentials))
    assert response.status == 401
    assert not any(isinstance(e, IncomingCall | AuthenticationFailed) for e in node.events)


def test_wrong_password_and_unknown_user_look_alike_and_count_until_blocked() -> None:
    node = Node()
    node.register()
    uri = "sip:*45@192.0.2.1"
    answers = []
    for number, (user, password) in enumerate(
        [("1001", "wrong"), ("9999", "pw-1001"), ("1001", "again-wrong")]
    ):
        call_id = f"w{number}"
        challenge = node.invite(call_id=call_id, user=user, from_user=user)
        credentials = answer(challenge, "WWW-Authenticate", user, password, "INVITE", uri)
        answers.append(
            node.invite(call_id=call_id, cseq=2, user=user, auth=("Authorization", credentials))
        )
    assert [r.status for r in answers] == [401, 401, 401]
    failures = [e for e in node.events if isinstance(e, AuthenticationFailed)]
    assert [(f.username, f.method) for f in failures] == [
        ("1001", "INVITE"),
        ("9999", "INVITE"),
        ("1001", "INVITE"),
    ]
    assert [e.source for e in node.events if isinstance(e, SourceBlocked)] == [PHONE[0]]
    assert not any(isinstance(e, IncomingCall) for e in node.events)


def test_an_old_nonce_is_answered_stale() -> None:
    node = Node()
    node.register()
    challenge = node.invite(call_id="s1")
    node.now += 301.0
    credentials = answer(
        challenge, "WWW-Authenticate", "1001", "pw-1001", "INVITE", "sip:*45@192.0.2.1"
    )
    response = node.invite(call_id="s1", cseq=2, auth=("Authorization", credentials))
    assert response.status == 401
    assert all(Challenge.parse(v).stale for v in response.headers.get_all("WWW-Authenticate"))
    assert not any(isinstance(e, AuthenticationFailed) for e in node.events)


def test_an_agent_cannot_call_as_another_agent() -> None:
    node = Node()
    node.register()
    challenge = node.invite(call_id="f1")
    credentials = answer(
        challenge, "WWW-Authenticate", "1001", "pw-1001", "INVITE", "sip:*45@192.0.2.1"
    )
    response = node.invite(
        call_id="f1", cseq=2, from_user="1002", auth=("Authorization", credentials)
    )
    assert response.status == 403
    assert not any(isinstance(e, IncomingCall) for e in node.events)


def test_once_the_registration_is_removed_the_address_gets_403_again() -> None:
    node = Node()
    node.register()
    assert node.invite(call_id="u1").status == 401
    node.now += 3601.0
    node.core.on_timer(node.now)
    node.core.take_output()
    assert node.invite(call_id="u2").status == 403


def _without_nonce(response: SipResponse) -> list[tuple[str, str]]:
    """The response's status and headers with each challenge's nonce blanked out."""
    lines = [("status", f"{response.status} {response.reason}")]
    for name, value in response.headers.items():
        if name.lower() == "www-authenticate":
            challenge = Challenge.parse(value)
            value = value.replace(challenge.nonce, "")
        lines.append((name.lower(), value))
    return lines


def test_a_phone_that_never_registered_calls_with_the_agents_credentials() -> None:
    node = Node(challenge_unregistered=True)
    challenge = node.invite(call_id="n1")  # from PHONE, which sent no REGISTER
    assert challenge.status == 401
    credentials = answer(
        challenge, "WWW-Authenticate", "1001", "pw-1001", "INVITE", "sip:*45@192.0.2.1"
    )
    response = node.invite(call_id="n1", cseq=2, auth=("Authorization", credentials))
    assert response.status == 100
    (incoming,) = [e for e in node.events if isinstance(e, IncomingCall)]
    assert (incoming.agent, incoming.did) == ("1001", "*45")


def test_unknown_users_and_wrong_passwords_of_unregistered_phones_look_alike() -> None:
    node = Node(challenge_unregistered=True)
    uri = "sip:*45@192.0.2.1"
    answers = []
    for number, (user, password) in enumerate([("1001", "wrong"), ("9999", "pw-1001")]):
        call_id = f"e{number}"
        first = node.invite(call_id=call_id, user=user, from_user=user)
        credentials = answer(first, "WWW-Authenticate", user, password, "INVITE", uri)
        answers.append(
            node.invite(call_id=call_id, cseq=2, user=user, auth=("Authorization", credentials))
        )
    wrong_password, unknown_user = answers
    assert wrong_password.status == 401
    # Byte for byte the same but for the nonce and what echoes the request (tags, Call-ID...).
    echoed = {"via", "from", "to", "call-id", "cseq"}
    assert [h for h in _without_nonce(wrong_password) if h[0] not in echoed] == [
        h for h in _without_nonce(unknown_user) if h[0] not in echoed
    ]
    failures = [e for e in node.events if isinstance(e, AuthenticationFailed)]
    assert [f.username for f in failures] == ["1001", "9999"]
    assert not any(isinstance(e, IncomingCall) for e in node.events)


def test_without_the_setting_an_invite_carrying_credentials_is_still_challenged() -> None:
    """A phone that never registered here but answers with credentials it keeps (a nonce of
    another node, or of this one before a restart) is challenged afresh and gets in; without
    credentials the same address is a stranger's."""
    node = Node()
    assert node.invite(call_id="p0").status == 403
    # Credentials of our realm, for a nonce this node never issued.
    elsewhere = Challenge(realm="cxos", nonce="issued-elsewhere", algorithm=Algorithm.MD5)
    stale = str(
        answer_challenge(
            elsewhere,
            username="1001",
            password="pw-1001",
            method="INVITE",
            uri="sip:*45@192.0.2.1",
            cnonce="cn",
        )
    )
    challenge = node.invite(call_id="p1", auth=("Authorization", stale))
    assert challenge.status == 401
    fresh = answer(challenge, "WWW-Authenticate", "1001", "pw-1001", "INVITE", "sip:*45@192.0.2.1")
    assert node.invite(call_id="p1", cseq=2, auth=("Authorization", fresh)).status == 100
    (incoming,) = [e for e in node.events if isinstance(e, IncomingCall)]
    assert incoming.agent == "1001"
    # The nonce it did not know is no failure of the phone: nothing counted against it.
    assert not any(isinstance(e, AuthenticationFailed) for e in node.events)


def _pyvoip_invite(branch: str, tag: str, cseq: int, auth: str | None = None) -> str:
    """An INVITE as PyVoIP 1.6 writes it: the challenged one and the one with credentials
    share Call-ID and Via branch; From tag and CSeq change."""
    lines = [
        "INVITE sip:*45@192.0.2.1 SIP/2.0",
        f"Via: SIP/2.0/UDP 203.0.113.5:5062;branch={branch}",
        "Max-Forwards: 70",
        "Contact: <sip:1001@203.0.113.5:5062>",
        "To: <sip:*45@192.0.2.1>",
        f"From: <sip:1001@203.0.113.5>;tag={tag}",
        "Call-ID: pyvoip-call",
        f"CSeq: {cseq} INVITE",
        "Content-Type: application/sdp",
        "User-Agent: pyVoIP 1.6.8",
    ]
    if auth is not None:
        lines.append(f"Authorization: {auth}")
    lines.append(f"Content-Length: {len(SDP)}")
    return "\r\n".join(lines) + "\r\n\r\n" + SDP.decode()


def test_pyvoip_gets_a_401_alone_and_calls_on_the_challenged_branch() -> None:
    """PyVoIP takes a 100 for the end of the exchange and answers only 401s: its INVITE is
    challenged with a 401 and nothing before it; after the ACK, its INVITE with credentials on
    the same branch (new CSeq and From tag) is a new request, and becomes the agent's call."""
    node = Node()
    node.register()
    branch = "z9hG4bKpyvoip"
    first = node.send(_pyvoip_invite(branch, "tag1", 1))
    assert [r.status for r in first] == [401]
    (challenge,) = first
    assert challenge.headers.get_all("Proxy-Authenticate") == []
    www = [Challenge.parse(v) for v in challenge.headers.get_all("WWW-Authenticate")]
    md5 = next(c for c in www if c.algorithm is Algorithm.MD5)
    ack = "\r\n".join(
        [
            "ACK sip:*45@192.0.2.1 SIP/2.0",
            f"Via: SIP/2.0/UDP 203.0.113.5:5062;branch={branch}",
            "Max-Forwards: 70",
            "To: " + (challenge.headers.get("To") or ""),
            "From: <sip:1001@203.0.113.5>;tag=tag1",
            "Call-ID: pyvoip-call",
            "CSeq: 1 ACK",
            "Content-Length: 0",
        ]
    )
    assert node.send(ack + "\r\n\r\n") == []
    # PyVoIP's answer: MD5 without qop (RFC 2069 style), its own idea of the digest URI.
    uri = "sip:192.0.2.1;transport=UDP"
    ha1 = hashlib.md5(f"1001:{md5.realm}:pw-1001".encode()).hexdigest()
    ha2 = hashlib.md5(f"INVITE:{uri}".encode()).hexdigest()
    response = hashlib.md5(f"{ha1}:{md5.nonce}:{ha2}".encode()).hexdigest()
    auth = (
        f'Digest username="1001",realm="{md5.realm}",nonce="{md5.nonce}",'
        f'uri="{uri}",response="{response}",algorithm=MD5'
    )
    second = node.send(_pyvoip_invite(branch, "tag2", 2, auth))
    assert [r.status for r in second] == [100]
    (incoming,) = [e for e in node.events if isinstance(e, IncomingCall)]
    assert (incoming.agent, incoming.did) == ("1001", "*45")
    # A retransmission of it (same CSeq) is absorbed: the 100 again, no second call.
    assert [r.status for r in node.send(_pyvoip_invite(branch, "tag2", 2, auth))] == [100]
    assert len([e for e in node.events if isinstance(e, IncomingCall)]) == 1
    # Answered; PyVoIP acknowledges on the INVITE's branch with a To tag of its own making:
    # the ACK still matches our INVITE's transaction, and the call is up.
    node.core.answer(incoming.call_id, SDP, node.now)
    assert [r.status for r in node.take()] == [200]
    ack_ok = ack.replace("CSeq: 1 ACK", "CSeq: 2 ACK").replace("tag=tag1", "tag=tag2")
    ack_ok = ack_ok.replace(challenge.headers.get("To") or "", "<sip:*45@192.0.2.1>;tag=own")
    node.send(ack_ok + "\r\n\r\n")
    (answered,) = [e for e in node.events if isinstance(e, CallAnswered)]
    assert answered.call_id == incoming.call_id


def test_every_phone_gets_a_lone_401_and_strangers_still_get_100_then_403() -> None:
    node = Node()
    node.register()
    assert [r.status for r in node.send(node.request("INVITE", call_id="o1"))] == [401]
    stranger = node.send(node.request("INVITE", call_id="o2"), source=STRANGER)
    assert [r.status for r in stranger] == [100, 403]
