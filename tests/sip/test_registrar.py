"""Registrar flows (RFC 3261 §10.3) with digest auth, driven by a fake clock."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest

from telephony.sip.digest import (
    Algorithm,
    Challenge,
    StoredSecret,
    answer_challenge,
    choose_challenge,
    compute_ha1,
)
from telephony.sip.guard import GuardSettings, GuardVerdict, SourceGuard
from telephony.sip.message import SipRequest, SipResponse, parse_message
from telephony.sip.registrar import Registrar, RegistrarSettings
from telephony.sip.registrar_events import (
    AuthenticationFailed,
    RegistrationAdded,
    RegistrationExpired,
    RegistrationRefreshed,
    RegistrationRemoved,
    SourceBlocked,
)

REALM = "cxos.example"
SECRET = b"registrar-test-secret-0123456789"
PASSWORDS = {"1001": "s3cret-1001", "1002": "s3cret-1002"}
PHONE_SOURCE = ("203.0.113.5", 40000)


def registrar(*, guard: SourceGuard | None = None, **settings: object) -> Registrar:
    return Registrar(
        RegistrarSettings(realm=REALM, **settings),  # type: ignore[arg-type]
        credentials={user: StoredSecret(password=pw) for user, pw in PASSWORDS.items()},
        secret=SECRET,
        guard=guard,
    )


@dataclass
class Phone:
    """A softphone behind NAT: it writes its private address in Contact."""

    user: str = "1001"
    password: str = "s3cret-1001"
    contact: str = "sip:1001@192.168.1.20:5060;ob"
    call_id: str = "a84b4c76e66710@192.168.1.20"
    cseq: int = 0
    authorization: str | None = None
    challenge: Challenge | None = None
    branch_counter: int = 0
    extra: list[str] = field(default_factory=list)

    def register(
        self,
        *,
        expires: int | None = 3600,
        contacts: list[str] | None = None,
        username: str | None = None,
    ) -> SipRequest:
        self.cseq += 1
        self.branch_counter += 1
        lines = [
            f"REGISTER sip:{REALM} SIP/2.0",
            f"Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK{self.branch_counter:04d};rport",
            "Max-Forwards: 70",
            f"From: <sip:{username or self.user}@{REALM}>;tag=456248",
            f"To: <sip:{username or self.user}@{REALM}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
            "User-Agent: baresip v1.0.0 (x86_64/linux)",
        ]
        for contact in [f"<{self.contact}>"] if contacts is None else contacts:
            lines.append(f"Contact: {contact}")
        if expires is not None:
            lines.append(f"Expires: {expires}")
        if self.authorization is not None:
            lines.append(f"Authorization: {self.authorization}")
        lines += self.extra
        message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
        assert isinstance(message, SipRequest)
        return message

    def answer(self, response: SipResponse, *, nc: int = 1) -> None:
        self.challenge = choose_challenge(response.headers.get_all("WWW-Authenticate"))
        self.count_up(nc)

    def count_up(self, nc: int) -> None:
        """Answer the nonce we already hold again, with the next nonce-count."""
        assert self.challenge is not None
        self.authorization = str(
            answer_challenge(
                self.challenge,
                username=self.user,
                password=self.password,
                method="REGISTER",
                uri=f"sip:{REALM}",
                cnonce=f"cn{self.cseq}",
                nc=nc,
            )
        )


def register_ok(
    reg: Registrar, phone: Phone, now: float, source: tuple[str, int] = PHONE_SOURCE, **kw: object
) -> SipResponse:
    """The usual two steps: 401 challenge, then the authenticated REGISTER."""
    challenge = reg.handle_register(phone.register(**kw), source, "udp", now)  # type: ignore[arg-type]
    assert challenge.status == 401
    phone.answer(challenge)
    response = reg.handle_register(phone.register(**kw), source, "udp", now)  # type: ignore[arg-type]
    assert response.status == 200, response.to_bytes()
    return response


# --- authentication ----------------------------------------------------------------------


def test_first_register_is_challenged_sha256_first() -> None:
    reg = registrar()
    response = reg.handle_register(Phone().register(), PHONE_SOURCE, "udp", now=1000.0)
    assert (response.status, response.reason) == (401, "Unauthorized")
    sha, md5 = response.headers.get_all("WWW-Authenticate")
    assert "algorithm=SHA-256" in sha and "algorithm=MD5" in md5
    assert response.to.tag is not None
    assert "Contact" not in response.headers
    assert reg.lookup("1001", 1000.0) == []


def test_register_with_digest_creates_a_binding() -> None:
    reg = registrar()
    response = register_ok(reg, Phone(), now=1000.0)
    assert response.headers.get_all("Contact") == ["<sip:1001@192.168.1.20:5060;ob>;expires=3600"]
    assert response.call_id == "a84b4c76e66710@192.168.1.20"
    (binding,) = reg.lookup("1001", 1000.0)
    assert binding.contact == "sip:1001@192.168.1.20:5060;ob"
    assert binding.source == PHONE_SOURCE
    assert binding.transport == "UDP"
    assert binding.user_agent == "baresip v1.0.0 (x86_64/linux)"
    assert reg.take_events() == [
        RegistrationAdded(
            aor="1001",
            contact="sip:1001@192.168.1.20:5060;ob",
            source_address="203.0.113.5",
            source_port=40000,
            transport="UDP",
            expires_seconds=3600,
            user_agent="baresip v1.0.0 (x86_64/linux)",
        )
    ]
    assert reg.take_events() == []


def test_md5_only_phone_and_stored_ha1() -> None:
    ha1 = compute_ha1(Algorithm.MD5, "1001", REALM, "s3cret-1001")
    reg = Registrar(
        RegistrarSettings(realm=REALM),
        credentials=lambda user: StoredSecret(ha1_md5=ha1) if user == "1001" else None,
        secret=SECRET,
    )
    phone = Phone()
    challenge = reg.handle_register(phone.register(), PHONE_SOURCE, "udp", 1000.0)
    md5_only = [v for v in challenge.headers.get_all("WWW-Authenticate") if "MD5" in v]
    phone.authorization = str(
        answer_challenge(
            choose_challenge(md5_only),
            username="1001",
            password="s3cret-1001",
            method="REGISTER",
            uri=f"sip:{REALM}",
            cnonce="x",
        )
    )
    assert reg.handle_register(phone.register(), PHONE_SOURCE, "udp", 1000.0).status == 200


def test_unknown_user_and_wrong_password_get_the_same_bytes() -> None:
    def attempt(user: str, password: str) -> bytes:
        reg = registrar()  # fixed secret; same clock below
        phone = Phone(user=user, password=password, contact=f"sip:{user}@192.168.1.20")
        phone.answer(reg.handle_register(phone.register(), PHONE_SOURCE, "udp", 1000.0))
        response = reg.handle_register(phone.register(), PHONE_SOURCE, "udp", 1001.0)
        return response.to_bytes()

    wrong_password = attempt("1001", "guess")
    unknown_user = attempt("9999", "guess")
    assert wrong_password.startswith(b"SIP/2.0 401 Unauthorized\r\n")
    assert unknown_user.replace(b"9999", b"1001") == wrong_password


def test_expired_nonce_gets_stale_only_with_the_right_password() -> None:
    reg = registrar(nonce_lifetime=300.0)
    phone = Phone()
    phone.answer(reg.handle_register(phone.register(), PHONE_SOURCE, "udp", 1000.0))
    late = reg.handle_register(phone.register(), PHONE_SOURCE, "udp", 1400.0)
    assert late.status == 401
    assert all(v.endswith("stale=true") for v in late.headers.get_all("WWW-Authenticate"))
    # A phone reacts by answering the fresh nonce without asking its user.
    phone.answer(late)
    assert reg.handle_register(phone.register(), PHONE_SOURCE, "udp", 1400.0).status == 200

    intruder = Phone(password="guess")
    intruder.answer(reg.handle_register(intruder.register(), PHONE_SOURCE, "udp", 1000.0))
    refused = reg.handle_register(intruder.register(), PHONE_SOURCE, "udp", 1400.0)
    assert not any("stale" in v for v in refused.headers.get_all("WWW-Authenticate"))


def test_authenticated_user_cannot_register_someone_elses_aor() -> None:
    reg = registrar()
    phone = Phone()
    phone.answer(reg.handle_register(phone.register(), PHONE_SOURCE, "udp", 1000.0))
    response = reg.handle_register(phone.register(username="1002"), PHONE_SOURCE, "udp", 1000.0)
    assert (response.status, response.reason) == (403, "Not Allowed For This Address Of Record")
    assert reg.lookup("1002", 1000.0) == []


def test_failures_feed_the_guard_and_credentials_never_reach_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = SourceGuard(GuardSettings(max_failures=3))
    reg = registrar(guard=guard)
    attacker = Phone(password="hunter2-guess")
    with caplog.at_level(logging.DEBUG):
        for attempt in range(3):
            attacker.authorization = None
            attacker.answer(reg.handle_register(attacker.register(), PHONE_SOURCE, "udp", 1000.0))
            response = reg.handle_register(
                attacker.register(), PHONE_SOURCE, "udp", 1000.0 + attempt
            )
            assert response.status == 401
    events = reg.take_events()
    assert (
        events.count(
            AuthenticationFailed(source_address="203.0.113.5", username="1001", method="REGISTER")
        )
        == 3
    )
    assert events[-1] == SourceBlocked(
        source="203.0.113.5", failures=3, window_seconds=60.0, block_seconds=600.0
    )
    assert guard.check("203.0.113.5", "REGISTER", 1003.0) is GuardVerdict.BLOCKED
    logged = caplog.text
    assert "security: REGISTER authentication failed for '1001' from 203.0.113.5" in logged
    assert attacker.authorization is not None
    response_value = attacker.authorization.split('response="')[1].split('"')[0]
    for secret in ("hunter2-guess", "s3cret-1001", response_value):
        assert secret not in logged


def test_a_missing_or_foreign_nonce_is_not_counted_as_a_guess() -> None:
    guard = SourceGuard(GuardSettings(max_failures=1))
    reg = registrar(guard=guard)
    phone = Phone()
    phone.answer(reg.handle_register(phone.register(), ("198.51.100.1", 5060), "udp", 1000.0))
    # Replayed from another address (e.g. spoofed UDP): challenged, not counted.
    response = reg.handle_register(phone.register(), PHONE_SOURCE, "udp", 1000.0)
    assert response.status == 401
    assert not guard.is_blocked(PHONE_SOURCE[0], 1000.0)
    assert reg.take_events() == []


def test_malformed_authorization_is_a_400() -> None:
    reg = registrar()
    phone = Phone(authorization='Digest username="1001", realm="cxos.example"')
    response = reg.handle_register(phone.register(), PHONE_SOURCE, "udp", 1000.0)
    assert (response.status, response.reason) == (400, "Malformed Authorization Header")


# --- bindings ----------------------------------------------------------------------------


def test_refresh_multiple_contacts_and_remaining_expiry() -> None:
    reg = registrar()
    desk = Phone()
    register_ok(reg, desk, now=1000.0, expires=600)
    mobile = Phone(contact="sip:1001@10.8.0.7:5062;transport=tcp", call_id="mobile-1")
    response = register_ok(reg, mobile, now=1100.0, source=("198.51.100.30", 5062), expires=300)
    assert sorted(response.headers.get_all("Contact")) == [
        "<sip:1001@10.8.0.7:5062;transport=tcp>;expires=300",
        "<sip:1001@192.168.1.20:5060;ob>;expires=500",
    ]
    reg.take_events()
    # The desk phone's nonce is still fresh: it counts up instead of asking for a new one.
    desk.count_up(2)
    refresh = reg.handle_register(desk.register(expires=600), PHONE_SOURCE, "udp", 1200.0)
    assert refresh.status == 200
    assert "<sip:1001@192.168.1.20:5060;ob>;expires=600" in refresh.headers.get_all("Contact")
    (event,) = reg.take_events()
    assert isinstance(event, RegistrationRefreshed) and event.expires_seconds == 600


def test_expiry_parameters_and_limits() -> None:
    reg = registrar(min_expires=60, max_expires=3600, default_expires=1800)
    phone = Phone()
    too_short = reg.handle_register(phone.register(expires=30), PHONE_SOURCE, "udp", 0.0)
    assert too_short.status == 401  # authentication comes first (§10.3 step 3 before step 7)
    phone.answer(too_short)
    too_short = reg.handle_register(phone.register(expires=30), PHONE_SOURCE, "udp", 0.0)
    assert (too_short.status, too_short.reason) == (423, "Interval Too Brief")
    assert too_short.headers.get("Min-Expires") == "60"

    phone.answer(reg.handle_register(phone.register(), PHONE_SOURCE, "udp", 0.0))
    long = reg.handle_register(phone.register(expires=86400), PHONE_SOURCE, "udp", 0.0)
    assert long.headers.get_all("Contact") == ["<sip:1001@192.168.1.20:5060;ob>;expires=3600"]

    phone.answer(reg.handle_register(phone.register(), PHONE_SOURCE, "udp", 0.0))
    default = reg.handle_register(phone.register(expires=None), PHONE_SOURCE, "udp", 0.0)
    assert default.headers.get_all("Contact") == ["<sip:1001@192.168.1.20:5060;ob>;expires=1800"]

    # A contact's own expires parameter wins over the Expires header.
    phone.answer(reg.handle_register(phone.register(), PHONE_SOURCE, "udp", 0.0))
    param = reg.handle_register(
        phone.register(expires=3600, contacts=["<sip:1001@192.168.1.20:5060;ob>;expires=120"]),
        PHONE_SOURCE,
        "udp",
        0.0,
    )
    assert param.headers.get_all("Contact") == ["<sip:1001@192.168.1.20:5060;ob>;expires=120"]

    phone.answer(reg.handle_register(phone.register(), PHONE_SOURCE, "udp", 0.0))
    bad = reg.handle_register(
        phone.register(expires=None, contacts=["<sip:a@b>;expires=soon"]), PHONE_SOURCE, "udp", 0.0
    )
    assert (bad.status, bad.reason) == (400, "Bad Expires Value")


def test_unregister_one_contact_and_then_all() -> None:
    reg = registrar()
    desk = Phone()
    register_ok(reg, desk, now=0.0)
    mobile = Phone(contact="sip:1001@10.8.0.7:5062", call_id="mobile-1")
    register_ok(reg, mobile, now=0.0)
    reg.take_events()

    mobile.answer(reg.handle_register(mobile.register(), PHONE_SOURCE, "udp", 10.0))
    response = reg.handle_register(mobile.register(expires=0), PHONE_SOURCE, "udp", 10.0)
    assert response.headers.get_all("Contact") == ["<sip:1001@192.168.1.20:5060;ob>;expires=3590"]
    (removed,) = reg.take_events()
    assert isinstance(removed, RegistrationRemoved) and removed.contact == "sip:1001@10.8.0.7:5062"

    desk.answer(reg.handle_register(desk.register(), PHONE_SOURCE, "udp", 20.0))
    everything = reg.handle_register(
        desk.register(expires=0, contacts=["*"]), PHONE_SOURCE, "udp", 20.0
    )
    assert everything.status == 200 and "Contact" not in everything.headers
    assert reg.lookup("1001", 20.0) == []
    assert [type(e) for e in reg.take_events()] == [RegistrationRemoved]
    assert reg.next_timer() is None


@pytest.mark.parametrize(
    ("expires", "contacts"),
    [(3600, ["*"]), (None, ["*"]), (0, ["*", "<sip:1001@192.168.1.20>"])],
)
def test_star_needs_expires_zero_and_no_other_contact(
    expires: int | None, contacts: list[str]
) -> None:
    reg = registrar()
    phone = Phone()
    phone.answer(reg.handle_register(phone.register(), PHONE_SOURCE, "udp", 0.0))
    response = reg.handle_register(
        phone.register(expires=expires, contacts=contacts), PHONE_SOURCE, "udp", 0.0
    )
    assert response.status == 400


def test_out_of_order_cseq_rule_directly() -> None:
    reg = registrar()
    phone = Phone()
    register_ok(reg, phone, now=0.0)  # CSeq 2 stored
    reg.take_events()
    phone.cseq = 5
    phone.answer(reg.handle_register(phone.register(), PHONE_SOURCE, "udp", 1.0))
    # Two contacts: the new one would be fine, the known one carries an old CSeq.
    phone.cseq = 1
    request = phone.register(contacts=["<sip:1001@10.0.0.9>", "<sip:1001@192.168.1.20:5060;ob>"])
    response = reg.handle_register(request, PHONE_SOURCE, "udp", 1.0)
    assert (response.status, response.reason) == (400, "Out Of Order CSeq")
    assert [b.contact for b in reg.lookup("1001", 1.0)] == ["sip:1001@192.168.1.20:5060;ob"]
    assert reg.take_events() == []


def test_a_contact_listed_twice_in_one_request_is_one_binding() -> None:
    reg = registrar()
    contact = "<sip:1001@192.168.1.20:5060;ob>"
    response = register_ok(reg, Phone(), now=0.0, contacts=[contact, contact + ";expires=60"])
    assert response.headers.get_all("Contact") == ["<sip:1001@192.168.1.20:5060;ob>;expires=60"]


def test_a_new_call_id_replaces_regardless_of_cseq() -> None:
    reg = registrar()
    register_ok(reg, Phone(), now=0.0)
    rebooted = Phone(call_id="after-reboot")  # CSeq starts at 1 again
    register_ok(reg, rebooted, now=5.0)
    (binding,) = reg.lookup("1001", 5.0)
    assert (binding.call_id, binding.cseq) == ("after-reboot", 2)


def test_query_without_contact_changes_nothing() -> None:
    reg = registrar()
    register_ok(reg, Phone(), now=0.0)
    reg.take_events()
    query_phone = Phone(call_id="query")
    query_phone.answer(
        reg.handle_register(query_phone.register(contacts=[]), PHONE_SOURCE, "udp", 100.0)
    )
    response = reg.handle_register(query_phone.register(contacts=[]), PHONE_SOURCE, "udp", 100.0)
    assert response.headers.get_all("Contact") == ["<sip:1001@192.168.1.20:5060;ob>;expires=3500"]
    assert reg.take_events() == []


def test_expiry_timer_and_refresh_supersedes_the_old_deadline() -> None:
    reg = registrar()
    phone = Phone()
    register_ok(reg, phone, now=0.0, expires=600)
    assert reg.next_timer() == 600.0
    phone.answer(reg.handle_register(phone.register(expires=600), PHONE_SOURCE, "udp", 500.0))
    assert (
        reg.handle_register(phone.register(expires=600), PHONE_SOURCE, "udp", 500.0).status == 200
    )
    assert reg.next_timer() == 1100.0
    reg.take_events()
    assert reg.expire(1099.9) == []
    (gone,) = reg.expire(1100.0)
    assert gone.contact == "sip:1001@192.168.1.20:5060;ob"
    assert reg.take_events() == [
        RegistrationExpired(
            aor="1001",
            contact="sip:1001@192.168.1.20:5060;ob",
            source_address="203.0.113.5",
            source_port=40000,
            transport="UDP",
        )
    ]
    assert reg.lookup("1001", 1100.0) == [] and reg.next_timer() is None


def test_nat_binding_points_at_the_source() -> None:
    reg = registrar()
    register_ok(reg, Phone(), now=0.0)
    (binding,) = reg.lookup("1001", 0.0)
    assert binding.behind_nat
    assert str(binding.received_uri) == "sip:1001@203.0.113.5:40000;ob"

    tcp = Phone(user="1002", password="s3cret-1002", contact="sip:1002@[2001:db8::5]:5060")
    challenge = reg.handle_register(tcp.register(), ("2001:db8::5", 5060), "tcp", 0.0)
    tcp.answer(challenge)
    assert reg.handle_register(tcp.register(), ("2001:db8::5", 5060), "tcp", 0.0).status == 200
    (direct,) = reg.lookup("1002", 0.0)
    assert not direct.behind_nat
    assert str(direct.received_uri) == "sip:1002@[2001:db8::5]:5060;transport=tcp"
    assert direct.transport == "TCP"


def test_too_many_contacts_and_unserved_domain_and_require() -> None:
    reg = registrar(max_contacts=1)
    register_ok(reg, Phone(), now=0.0)
    second = Phone(contact="sip:1001@10.0.0.2", call_id="second")
    second.answer(reg.handle_register(second.register(), PHONE_SOURCE, "udp", 0.0))
    response = reg.handle_register(second.register(), PHONE_SOURCE, "udp", 0.0)
    assert (response.status, response.reason) == (403, "Too Many Contacts")

    # §10.3 step 1 comes before authentication.
    other = registrar(domains=("pbx.example",))
    response = other.handle_register(Phone().register(), PHONE_SOURCE, "udp", 0.0)
    assert (response.status, response.reason) == (404, "Domain Not Served Here")

    ext = Phone(extra=["Require: gruu"])
    response = registrar().handle_register(ext.register(), PHONE_SOURCE, "udp", 0.0)
    assert (response.status, response.headers.get("Unsupported")) == (420, "gruu")


def test_non_register_is_a_programming_error() -> None:
    request = Phone().register()
    request.method = "OPTIONS"
    with pytest.raises(ValueError, match="handle_register got a OPTIONS request"):
        registrar().handle_register(request, PHONE_SOURCE, "udp", 0.0)
