"""Digest authentication of the INVITEs a trunk sends in (RFC 3261 §22, RFC 2617, RFC 8760).

A trunk with ``inbound_auth`` is recognised by its source address and must also prove it knows
the password: each new INVITE without valid credentials is answered 401 with one
WWW-Authenticate per algorithm (§22.2: the challenge of a UAS; carriers answer it as they answer a
registrar's), and let in once answered. The nonces are `DigestAuthenticator`'s (stateless, bound
to the source address); wrong answers count against the source in the `SourceGuard`, as wrong
REGISTER passwords do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from config.settings import Trunk
from telephony.sip.digest import (
    Algorithm,
    AuthOutcome,
    Credentials,
    DigestAuthenticator,
    DigestError,
    StoredSecret,
)
from telephony.sip.guard import SourceGuard, auth_failure_events
from telephony.sip.message import SipRequest

__all__ = ["TrunkAuthenticator", "TrunkRefusal"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrunkRefusal:
    """How to answer an INVITE the trunk did not authenticate, and what to report."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()
    events: tuple[object, ...] = ()


@dataclass(slots=True)
class TrunkAuthenticator:
    """Checks the credentials of INVITEs from trunks that have ``inbound_auth``."""

    #: Keys the nonce HMAC; per process, so after a restart a trunk is simply challenged again.
    secret: bytes
    guard: SourceGuard | None = None
    nonce_lifetime: float = 300.0
    #: MD5 first: many carriers answer only the first challenge and only know MD5 (RFC 8760
    #: §2.4 has a client take the topmost one it supports).
    algorithms: tuple[Algorithm, ...] = (Algorithm.MD5, Algorithm.SHA256)
    _by_realm: dict[str, DigestAuthenticator] = field(default_factory=dict)

    def check(
        self, trunk: Trunk, request: SipRequest, source: str, now: float
    ) -> TrunkRefusal | None:
        """None when `request` (an INVITE from `trunk`) may go on; else the refusal to send."""
        auth = trunk.inbound_auth
        if auth is None:
            return None
        realm = auth.realm or trunk.id
        authenticator = self._authenticator(realm)
        credentials = _credentials_for(request, realm)
        if credentials is None:
            return self._challenge(authenticator, source, now, stale=False)
        if isinstance(credentials, DigestError):
            return TrunkRefusal(status=400, reason="Malformed Authorization Header")
        known = credentials.username == auth.username
        result = authenticator.verify(
            credentials,
            method=request.method,
            # An unknown user name costs the same work as a wrong password (see `verify`).
            secret=StoredSecret(password=auth.password) if known else None,
            source=source,
            now=now,
        )
        if result.outcome is AuthOutcome.ACCEPTED:
            return None
        events: list[object] = []
        if result.counts_as_failure:
            logger.warning(
                "security: INVITE authentication failed for trunk %s from %s (%s)",
                trunk.id,
                source,
                result.reason,
            )
            events.extend(
                auth_failure_events(self.guard, source, credentials.username, "INVITE", now)
            )
        refusal = self._challenge(
            authenticator, source, now, stale=result.outcome is AuthOutcome.STALE
        )
        return TrunkRefusal(
            status=refusal.status,
            reason=refusal.reason,
            headers=refusal.headers,
            events=tuple(events),
        )

    def _challenge(
        self, authenticator: DigestAuthenticator, source: str, now: float, *, stale: bool
    ) -> TrunkRefusal:
        challenges = authenticator.challenges(source=source, now=now, stale=stale)
        return TrunkRefusal(
            status=401,
            reason="Unauthorized",
            headers=tuple(("WWW-Authenticate", str(challenge)) for challenge in challenges),
        )

    def _authenticator(self, realm: str) -> DigestAuthenticator:
        authenticator = self._by_realm.get(realm)
        if authenticator is None:
            authenticator = DigestAuthenticator(
                realm=realm,
                secret=self.secret,
                nonce_lifetime=self.nonce_lifetime,
                algorithms=self.algorithms,
            )
            self._by_realm[realm] = authenticator
        return authenticator


def _credentials_for(request: SipRequest, realm: str) -> Credentials | DigestError | None:
    """The Authorization value for our realm (§22.4: one per realm may be present)."""
    for value in request.headers.get_lines("Authorization"):
        try:
            credentials = Credentials.parse(value)
        except DigestError as exc:
            return exc
        if credentials.realm == realm:
            return credentials
    return None
