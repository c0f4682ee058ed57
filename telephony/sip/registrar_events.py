"""Events of the registrar (RFC 3261 §10.3) and of the source guard that protects it.

No field ever carries a password, a digest response or a hash: these events go to the bus, the
event log and the CRM outbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "AuthenticationFailed",
    "RegistrationAdded",
    "RegistrationEvent",
    "RegistrationExpired",
    "RegistrationRefreshed",
    "RegistrationRemoved",
    "SourceBlocked",
    "SourceUnblocked",
]

_TRANSPORTS = frozenset({"UDP", "TCP", "TLS", "WS", "WSS"})


def _check_binding(aor: str, contact: str, source_port: int, transport: str) -> None:
    if not aor or not contact:
        raise ValueError("aor and contact must not be empty")
    if not 0 <= source_port <= 65535:
        raise ValueError(f"source_port {source_port} is not a port")
    if transport not in _TRANSPORTS:
        raise ValueError(f"transport {transport!r} is not one of {sorted(_TRANSPORTS)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrationAdded:
    """A phone registered a new contact for an agent's address of record."""

    TYPE: ClassVar[str] = "registration.added"
    VERSION: ClassVar[int] = 1
    aor: str
    contact: str
    source_address: str
    source_port: int
    transport: str
    expires_seconds: int
    user_agent: str | None = None

    def __post_init__(self) -> None:
        _check_binding(self.aor, self.contact, self.source_port, self.transport)
        if self.expires_seconds <= 0:
            raise ValueError("a new registration must have a positive expiry")


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrationRefreshed:
    """An existing contact was registered again (new expiry, possibly a new source after NAT)."""

    TYPE: ClassVar[str] = "registration.refreshed"
    VERSION: ClassVar[int] = 1
    aor: str
    contact: str
    source_address: str
    source_port: int
    transport: str
    expires_seconds: int

    def __post_init__(self) -> None:
        _check_binding(self.aor, self.contact, self.source_port, self.transport)
        if self.expires_seconds <= 0:
            raise ValueError("a refreshed registration must have a positive expiry")


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrationRemoved:
    """A phone unregistered a contact (expires=0, or `Contact: *`)."""

    TYPE: ClassVar[str] = "registration.removed"
    VERSION: ClassVar[int] = 1
    aor: str
    contact: str
    source_address: str
    source_port: int
    transport: str

    def __post_init__(self) -> None:
        _check_binding(self.aor, self.contact, self.source_port, self.transport)


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrationExpired:
    """A contact was not refreshed in time and is gone: the agent's phone is unreachable there."""

    TYPE: ClassVar[str] = "registration.expired"
    VERSION: ClassVar[int] = 1
    aor: str
    contact: str
    source_address: str
    source_port: int
    transport: str

    def __post_init__(self) -> None:
        _check_binding(self.aor, self.contact, self.source_port, self.transport)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthenticationFailed:
    """A request carried digest credentials that did not match (a security event). `username` is
    the name the client claimed, kept so an operator can spot a misconfigured phone."""

    TYPE: ClassVar[str] = "security.auth_failed"
    VERSION: ClassVar[int] = 1
    source_address: str
    username: str
    method: str

    def __post_init__(self) -> None:
        if not self.source_address:
            raise ValueError("source_address must not be empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceBlocked:
    """A source (IP address, or IPv6 prefix) failed authentication too often and is ignored for
    `block_seconds`."""

    TYPE: ClassVar[str] = "security.source_blocked"
    VERSION: ClassVar[int] = 1
    source: str
    failures: int
    window_seconds: float
    block_seconds: float

    def __post_init__(self) -> None:
        if self.failures <= 0 or self.block_seconds <= 0 or self.window_seconds <= 0:
            raise ValueError("failures, window_seconds and block_seconds must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceUnblocked:
    """A block ran out; the source's requests are processed again."""

    TYPE: ClassVar[str] = "security.source_unblocked"
    VERSION: ClassVar[int] = 1
    source: str
    dropped_requests: int

    def __post_init__(self) -> None:
        if self.dropped_requests < 0:
            raise ValueError("dropped_requests must not be negative")


RegistrationEvent = (
    RegistrationAdded | RegistrationRefreshed | RegistrationRemoved | RegistrationExpired
)
