"""Calls placed from agents' softphones: digest authentication of their INVITEs (RFC 3261 §22.3,
RFC 2617, RFC 8760). Sans-IO.

An INVITE from an address no trunk covers is a stranger's (403) unless a softphone is registered
from that very address. Then it is challenged with 407 Proxy-Authenticate, one challenge per
algorithm, like the registrar's 401 (same realm, algorithms, nonce lifetime, stale=true and
MD5-only phones) — for whatever From user it names: an answer that depended on the From user
would tell a scanner (svwar sends each extension in From) which users exist. The address
condition reveals nothing to the sender, whose own address it is.

The answer may come in Proxy-Authorization (§22.3) or, from phones that answer every challenge
as a UAS's, in Authorization. An unknown user and a wrong password get the same new challenge
and both count against the source in the `SourceGuard`, as wrong REGISTER passwords do. Once
authenticated, the From user must be the authenticated one (the agent calls as themself);
otherwise 403, which needs valid credentials to see.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable

from telephony.events import AgentCallStarted
from telephony.sip.core_types import IncomingCall
from telephony.sip.digest import (
    Algorithm,
    AuthOutcome,
    Credentials,
    DigestAuthenticator,
    DigestError,
    StoredSecret,
)
from telephony.sip.guard import SourceGuard, auth_failure_events
from telephony.sip.inbound import InboundLeg
from telephony.sip.message import SipRequest
from telephony.sip.registrar import CredentialStore, RegistrarSettings
from telephony.sip.registrar_events import (
    RegistrationAdded,
    RegistrationExpired,
    RegistrationRefreshed,
    RegistrationRemoved,
)
from telephony.sip.trunk_auth import TrunkRefusal

__all__ = ["AgentCallAuth", "agent_call_announcements"]

logger = logging.getLogger(__name__)

#: The credential headers read, in order: the proxy form first (§22.3), then the UAS form.
_CREDENTIAL_HEADERS = ("Proxy-Authorization", "Authorization")


class AgentCallAuth:
    """Decides on INVITEs from addresses no trunk covers. `credentials` is the registrar's
    store (read at each check, so a reloaded password applies at once); `secret` keys the
    nonces (per process: after a restart a phone is simply challenged again)."""

    def __init__(
        self,
        settings: RegistrarSettings,
        *,
        credentials: CredentialStore,
        secret: bytes,
        guard: SourceGuard | None = None,
    ) -> None:
        self.realm = settings.realm
        self._credentials = credentials
        self._guard = guard
        self._auth = DigestAuthenticator(
            realm=settings.realm,
            secret=secret,
            nonce_lifetime=settings.nonce_lifetime,
            algorithms=settings.algorithms,
            accept_without_qop=settings.accept_without_qop,
        )
        self._md5_only = tuple(prefix.lower() for prefix in settings.md5_only_user_agents)
        #: (address of record, contact) -> the address its REGISTER came from, and how many
        #: live bindings each address has: both bounded by the registrar's bindings.
        self._binding_sources: dict[tuple[str, str], str] = {}
        self._phones_at: Counter[str] = Counter()

    # --- which addresses have a registered softphone -----------------------------------------

    def observe(self, events: Iterable[object]) -> None:
        """Follow the registrar's binding events (added, refreshed, removed, expired)."""
        for event in events:
            if isinstance(event, RegistrationAdded | RegistrationRefreshed):
                self._forget((event.aor, event.contact))
                self._binding_sources[(event.aor, event.contact)] = event.source_address
                self._phones_at[event.source_address] += 1
            elif isinstance(event, RegistrationRemoved | RegistrationExpired):
                self._forget((event.aor, event.contact))

    def phone_registered_at(self, address: str) -> bool:
        return self._phones_at.get(address, 0) > 0

    def _forget(self, key: tuple[str, str]) -> None:
        source = self._binding_sources.pop(key, None)
        if source is None:
            return
        self._phones_at[source] -= 1
        if self._phones_at[source] <= 0:
            del self._phones_at[source]

    # --- INVITEs -----------------------------------------------------------------------------

    def check(self, request: SipRequest, source: str, now: float) -> str | TrunkRefusal | None:
        """The authenticated agent's SIP user; or the refusal to send (407, 400, 403); or None
        when no softphone is registered from `source` (the stranger's 403 of the core)."""
        if not self.phone_registered_at(source):
            return None
        try:
            credentials = self._our_credentials(request)
        except DigestError:
            return TrunkRefusal(status=400, reason="Malformed Authorization Header")
        if credentials is None:
            return self._challenge(request, source, now, stale=False)
        result = self._auth.verify(
            credentials,
            method=request.method,
            # An unknown user costs the same work as a wrong password (see `verify`).
            secret=self._secret_for(credentials.username),
            source=source,
            now=now,
        )
        if result.outcome is AuthOutcome.ACCEPTED:
            caller = request.from_.uri.user
            if caller != credentials.username:
                logger.warning(
                    "security: %r from %s placed a call as %r",
                    credentials.username[:64],
                    source,
                    (caller or "")[:64],
                )
                return TrunkRefusal(status=403, reason="From Does Not Match Credentials")
            return credentials.username
        events: list[object] = []
        if result.counts_as_failure:
            logger.warning(
                "security: INVITE authentication failed for %r from %s (%s)",
                credentials.username[:64],
                source,
                result.reason,
            )
            events.extend(
                auth_failure_events(self._guard, source, credentials.username, "INVITE", now)
            )
        else:
            logger.info("INVITE from %s challenged again: %s", source, result.reason)
        challenge = self._challenge(request, source, now, stale=result.outcome is AuthOutcome.STALE)
        return TrunkRefusal(
            status=challenge.status,
            reason=challenge.reason,
            headers=challenge.headers,
            events=tuple(events),
        )

    def _challenge(
        self, request: SipRequest, source: str, now: float, *, stale: bool
    ) -> TrunkRefusal:
        challenges = self._auth.challenges(source=source, now=now, stale=stale)
        if len(challenges) > 1 and self._md5_only:
            user_agent = (request.headers.get("User-Agent") or "").lstrip().lower()
            if user_agent.startswith(self._md5_only):
                challenges = tuple(c for c in challenges if c.algorithm is Algorithm.MD5) or (
                    challenges
                )
        return TrunkRefusal(
            status=407,
            reason="Proxy Authentication Required",
            headers=tuple(("Proxy-Authenticate", str(challenge)) for challenge in challenges),
        )

    def _our_credentials(self, request: SipRequest) -> Credentials | None:
        """The credentials for our realm (§22.4: one value per realm may be present)."""
        for name in _CREDENTIAL_HEADERS:
            for value in request.headers.get_lines(name):
                credentials = Credentials.parse(value)
                if credentials.realm == self.realm:
                    return credentials
        return None

    def _secret_for(self, username: str) -> StoredSecret | None:
        if callable(self._credentials):
            return self._credentials(username)
        return self._credentials.get(username)


def agent_call_announcements(leg: InboundLeg, sip_user: str) -> tuple[object, ...]:
    """What makes an agent's call known: `AgentCallStarted` for the record (not
    ``call.started``: no trunk, no dial plan, no queue call) and the `IncomingCall` the layer
    above answers and routes by what was dialled."""
    return (
        AgentCallStarted(
            call_id=leg.call_id,
            sip_user=sip_user,
            dialled=leg.did,
            sip_call_id=leg.sip_call_id,
            source=leg.source[0],
        ),
        IncomingCall(
            call_id=leg.call_id,
            did=leg.did,
            trunk_id="",
            offer=leg.offer,
            entry_ivr=None,
            entry_queue=None,
            answer_after=0.0,
            agent=sip_user,
        ),
    )
