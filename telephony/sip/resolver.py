"""The DNS look-ups of RFC 3263 for the hosts of trunks (asyncio, dnspython).

`SipResolver.locate` runs the steps `telephony.sip.locate` chooses: NAPTR and SRV through
dnspython's asynchronous resolver, then the addresses of the names found. With no name servers
given, the system's resolver configuration is used and addresses come from the system (so
``/etc/hosts`` names work as before); with name servers given, every look-up goes to them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

from telephony.sip.locate import (
    DEFAULT_PORT,
    TRANSPORTS,
    NaptrRecord,
    Plan,
    SrvRecord,
    naptr_choices,
    plan_for,
    srv_name,
    srv_order,
)

__all__ = ["SipResolver", "Target"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """One place to send a request: an IP address, a port and a transport (RFC 3263 §4)."""

    address: str
    port: int
    transport: str


class SipResolver:
    """Finds the addresses of a SIP server by name (RFC 3263)."""

    def __init__(
        self,
        *,
        nameservers: Sequence[tuple[str, int]] = (),
        lifetime: float = 3.0,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        """`nameservers`: (address, port) pairs to ask instead of the system's; `lifetime`:
        seconds one look-up may take, retries included."""
        self._nameservers = tuple(nameservers)
        self._uniform = uniform
        self._lifetime = lifetime
        self._dns: dns.asyncresolver.Resolver | None = None

    async def locate(self, host: str, *, port: int | None, transport: str | None) -> list[Target]:
        """The targets for `host` in the order to try them; empty when there is none.

        `port` and `transport` are what the URI (or the configuration) states, None when it
        leaves them to DNS. Raises OSError only when the name servers cannot be asked at all.
        """
        literal = _is_address(host)
        plan = plan_for(host, port=port, transport=transport, literal=literal)
        if plan is Plan.LITERAL:
            return [
                Target(
                    address=host.strip("[]"),
                    port=port or DEFAULT_PORT,
                    transport=transport or "udp",
                )
            ]
        if plan is Plan.ADDRESS:
            return await self._addresses(host, port or DEFAULT_PORT, transport or "udp")
        if plan is Plan.SRV:
            assert transport is not None
            choices = [(transport, srv_name(host, transport))]
        else:
            choices = naptr_choices(await self._naptr(host))
            if not choices:
                # §4.1: no NAPTR, so SRV for each transport we speak.
                choices = [(name, srv_name(host, name)) for name in TRANSPORTS]
        for chosen, name in choices:
            targets = await self._srv_targets(name, chosen)
            if targets:
                logger.debug("%s located through %s: %s", host, name, targets)
                return targets
        # §4.2: no SRV record either: the host's own addresses on the default port.
        return await self._addresses(host, port or DEFAULT_PORT, transport or choices[0][0])

    async def _srv_targets(self, name: str, transport: str) -> list[Target]:
        targets: list[Target] = []
        for record in srv_order(await self._srv(name), self._uniform):
            for target in await self._addresses(record.target, record.port, transport):
                if target not in targets:
                    targets.append(target)
        return targets

    # ------------------------------------------------------------------ look-ups

    async def _naptr(self, host: str) -> list[NaptrRecord]:
        return [
            NaptrRecord(
                order=rdata.order,
                preference=rdata.preference,
                flags=rdata.flags.decode("ascii", "replace"),
                service=rdata.service.decode("ascii", "replace"),
                replacement=rdata.replacement.to_text(omit_final_dot=True),
            )
            for rdata in await self._query(host, "NAPTR")
        ]

    async def _srv(self, name: str) -> list[SrvRecord]:
        return [
            SrvRecord(
                priority=rdata.priority,
                weight=rdata.weight,
                port=rdata.port,
                target=rdata.target.to_text(omit_final_dot=True),
            )
            for rdata in await self._query(name, "SRV")
        ]

    async def _addresses(self, name: str, port: int, transport: str) -> list[Target]:
        if _is_address(name):
            return [Target(address=name.strip("[]"), port=port, transport=transport)]
        if self._nameservers:
            found = [
                rdata.address for kind in ("A", "AAAA") for rdata in await self._query(name, kind)
            ]
        else:
            kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=kind)
            except socket.gaierror as exc:
                logger.info("no address for %s: %s", name, exc)
                return []
            found = [str(info[4][0]) for info in infos]
        unique = list(dict.fromkeys(found))
        return [Target(address=address, port=port, transport=transport) for address in unique]

    async def _query(self, name: str, kind: str) -> list[Any]:
        """The records of `kind` at `name`; none when the name or the records do not exist."""
        try:
            answer = await self._resolver().resolve(
                name, kind, raise_on_no_answer=False, search=False
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            # No server answered (timeout, SERVFAIL everywhere, no configuration).
            raise OSError(f"{kind} look-up of {name} failed: {exc}") from exc
        return list(answer.rrset) if answer.rrset is not None else []

    def _resolver(self) -> dns.asyncresolver.Resolver:
        if self._dns is None:
            if self._nameservers:
                resolver = dns.asyncresolver.Resolver(configure=False)
                resolver.nameservers = [
                    dns.nameserver.Do53Nameserver(address, port)
                    for address, port in self._nameservers
                ]
            else:
                resolver = dns.asyncresolver.Resolver()
            resolver.lifetime = self._lifetime
            self._dns = resolver
        return self._dns


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
