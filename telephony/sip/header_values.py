"""Typed views of the header values every SIP message carries beside its addresses:
CSeq (RFC 3261 §20.16) and Via (§20.42). From, To and Contact are `telephony.sip.uri.NameAddr`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from telephony.sip.errors import SipParseError
from telephony.sip.grammar import format_params, is_token, parse_params, split_host_port

__all__ = ["CSeq", "Via"]


@dataclass(frozen=True, slots=True)
class CSeq:
    """RFC 3261 §20.16: `CSeq = "CSeq" HCOLON 1*DIGIT LWS Method`."""

    number: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        parts = text.split()
        if len(parts) != 2:
            raise SipParseError(f"malformed CSeq {text[:40]!r}")
        number, method = parts
        # §8.1.1.5: the sequence number MUST be expressible as a 32-bit unsigned integer
        # (and be less than 2**31 when chosen by a UAC).
        if not number.isdigit() or not number.isascii() or int(number) >= 2**32:
            raise SipParseError(f"bad CSeq number {number[:20]!r}")
        if not is_token(method):
            raise SipParseError(f"bad CSeq method {method[:20]!r}")
        return cls(int(number), method)

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


@dataclass(frozen=True, slots=True)
class Via:
    """One Via element (RFC 3261 §20.42): `SIP/2.0/UDP host:port;branch=...`.

    `host` is kept as written, an IPv6 address with its brackets (the `IPv6reference` of §25.1).
    """

    transport: str
    host: str
    port: int | None = None
    params: Mapping[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @classmethod
    def parse(cls, text: str) -> Via:
        semi = text.find(";")
        head = text if semi < 0 else text[:semi]
        params = parse_params(text[semi:]) if semi >= 0 else {}
        # sent-protocol = protocol-name SLASH protocol-version SLASH transport; SLASH = SWS "/" SWS
        if head.startswith("SIP/2.0/"):
            # What every peer writes: only the transport and sent-by are left to check.
            protocol = "SIP/2.0"
            rest = head[8:].strip()
        else:
            pieces = head.split("/", 2)
            if len(pieces) != 3:
                raise SipParseError(f"malformed Via {text[:60]!r}")
            name, version, rest = pieces[0].strip(), pieces[1].strip(), pieces[2].strip()
            if not is_token(name) or not is_token(version):
                raise SipParseError(f"malformed Via {text[:60]!r}")
            protocol = f"{name}/{version}".upper()
        rest_parts = rest.split(None, 1)
        if len(rest_parts) != 2:
            raise SipParseError(f"malformed Via {text[:60]!r}")
        transport, sent_by = rest_parts
        if not is_token(transport):
            raise SipParseError(f"bad Via transport {transport[:20]!r}")
        host, port = split_host_port("".join(sent_by.split()))
        return cls(
            transport=transport.upper(),
            host=host,
            port=port,
            params=params,
            protocol=protocol,
        )

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The rport value (RFC 3581 §4) when filled in; None when absent or empty."""
        value = self.params.get("rport")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def has_rport(self) -> bool:
        """True when the client asked for symmetric response routing (RFC 3581 §3)."""
        return "rport" in self.params

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def with_params(
        self, params: Mapping[str, str | None] | None = None, /, **kwargs: str | None
    ) -> Via:
        """A copy with parameters added or replaced (None makes a flag, e.g. `rport`)."""
        merged = dict(self.params)
        if params:
            merged.update({k.lower(): v for k, v in params.items()})
        merged.update({k.lower(): v for k, v in kwargs.items()})
        return Via(
            transport=self.transport,
            host=self.host,
            port=self.port,
            params=merged,
            protocol=self.protocol,
        )

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params)}"
