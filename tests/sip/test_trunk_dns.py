"""RFC 3263 location of a trunk's host: NAPTR, SRV and A/AAAA against a small DNS server of our
own on 127.0.0.1 (dnspython's message code on a UDP socket), never the real DNS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import cast

import dns.message
import dns.rcode
import dns.rrset
import pytest

from telephony.sip.locate import NaptrRecord, SrvRecord, naptr_choices, srv_order
from telephony.sip.outbound import TrunkRoute
from telephony.sip.outbound_trunk import trunk_request_uri
from telephony.sip.resolver import SipResolver, Target


@dataclass
class Zone(asyncio.DatagramProtocol):
    """Answers from `records` ((name, type) -> rdata texts); NXDOMAIN for unknown names."""

    records: dict[tuple[str, str], list[str]]
    asked: list[tuple[str, str]] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        kind = dns.rdatatype.to_text(question.rdtype)
        self.asked.append((name, kind))
        response = dns.message.make_response(query)
        if not any(known == name for known, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif (name, kind) in self.records:
            response.answer.append(
                dns.rrset.from_text(question.name, 60, "IN", kind, *self.records[(name, kind)])
            )
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


@dataclass
class Dns:
    zone: Zone
    resolver: SipResolver


RECORDS = {
    # The carrier prefers TCP (order 10) over UDP (order 20).
    ("carrier.test", "NAPTR"): [
        '20 10 "s" "SIP+D2U" "" _sip._udp.carrier.test.',
        '10 10 "s" "SIP+D2T" "" _sip._tcp.carrier.test.',
        '5 10 "s" "SIPS+D2T" "" _sips._tcp.carrier.test.',
    ],
    ("_sip._tcp.carrier.test", "SRV"): [
        "10 0 5081 edge2.carrier.test.",
        "5 0 5080 edge1.carrier.test.",
    ],
    ("_sip._udp.carrier.test", "SRV"): ["10 0 5070 edge1.carrier.test."],
    ("edge1.carrier.test", "A"): ["127.0.0.11"],
    ("edge2.carrier.test", "A"): ["127.0.0.12"],
    ("edge2.carrier.test", "AAAA"): ["::1"],
    # No NAPTR: SRV for UDP, then TCP.
    ("_sip._udp.pbx.test", "SRV"): ["0 0 5999 host.pbx.test."],
    ("pbx.test", "A"): ["127.0.0.20"],
    ("host.pbx.test", "A"): ["127.0.0.21"],
    # Neither NAPTR nor SRV: its own address.
    ("plain.test", "A"): ["127.0.0.30"],
}


@pytest.fixture
async def dns_server() -> AsyncIterator[Dns]:
    loop = asyncio.get_running_loop()
    transport, zone = await loop.create_datagram_endpoint(
        lambda: Zone(RECORDS), local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    resolver = SipResolver(nameservers=[("127.0.0.1", port)], lifetime=2.0, uniform=lambda a, b: a)
    try:
        yield Dns(zone=zone, resolver=resolver)
    finally:
        transport.close()


async def test_naptr_picks_the_transport_then_srv_the_servers(dns_server: Dns) -> None:
    targets = await dns_server.resolver.locate("carrier.test", port=None, transport=None)
    # TCP by NAPTR order; SRV priority 5 before 10; edge2's IPv4 and IPv6 addresses both.
    assert targets == [
        Target(address="127.0.0.11", port=5080, transport="tcp"),
        Target(address="127.0.0.12", port=5081, transport="tcp"),
        Target(address="::1", port=5081, transport="tcp"),
    ]
    assert dns_server.zone.asked[:2] == [
        ("carrier.test", "NAPTR"),
        ("_sip._tcp.carrier.test", "SRV"),
    ]


async def test_a_configured_transport_skips_naptr(dns_server: Dns) -> None:
    targets = await dns_server.resolver.locate("carrier.test", port=None, transport="udp")
    assert targets == [Target(address="127.0.0.11", port=5070, transport="udp")]
    assert ("carrier.test", "NAPTR") not in dns_server.zone.asked


async def test_a_configured_port_asks_for_addresses_only(dns_server: Dns) -> None:
    targets = await dns_server.resolver.locate("pbx.test", port=5062, transport="udp")
    assert targets == [Target(address="127.0.0.20", port=5062, transport="udp")]
    assert {kind for _, kind in dns_server.zone.asked} == {"A", "AAAA"}


async def test_without_naptr_srv_is_asked_per_transport(dns_server: Dns) -> None:
    targets = await dns_server.resolver.locate("pbx.test", port=None, transport=None)
    assert targets == [Target(address="127.0.0.21", port=5999, transport="udp")]
    assert dns_server.zone.asked[:2] == [("pbx.test", "NAPTR"), ("_sip._udp.pbx.test", "SRV")]


async def test_without_naptr_or_srv_the_host_is_used_on_5060(dns_server: Dns) -> None:
    targets = await dns_server.resolver.locate("plain.test", port=None, transport=None)
    assert targets == [Target(address="127.0.0.30", port=5060, transport="udp")]


async def test_an_unknown_name_has_no_target(dns_server: Dns) -> None:
    assert await dns_server.resolver.locate("nowhere.test", port=None, transport=None) == []


async def test_an_ip_address_is_not_looked_up(dns_server: Dns) -> None:
    targets = await dns_server.resolver.locate("[::1]", port=None, transport="tcp")
    assert targets == [Target(address="::1", port=5060, transport="tcp")]
    assert dns_server.zone.asked == []


async def test_an_unreachable_name_server_is_an_os_error() -> None:
    loop = asyncio.get_running_loop()
    # A socket that never answers: the look-up runs out of time.
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    resolver = SipResolver(nameservers=[("127.0.0.1", port)], lifetime=0.3)
    try:
        with pytest.raises(OSError):
            await resolver.locate("carrier.test", port=None, transport=None)
    finally:
        transport.close()


def test_srv_order_is_by_priority_then_weighted_draw() -> None:
    records = [
        SrvRecord(priority=20, weight=0, port=1, target="c"),
        SrvRecord(priority=10, weight=10, port=2, target="a"),
        SrvRecord(priority=10, weight=90, port=3, target="b"),
        SrvRecord(priority=10, weight=0, port=4, target="z"),
    ]

    def draws(values: list[float]) -> Iterator[float]:
        yield from values

    # RFC 2782: weight-0 records listed first; a draw of 50 of 100 lands in b's share.
    picks = draws([50.0, 5.0, 0.0, 0.0])
    ordered = srv_order(records, lambda low, high: next(picks))
    assert [r.target for r in ordered] == ["b", "a", "z", "c"]
    assert srv_order([SrvRecord(priority=0, weight=0, port=0, target=".")], max) == []


def test_naptr_records_of_other_services_are_left_out() -> None:
    records = [
        NaptrRecord(
            order=1, preference=1, flags="s", service="SIPS+D2T", replacement="_sips._tcp.x"
        ),
        NaptrRecord(
            order=2, preference=5, flags="S", service="sip+d2u", replacement="_sip._udp.x."
        ),
        NaptrRecord(order=2, preference=1, flags="s", service="SIP+D2T", replacement="_sip._tcp.x"),
        NaptrRecord(order=0, preference=0, flags="u", service="SIP+D2U", replacement="."),
    ]
    assert naptr_choices(records) == [("tcp", "_sip._tcp.x"), ("udp", "_sip._udp.x")]


def test_a_port_chosen_by_dns_is_not_written_in_the_request_uri() -> None:
    located = TrunkRoute(
        trunk_id="carrier",
        host="carrier.test",
        port=None,
        destination=("127.0.0.11", 5080),
        transport="tcp",
    )
    assert str(trunk_request_uri("0049301234567", located)) == (
        "sip:0049301234567@carrier.test;transport=tcp"
    )
