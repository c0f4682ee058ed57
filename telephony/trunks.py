"""Recognising which configured trunk an inbound INVITE comes from, by source address."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from config.settings import DtmfMode, Trunk
from telephony.sip.guard import TrunkLimit

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Source address strings whose trunk (or lack of one) is remembered. Every INVITE asks, twice
#: (rate limit, then routing); parsing the address each time would cost more than the look-up.
#: Past this many sources the oldest answer is forgotten, so a flood from many addresses costs
#: memory no more than it costs time.
MATCH_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class TrunkTable:
    """Source networks → trunk; the most specific network wins when several match."""

    entries: tuple[tuple[Network, Trunk], ...]
    #: The INVITE rate limit of each trunk, by trunk id.
    limits: Mapping[str, TrunkLimit] = field(default_factory=dict)
    _matches: dict[str, Trunk | None] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, trunks: Iterable[Trunk]) -> TrunkTable:
        trunks = tuple(trunks)
        entries = [
            (ipaddress.ip_network(source, strict=False), trunk)
            for trunk in trunks
            for source in trunk.sources
        ]
        entries.sort(key=lambda entry: entry[0].prefixlen, reverse=True)
        limits = {
            trunk.id: TrunkLimit(trunk_id=trunk.id, calls_per_second=trunk.max_calls_per_second)
            for trunk in trunks
        }
        return cls(tuple(entries), limits)

    def match(self, source_ip: str) -> Trunk | None:
        """The trunk `source_ip` belongs to, or None."""
        matches = self._matches
        try:
            return matches[source_ip]
        except KeyError:
            pass
        trunk = self._search(source_ip)
        if len(matches) >= MATCH_CACHE_SIZE:
            del matches[next(iter(matches))]
        matches[source_ip] = trunk
        return trunk

    def limit(self, source_ip: str) -> TrunkLimit | None:
        """The INVITE rate limit that applies to `source_ip` as a trunk, or None for a source
        that is no trunk's (it is limited per source)."""
        trunk = self.match(source_ip)
        return None if trunk is None else self.limits.get(trunk.id)

    def _search(self, source_ip: str) -> Trunk | None:
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


def listens_for_tones(mode: DtmfMode, telephone_event: int | None) -> bool:
    """Whether a leg of a trunk with DTMF `mode` needs its audio searched for keypad tones,
    given the telephone-event payload type its SDP negotiated (None: none, RFC 4733 §7.1.1).
    In ``auto`` a peer that negotiated telephone-events sends its keys that way; listening to
    its audio too would take a key sent both ways for two."""
    if mode == "auto":
        return telephone_event is None
    return mode == "inband"


# --- calls out -----------------------------------------------------------------------------------

#: Characters people write in phone numbers that are no part of what is dialled.
_VISUAL_SEPARATORS = str.maketrans("", "", " -.()/")


def outbound_trunk(
    trunks: Iterable[Trunk], default: str | None, wanted: str | None
) -> Trunk | None:
    """The trunk a call out goes through: `wanted` by id, else the `default` one, else the first
    trunk with an ``outbound`` section. None when that trunk does not exist or cannot call out."""
    trunks = tuple(trunks)
    name = wanted or default
    if name is not None:
        trunk = next((t for t in trunks if t.id == name), None)
        return trunk if trunk is not None and trunk.outbound is not None else None
    return next((t for t in trunks if t.outbound is not None), None)


def dial_string(trunk: Trunk, number: str) -> str:
    """The user part to send to the carrier for `number`: visual separators removed, a leading
    ``+`` replaced when ``strip_plus`` says so, then ``prefix`` put in front. Raises ValueError
    for something that is no phone number (only digits, ``*``, ``#`` and a leading ``+``)."""
    outbound = trunk.outbound
    if outbound is None:
        raise ValueError(f"trunk {trunk.id!r} has no outbound settings")
    digits = number.strip().translate(_VISUAL_SEPARATORS)
    body = digits[1:] if digits.startswith("+") else digits
    if not body or not all(c.isdigit() or c in "*#" for c in body) or not body.isascii():
        raise ValueError(f"{number!r} is not a number to dial")
    if digits.startswith("+") and outbound.strip_plus is not None:
        digits = outbound.strip_plus + body
    return outbound.prefix + digits
