"""RFC 4475 (SIP torture tests) and RFC 5118 (IPv6 torture tests) against the parser.

The fixtures are the RFCs' messages byte for byte; tests/fixtures/sip/expected.py says what the
parser must do with each and what the server must finally answer.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from telephony.sip.errors import SipParseError
from telephony.sip.message import (
    SipRequest,
    SipResponse,
    StreamFramer,
    build_response,
    parse_message,
)
from telephony.sip.uri import NameAddr, SipUri

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sip"


def _load_expected() -> Any:
    spec = importlib.util.spec_from_file_location("sip_torture_expected", FIXTURES / "expected.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolve annotations through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


EXPECTED = _load_expected()
CASES: tuple[Any, ...] = EXPECTED.CASES


def _data(name: str) -> bytes:
    path: str = EXPECTED.BY_NAME[name].path
    return (FIXTURES / path).read_bytes()


def _without_length(msg: SipRequest | SipResponse) -> list[tuple[str, str]]:
    return [(name, value) for name, value in msg.headers.items() if name != "Content-Length"]


def _request(name: str) -> SipRequest:
    msg = parse_message(_data(name))
    assert isinstance(msg, SipRequest)
    return msg


def test_every_fixture_has_an_expectation_and_vice_versa() -> None:
    on_disk = {f"{p.parent.name}/{p.name}" for p in FIXTURES.glob("rfc*/*.dat")}
    assert on_disk == {case.path for case in CASES}
    assert sum(1 for case in CASES if case.rfc == 4475) == 49


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_parser_outcome(case: Any) -> None:
    data = (FIXTURES / case.path).read_bytes()
    if case.parse_status is None:
        msg = parse_message(data)
        # A message that parses serialises to something that parses to the same thing.
        again = parse_message(msg.to_bytes())
        assert _without_length(again) == _without_length(msg)
        assert again.body == msg.body
    else:
        with pytest.raises(SipParseError) as info:
            parse_message(data)
        assert info.value.status == case.parse_status


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.parse_status is not None], ids=lambda case: case.name
)
def test_rejected_requests_can_be_answered(case: Any) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message((FIXTURES / case.path).read_bytes())
    request = info.value.request
    if case.answer == EXPECTED.DROP:
        assert request is None
    elif request is not None:
        # The transport answers with the error's status using what could be read.
        response = build_response(request, info.value.status, info.value.reason_phrase)
        assert response.status in case.answer
        assert response.headers.get_all("Via") == request.headers.get_all("Via")


def test_wsinv_fields() -> None:
    msg = _request("wsinv")
    assert msg.uri == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert msg.to.tag == "1918181833n"
    assert msg.from_.display_name == 'J Rosenberg \\"'
    assert msg.from_.tag == "98asjd8"
    assert msg.max_forwards == 68
    assert (msg.cseq.number, msg.cseq.method) == (9, "INVITE")
    vias = msg.via
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert msg.headers.get("Subject") == ""
    assert msg.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    contact = NameAddr.parse(msg.headers.get_all("Contact")[0])
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    route = NameAddr.parse(msg.headers.get_all("Route")[0])
    assert route.uri.params["unknownwith"] == "value"
    assert len(msg.body) == 150


def test_intmeth_fields() -> None:
    msg = _request("intmeth")
    assert msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    uri = SipUri.parse(msg.uri)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert msg.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert msg.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert msg.from_.tag == "_token~1'+`*%!-."
    assert msg.from_.params["fromparam''~+*_!.-%"] == '"работающий"'
    assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert msg.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def test_esc01_unescapes_user_parts_once() -> None:
    msg = _request("esc01")
    assert SipUri.parse(msg.uri).user == "sips:user@example.com"
    assert msg.to.uri.user == "user"
    assert msg.from_.uri.user == "I have spaces"
    contact = NameAddr.parse(msg.headers.get_all("Contact")[0])
    assert contact.uri.user == "caller"
    # %25%34%31 is "%41": escapes are resolved once, never recursively (RFC 3986).
    assert contact.uri.params == {"lr": None, "name": "value%41"}


def test_escnull_keeps_nul_in_user_part() -> None:
    msg = _request("escnull")
    assert msg.to.uri.user == "null-\x00-null"
    users = [NameAddr.parse(c).uri.user for c in msg.headers.get_all("Contact")]
    assert users == ["\x00", "\x00\x00"]


def test_esc02_percent_is_not_an_escape_outside_uris() -> None:
    msg = _request("esc02")
    assert msg.method == "RE%47IST%45R"
    assert msg.to.display_name == "%Z%45"
    assert len(msg.headers.get_all("Contact")) == 2
    assert msg.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp_and_semiuri_and_transports() -> None:
    assert _request("lwsdisp").from_.display_name == "caller"
    semi = _request("semiuri")
    uri = SipUri.parse(semi.uri)
    assert (uri.user, uri.host, uri.params) == ("user;par=u@example.net", "example.com", {})
    assert len(semi.headers.get_all("Accept")) == 6
    transports = [v.transport for v in _request("transports").via]
    assert transports == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_longreq_and_dblreq() -> None:
    long = _request("longreq")
    assert len(long.via) == 34
    assert long.to.uri.port == 6000
    assert long.from_.tag == "12" + "982" * 50 + "424"
    dbl = _request("dblreq")
    assert dbl.method == "REGISTER"
    assert dbl.body == b""


def test_mpart01_binary_body_framed_by_content_length() -> None:
    msg = _request("mpart01")
    assert len(msg.body) == 553
    assert b"\x00" in msg.body
    assert msg.body.endswith(b"--7a9cbec02ceef655--\r\n")


def test_unusual_and_empty_reason_phrases() -> None:
    unreason = parse_message(_data("unreason"))
    assert isinstance(unreason, SipResponse)
    assert unreason.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    noreason = parse_message(_data("noreason"))
    assert isinstance(noreason, SipResponse)
    assert (noreason.status, noreason.reason) == (100, "")


def test_application_layer_cases_parse_to_what_the_ua_needs() -> None:
    with pytest.raises(SipParseError) as info:
        SipUri.parse(_request("unkscm").uri)
    assert info.value.status == 416
    with pytest.raises(SipParseError) as info:
        SipUri.parse(_request("novelsc").uri)
    assert info.value.status == 416
    unksm2 = _request("unksm2")
    assert unksm2.to.uri.scheme == "isbn"
    assert not unksm2.from_.uri.is_sip
    assert _request("bext01").headers.get_all("Require") == [
        "nothingSupportsThis",
        "nothingSupportsThisEither",
    ]
    assert _request("zeromf").max_forwards == 0
    cparam01 = NameAddr.parse(_request("cparam01").headers.get_all("Contact")[0])
    assert (cparam01.uri.params, cparam01.params) == ({}, {"unknownparam": None})
    cparam02 = NameAddr.parse(_request("cparam02").headers.get_all("Contact")[0])
    assert (cparam02.uri.params, cparam02.params) == ({"unknownparam": None}, {})
    regescrt = NameAddr.parse(_request("regescrt").headers.get_all("Contact")[0])
    assert regescrt.uri.headers == {"Route": "<sip:sip.example.com>"}
    inv2543 = _request("inv2543")
    assert inv2543.max_forwards is None
    assert inv2543.top_via.branch is None
    assert inv2543.to.params == {"user": "phone"}


def test_ipv6_fields() -> None:
    good = _request("ipv6-good")
    assert SipUri.parse(good.uri).host == "[2001:db8::10]"
    assert good.top_via.host == "[2001:db8::9:1]"
    assert SipUri.parse(_request("port-ambiguous").uri).port is None
    assert SipUri.parse(_request("port-unambiguous").uri).port == 5070
    assert _request("via-received-param-with-delim").top_via.received == "[2001:db8::9:255]"
    assert _request("via-received-param-no-delim").top_via.received == "2001:db8::9:255"
    vias = _request("mult-ip-in-header").via
    assert [(v.host, v.port) for v in vias] == [
        ("[2001:db8::9:1]", 6050),
        ("192.0.2.1", None),
        ("[2001:db8::9:255]", None),
    ]
    mapped = _request("ipv4-mapped-ipv6")
    assert (mapped.top_via.host, mapped.top_via.port) == ("[::ffff:192.0.2.10]", 19823)


@pytest.mark.parametrize(
    "case",
    # Content-Length errors and short bodies fail or wait at the framer instead.
    [c for c in CASES if c.name not in ("clerr", "ncl", "mcl01", "baddn", "ipv6-in-sdp")],
    ids=lambda case: case.name,
)
def test_stream_framing_gives_the_same_outcome(case: Any) -> None:
    data = (FIXTURES / case.path).read_bytes()
    framer = StreamFramer()
    try:
        frames = framer.feed(data)
    except SipParseError:
        # Only a message without Content-Length (RFC 2543 style) may fail framing on a stream.
        assert case.name == "inv2543"
        return
    assert frames
    try:
        parse_message(frames[0])
    except SipParseError as exc:
        assert exc.status == case.parse_status
    else:
        assert case.parse_status is None
