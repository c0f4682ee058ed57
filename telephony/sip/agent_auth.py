"""Calls placed from agents' softphones: digest authentication of their INVITEs (RFC 3261 §22.2,
RFC 2617, RFC 8760). Sans-IO.

An INVITE from an address no trunk covers is challenged with 401 WWW-Authenticate, one
challenge per algorithm, exactly as the registrar challenges REGISTERs (the same constructor,
`RegistrarSettings.phone_digest`: realm, algorithms, nonce lifetime, stale=true and MD5-only
phones) — for whatever From user it names: an answer that depended on the From user would tell
a scanner (svwar sends each extension in From) which users exist. It is challenged when a
softphone is registered from that very address, when it already carries credentials of our
realm (a phone that answers with the credentials it used last), or from any address with
``challenge_unregistered_calls``; otherwise it is a stranger's (403). None of these conditions
depends on the user: they reveal nothing to the sender.

The server is the UAS of these calls (it answers the phone and bridges, routes or places the
call itself), so it challenges as a UAS does (§22.2: 401, answered in Authorization), not as a
proxy (§22.3: 407, Proxy-Authorization); every phone answers a 401, and some (PyVoIP 1.6) no
407. An agent's phone is challenged without a 100 Trying before it (PyVoIP takes the 100 for
the end of the exchange). Valid credentials make the call the authenticated agent's wherever it
comes from: a phone need not have registered with this node (another node took its REGISTER,
this one restarted since). An unknown user and a wrong password get the same new challenge and
both count against the source in the `SourceGuard`, as wrong REGISTER passwords do. Once
authenticated, the From user must be the authenticated one (the agent calls as themself);
otherwise 403, which needs valid credentials to see.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable

from telephony.events import AgentCallStarted
from telephony.sip.core_types import IncomingCall
from telephony.sip.digest import AuthOutcome, Credentials, DigestError
from telephony.sip.guard import SourceGuard
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


class AgentCallAuth:
    """Decides on INVITEs from addresses no trunk covers, with the registrar's digest settings
    (`RegistrarSettings.phone_digest`). `credentials` is the registrar's store (read at each
    check, so a reloaded password applies at once); `secret` keys the nonces (per process:
    after a restart a phone is simply challenged again)."""

    def __init__(
        self,
        settings: RegistrarSettings,
        *,
        credentials: CredentialStore,
        secret: bytes,
        guard: SourceGuard | None = None,
    ) -> None:
        self.realm = settings.realm
        self.challenge_unregistered = settings.challenge_unregistered_calls
        self._digest = settings.phone_digest(credentials=credentials, secret=secret, guard=guard)
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
        """The authenticated agent's SIP user; or the refusal to send (401, 400, 403); or None
        for a stranger (the core's 403): no softphone registered from `source`, no
        credentials of our realm, and `challenge_unregistered_calls` off."""
        try:
            credentials = self._our_credentials(request)
        except DigestError:
            if not self._may_challenge(source):
                return None
            return TrunkRefusal(status=400, reason="Malformed Authorization Header")
        if credentials is None:
            if not self._may_challenge(source):
                return None
            return self._challenge(request, source, now, stale=False)
        # From here the agent is the authenticated user, wherever the INVITE comes from: a
        # phone that did not register here (another node took its REGISTER, this node
        # restarted since) calls all the same.
        result, events = self._digest.verify(request, credentials, source, now)
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
        challenge = self._challenge(request, source, now, stale=result.outcome is AuthOutcome.STALE)
        return TrunkRefusal(
            status=challenge.status,
            reason=challenge.reason,
            headers=challenge.headers,
            events=tuple(events),
        )

    def _may_challenge(self, source: str) -> bool:
        """Whether an INVITE without (usable) credentials gets a challenge rather than the
        stranger's 403. The answer depends on the source address and the settings only, never
        on the user named: it tells a scanner nothing about which users exist."""
        return self.challenge_unregistered or self.phone_registered_at(source)

    def _challenge(
        self, request: SipRequest, source: str, now: float, *, stale: bool
    ) -> TrunkRefusal:
        challenges = self._digest.challenges(request, source, now, stale=stale)
        # §22.2: a UAS's challenge, whatever user the INVITE names.
        return TrunkRefusal(
            status=401,
            reason="Unauthorized",
            headers=tuple(("WWW-Authenticate", str(challenge)) for challenge in challenges),
        )

    def _our_credentials(self, request: SipRequest) -> Credentials | None:
        """The credentials for our realm in Authorization (§22.2; §22.4: one value per realm
        may be present)."""
        for value in request.headers.get_lines("Authorization"):
            credentials = Credentials.parse(value)
            if credentials.realm == self.realm:
                return credentials
        return None


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
