"""Real softphones register as agents to a running server with the shipped configuration, which
challenges with MD5 first and SHA-256 second (RFC 8760)."""

from __future__ import annotations

import secrets
import socket
from pathlib import Path
from typing import Any

import pytest
from pyVoIP.VoIP import PhoneStatus

from telephony.sip.digest import (
    Algorithm,
    Challenge,
    StoredSecret,
    compute_ha1,
    compute_response,
)
from telephony.sip.message import SipRequest, SipResponse, parse_message
from telephony.sip.registrar import Registrar, RegistrarSettings
from tests.integration.peers import RunningServer, free_port, start_server, write_server_config
from tests.integration.softphones import (
    Baresip,
    account_line,
    baresip_phone,
    pyvoip_phone,
    wait_for_status,
)

pytestmark = pytest.mark.peer

SETTLED = (PhoneStatus.REGISTERED, PhoneStatus.FAILED)


def test_pyvoip_registers_as_agent_and_unregisters_on_stop(server: RunningServer) -> None:
    with pyvoip_phone(server.port, "1001", "change-me-1001") as phone:
        phone.start()
        assert wait_for_status(phone, SETTLED) is PhoneStatus.REGISTERED
        assert server.wait_for_log("registration.added: RegistrationAdded(aor='1001'") == 1
        assert "user_agent='pyVoIP" in server.log()
    # Stopping the phone sends REGISTER with Expires: 0, which removes its binding.
    assert server.wait_for_log("registration.removed: RegistrationRemoved(aor='1001'") == 1
    assert "change-me-1001" not in server.log()


def test_pyvoip_with_a_wrong_password_does_not_register(server: RunningServer) -> None:
    with pyvoip_phone(server.port, "1001", "not-the-password") as phone:
        phone.start()
        assert wait_for_status(phone, SETTLED) is PhoneStatus.FAILED
    log = server.log()
    assert "registration.added" not in log
    assert "REGISTER authentication failed for '1001'" in log
    assert "not-the-password" not in log


def md5_only_server(config_dir: Path, tmp_path: Path) -> RunningServer:
    port = free_port()
    write_server_config(config_dir, port, {"registrar": {"digest_algorithms": ["MD5"]}})
    return start_server(config_dir, port, tmp_path / "server.log")


def register_baresip(phone: Baresip, server: RunningServer, password: str) -> dict[str, Any]:
    created = phone.command("uanew", account_line("1002", password, server.port))
    assert created["ok"], created
    event = phone.wait_event(("REGISTER_OK", "REGISTER_FAIL"))
    assert event is not None, phone.log()[-2000:]
    return event


def test_baresip_registers_as_agent_with_md5_digest(config_dir: Path, tmp_path: Path) -> None:
    server = md5_only_server(config_dir, tmp_path)
    try:
        with baresip_phone(tmp_path / "baresip") as phone:
            event = register_baresip(phone, server, "change-me-1002")
            assert (event["type"], event["param"]) == ("REGISTER_OK", "200 OK"), phone.log()
            assert server.wait_for_log("registration.added: RegistrationAdded(aor='1002'") == 1
            assert "user_agent='baresip" in server.log()
        assert "change-me-1002" not in server.log()
    finally:
        assert server.stop() == 0


def test_baresip_registers_with_the_shipped_configuration(
    server: RunningServer, tmp_path: Path
) -> None:
    with baresip_phone(tmp_path / "baresip") as phone:
        event = register_baresip(phone, server, "change-me-1002")
        assert event["type"] == "REGISTER_OK", event


def test_baresip_guessing_passwords_gets_its_address_blocked(
    config_dir: Path, tmp_path: Path
) -> None:
    # baresip answers each fresh challenge again at once: the guard stops it after five tries.
    server = md5_only_server(config_dir, tmp_path)
    try:
        with baresip_phone(tmp_path / "baresip") as phone:
            created = phone.command("uanew", account_line("1002", "guess-1", server.port))
            assert created["ok"], created
            assert server.wait_for_log("security: blocking source 127.0.0.1") == 1
            assert phone.wait_event(("REGISTER_OK",), timeout=0.5) is None
        log = server.log()
        assert "registration.added" not in log
        assert "guess-1" not in log
    finally:
        assert server.stop() == 0


# --- the two challenges, and the answers without qop that PyVoIP sends --------------------------


class Registering:
    """REGISTER requests for agent 1001 from one UDP socket, as a minimal phone writes them."""

    def __init__(self, server: RunningServer, user_agent: str) -> None:
        self.server = server
        self.user_agent = user_agent
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.port = int(self.sock.getsockname()[1])
        self.call_id = secrets.token_hex(8)
        self.cseq = 0

    def send(self, authorization: str | None = None) -> SipResponse:
        self.cseq += 1
        lines = [
            "REGISTER sip:127.0.0.1 SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{secrets.token_hex(6)};rport",
            "Max-Forwards: 70",
            f"From: <sip:1001@127.0.0.1>;tag={self.call_id[:6]}",
            "To: <sip:1001@127.0.0.1>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
            f"Contact: <sip:1001@127.0.0.1:{self.port}>",
            "Expires: 60",
            f"User-Agent: {self.user_agent}",
        ]
        if authorization is not None:
            lines.append(f"Authorization: {authorization}")
        data = ("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode()
        self.sock.sendto(data, ("127.0.0.1", self.server.port))
        response = parse_message(self.sock.recv(65536))
        assert isinstance(response, SipResponse)
        return response

    def challenges(self, response: SipResponse) -> list[Challenge]:
        assert response.status == 401, response.status
        return [Challenge.parse(v) for v in response.headers.get_lines("WWW-Authenticate")]


def without_qop(challenge: Challenge, password: str) -> str:
    """An RFC 2069 style answer (no qop, nc or cnonce), the kind PyVoIP sends."""
    uri = "sip:127.0.0.1"
    response = compute_response(
        algorithm=Algorithm.MD5,
        ha1=compute_ha1(Algorithm.MD5, "1001", challenge.realm, password),
        nonce=challenge.nonce,
        method="REGISTER",
        uri=uri,
        qop=None,
        nc=None,
        cnonce=None,
    )
    return (
        f'Digest username="1001", realm="{challenge.realm}", nonce="{challenge.nonce}", '
        f'uri="{uri}", response="{response}", algorithm=MD5'
    )


def test_shipped_configuration_challenges_with_md5_then_sha256(server: RunningServer) -> None:
    phone = Registering(server, "ExamplePhone/2.1")
    try:
        offered = phone.challenges(phone.send())
    finally:
        phone.sock.close()
    assert [c.algorithm for c in offered] == [Algorithm.MD5, Algorithm.SHA256]
    assert all(c.qop == ("auth",) for c in offered)


def test_registrar_can_challenge_baresip_with_md5_alone() -> None:
    # The first REGISTER baresip 1.0 sends; phones named in md5_only_user_agents get only the
    # challenge they can answer, whatever the others are offered.
    request = parse_message(
        b"REGISTER sip:127.0.0.1:5060;transport=udp SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:40113;branch=z9hG4bK8b6c0f1a2e3d4c5b;rport\r\n"
        b"Contact: <sip:1002-0x55c181db7380@127.0.0.1:40113>;expires=60\r\n"
        b"Max-Forwards: 70\r\n"
        b"To: <sip:1002@127.0.0.1:5060>\r\n"
        b"From: <sip:1002@127.0.0.1:5060>;tag=5ab79c0ac4e9e6a1\r\n"
        b"Call-ID: 0f2a7e4ce3a1b9d8\r\n"
        b"CSeq: 24787 REGISTER\r\n"
        b"User-Agent: baresip v1.0.0 (x86_64/linux)\r\n"
        b"Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,UPDATE\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert isinstance(request, SipRequest)
    offered = {}
    for quirks in ((), ("baresip",)):
        registrar = Registrar(
            RegistrarSettings(
                realm="cxos",
                algorithms=(Algorithm.MD5, Algorithm.SHA256),
                md5_only_user_agents=quirks,
            ),
            credentials={"1002": StoredSecret(password="change-me-1002")},
            secret=b"0123456789abcdef0123456789abcdef",
        )
        response = registrar.handle_register(request, ("127.0.0.1", 40113), "udp", now=10.0)
        assert response.status == 401
        offered[quirks] = [
            Challenge.parse(value).algorithm
            for value in response.headers.get_lines("WWW-Authenticate")
        ]
    assert offered == {
        (): [Algorithm.MD5, Algorithm.SHA256],
        ("baresip",): [Algorithm.MD5],
    }


def test_answer_without_qop_is_accepted_once(server: RunningServer) -> None:
    phone = Registering(server, "pyVoIP 1.6.8")
    try:
        challenge = phone.challenges(phone.send())[0]
        answer = without_qop(challenge, "change-me-1001")
        assert phone.send(answer).status == 200
        # Without a nonce-count the same answer could be replayed by anyone who saw it: a nonce
        # answered without qop is spent, and the phone is challenged again with stale=true.
        replayed = phone.challenges(phone.send(answer))
        assert all(c.stale for c in replayed)
        assert phone.send(without_qop(replayed[0], "change-me-1001")).status == 200
    finally:
        phone.sock.close()
