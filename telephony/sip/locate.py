"""Locating a SIP server from its host name (RFC 3263), the choices without the look-ups (sans-IO).

RFC 3263 §4 turns the host of a SIP URI into the addresses to try, in order:

- an IP address is used as it is (§4.2), on the URI's port or 5060;
- a name with a port is looked up with A/AAAA only (§4.2);
- a name with a transport but no port: SRV for that transport, ``_sip._udp.NAME`` or
  ``_sip._tcp.NAME`` (§4.2), then A/AAAA on 5060 when there is none;
- a name with neither: NAPTR first (§4.1), keeping the records for transports we speak
  (``SIP+D2U``, ``SIP+D2T``) with the ``s`` flag, whose replacement names the SRV records; with
  no NAPTR, SRV for each transport we speak; with no SRV, A/AAAA on 5060 over UDP.

SRV records are ordered as RFC 2782 says: lowest priority first, and within one priority a
random order weighted by `weight`. The look-ups themselves are in `telephony.sip.resolver`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = [
    "DEFAULT_PORT",
    "TRANSPORTS",
    "NaptrRecord",
    "Plan",
    "SrvRecord",
    "naptr_choices",
    "plan_for",
    "srv_name",
    "srv_order",
]

DEFAULT_PORT = 5060  # RFC 3261 §19.1.2 for sip: over UDP and TCP

#: RFC 3263 §4.1 / RFC 3403: the NAPTR service field of each transport we speak.
_SERVICES = {"SIP+D2U": "udp", "SIP+D2T": "tcp"}
#: The transports tried when no NAPTR record tells (§4.1: the client's own preference).
TRANSPORTS = ("udp", "tcp")


@dataclass(frozen=True, slots=True, kw_only=True)
class NaptrRecord:
    """A NAPTR record (RFC 3403 §4.1) as the look-up returned it."""

    order: int
    preference: int
    flags: str
    service: str
    replacement: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SrvRecord:
    """An SRV record (RFC 2782) as the look-up returned it; `target` without the final dot."""

    priority: int
    weight: int
    port: int
    target: str


class Plan(enum.Enum):
    """The first step RFC 3263 prescribes for a host."""

    LITERAL = "an IP address: no look-up (§4.2)"
    ADDRESS = "a port is given: A/AAAA only (§4.2)"
    SRV = "a transport is given: SRV for it (§4.2)"
    NAPTR = "neither: NAPTR, then SRV, then A/AAAA (§4.1)"


def plan_for(host: str, *, port: int | None, transport: str | None, literal: bool) -> Plan:
    """Where resolution of `host` starts; `literal` tells whether it is an IP address."""
    if literal:
        return Plan.LITERAL
    if port is not None:
        return Plan.ADDRESS
    if transport is not None:
        return Plan.SRV
    return Plan.NAPTR


def srv_name(host: str, transport: str) -> str:
    """The SRV name for SIP over `transport` at `host` (RFC 3263 §4.2, RFC 2782)."""
    return f"_sip._{transport}.{host.rstrip('.')}"


def naptr_choices(records: Iterable[NaptrRecord]) -> list[tuple[str, str]]:
    """(transport, SRV name) for each usable NAPTR record, in the order to try them.

    RFC 3263 §4.1: records for services we do not speak are dropped; RFC 3403 §4.1: lowest
    order first, then lowest preference. Only terminal records with the ``s`` flag (the
    replacement is an SRV name) are followed; a regexp rewrite is not used for SIP.
    """
    usable = [
        record
        for record in records
        if record.flags.lower() == "s"
        and record.service.upper() in _SERVICES
        and record.replacement not in ("", ".")
    ]
    usable.sort(key=lambda record: (record.order, record.preference))
    return [
        (_SERVICES[record.service.upper()], record.replacement.rstrip(".")) for record in usable
    ]


def srv_order(
    records: Iterable[SrvRecord], uniform: Callable[[float, float], float]
) -> list[SrvRecord]:
    """The records in the order to try them (RFC 2782, "Usage rules").

    Lowest priority first; within one priority, repeatedly pick one at random with a chance
    proportional to its weight (records of weight 0 come first in the list so that they get a
    small chance). A single record whose target is "." means the service is not offered there.
    """
    listed = list(records)
    if len(listed) == 1 and listed[0].target in ("", "."):
        return []
    ordered: list[SrvRecord] = []
    for priority in sorted({record.priority for record in listed}):
        group = sorted(
            (r for r in listed if r.priority == priority and r.target not in ("", ".")),
            key=lambda record: record.weight != 0,
        )
        while group:
            total = sum(record.weight for record in group)
            pick = uniform(0, total)
            running = 0
            for index, record in enumerate(group):
                running += record.weight
                if running >= pick:
                    ordered.append(group.pop(index))
                    break
            else:  # rounding at the top end of the draw
                ordered.append(group.pop())
    return ordered
