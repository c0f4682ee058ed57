"""Recognising which configured trunk an inbound INVITE comes from, by source address."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from config.settings import Trunk

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class TrunkTable:
    """Source networks → trunk; the most specific network wins when several match."""

    entries: tuple[tuple[Network, Trunk], ...]

    @classmethod
    def build(cls, trunks: Iterable[Trunk]) -> TrunkTable:
        entries = [
            (ipaddress.ip_network(source, strict=False), trunk)
            for trunk in trunks
            for source in trunk.sources
        ]
        entries.sort(key=lambda entry: entry[0].prefixlen, reverse=True)
        return cls(tuple(entries))

    def match(self, source_ip: str) -> Trunk | None:
        try:
            address = ipaddress.ip_address(source_ip.strip("[]"))
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        for network, trunk in self.entries:
            if address.version == network.version and address in network:
                return trunk
        return None
