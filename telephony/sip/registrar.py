"""The registrar for agent softphones (RFC 3261 §10.3), with digest authentication.

Sans-IO: `handle_register(request, source, transport, now)` returns the response to send; the
bindings live in memory, expire on `expire(now)` and expose `next_timer()`. Events about
registrations queue up for `take_events()`.

Enumeration resistance: a REGISTER for a user that does not exist and one with a wrong password get
the same 401, byte for byte apart from the nonce, which depends only on time and source. The
To tag is derived from the request, not random, and an unknown user costs the same hashing.

NAT: a binding remembers the address and transport the REGISTER came from (after the transport
has recorded received/rport, RFC 3581); requests to the phone go there, with the registered
Contact as Request-URI, so a phone behind NAT is reachable through the pinhole it keeps open.
The 200 lists contacts exactly as registered, so that phones recognise their own.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from telephony.sip.checks import inspect_request
from telephony.sip.digest import (
    Algorithm,
    AuthOutcome,
    AuthResult,
    Challenge,
    Credentials,
    DigestAuthenticator,
    DigestError,
    StoredSecret,
)
from telephony.sip.errors import SipParseError
from telephony.sip.grammar import find_unquoted
from telephony.sip.guard import SourceGuard, auth_failure_events
from telephony.sip.message import SipRequest, SipResponse, build_response
from telephony.sip.registrar_events import (
    AuthenticationFailed,
    RegistrationAdded,
    RegistrationExpired,
    RegistrationRefreshed,
    RegistrationRemoved,
    SourceBlocked,
)
from telephony.sip.uri import NameAddr, SipUri

__all__ = ["Binding", "CredentialStore", "PhoneDigest", "Registrar", "RegistrarSettings"]

logger = logging.getLogger(__name__)

CredentialStore = Mapping[str, StoredSecret] | Callable[[str], StoredSecret | None]
RegistrarEvent = (
    RegistrationAdded
    | RegistrationRefreshed
    | RegistrationRemoved
    | RegistrationExpired
    | AuthenticationFailed
    | SourceBlocked
)
# RFC 3261 §10.2.1.1 / §20.19: an Expires above 2**32-1 is taken as 2**32-1.
_MAX_DELTA = 2**32 - 1
# URI parameters that take part in URI comparison even when only one side has them (§19.1.4).
_COMPARED_PARAMS = ("transport", "user", "ttl", "method", "maddr")


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrarSettings:
    """Registrar policy. Times in seconds."""

    realm: str
    """Digest realm shown to phones; stored HA1 values must be computed with it."""
    min_expires: int = 60
    """Shorter registrations get 423 Interval Too Brief with this Min-Expires (§10.3 step 7)."""
    max_expires: int = 3600
    """Longer requested expiries are shortened to this."""
    default_expires: int = 3600
    """Expiry when the REGISTER gives none (neither Expires header nor contact parameter)."""
    max_contacts: int = 10
    """Contacts one agent may have registered at once."""
    nonce_lifetime: float = 300.0
    """Seconds a digest nonce is accepted before stale=true is answered."""
    algorithms: tuple[Algorithm, ...] = (Algorithm.SHA256, Algorithm.MD5)
    """Digest algorithms offered, most preferred first (RFC 8760 §2.4)."""
    domains: tuple[str, ...] = ()
    """Request-URI hosts we are the registrar for; empty accepts any."""
    accept_without_qop: bool = True
    """Accept digest answers without qop (RFC 2069 style), as RFC 3261 §22.4 item 8 requires of
    servers; each such nonce is good for one request."""
    md5_only_user_agents: tuple[str, ...] = ()
    """User-Agent prefixes (case-insensitive) of phones that give up as soon as a challenge names
    an algorithm other than MD5, even one listed after MD5 (baresip 1.0 on libre 1.1, against
    RFC 8760 §2.4; ``("baresip",)`` covers it): they are offered the MD5 challenge alone when MD5
    is offered at all. The choice depends only on the User-Agent, never on the user, so it tells
    nothing about which users exist."""
    challenge_unregistered_calls: bool = False
    """Challenge INVITEs from any address no trunk covers (`telephony.sip.agent_auth`), so that
    phones that never registered here can call; off: only from addresses where a softphone is
    registered or INVITEs that already carry credentials, and strangers get 403."""

    def __post_init__(self) -> None:
        if not 0 < self.min_expires <= self.default_expires <= self.max_expires:
            raise ValueError("need 0 < min_expires <= default_expires <= max_expires")
        if self.max_contacts < 1:
            raise ValueError("max_contacts must be at least 1")

    def phone_digest(
        self, *, credentials: CredentialStore, secret: bytes, guard: SourceGuard | None = None
    ) -> PhoneDigest:
        """Digest authentication of agents' softphones on these settings: the registrar's
        REGISTERs and agents' INVITEs (`telephony.sip.agent_auth`) are challenged alike."""
        return PhoneDigest(self, credentials=credentials, secret=secret, guard=guard)


class PhoneDigest:
    """Challenges and checks of one realm's softphone credentials (RFC 2617, RFC 8760).

    `credentials` is read at each check, so a reloaded password applies at once; `secret` keys
    the nonces. Unknown users cost the same work as wrong passwords, and both count against the
    source in the `SourceGuard`."""

    def __init__(
        self,
        settings: RegistrarSettings,
        *,
        credentials: CredentialStore,
        secret: bytes,
        guard: SourceGuard | None,
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

    def verify(
        self, request: SipRequest, credentials: Credentials, source: str, now: float
    ) -> tuple[AuthResult, list[AuthenticationFailed | SourceBlocked]]:
        """The verdict on `credentials`, and the security events a failure brings about."""
        result = self._auth.verify(
            credentials,
            method=request.method,
            secret=self._secret_for(credentials.username),
            source=source,
            now=now,
        )
        if result.outcome is AuthOutcome.ACCEPTED:
            return result, []
        if not result.counts_as_failure:
            logger.info("%s from %s challenged again: %s", request.method, source, result.reason)
            return result, []
        logger.warning(
            "security: %s authentication failed for %r from %s (%s)",
            request.method,
            credentials.username[:64],
            source,
            result.reason,
        )
        return result, auth_failure_events(
            self._guard, source, credentials.username, request.method, now
        )

    def challenges(
        self, request: SipRequest, source: str, now: float, *, stale: bool
    ) -> tuple[Challenge, ...]:
        """One challenge per algorithm offered; the MD5 one alone for the phones of
        `md5_only_user_agents` (chosen by User-Agent, never by user)."""
        challenges = self._auth.challenges(source=source, now=now, stale=stale)
        if len(challenges) > 1 and self._md5_only:
            user_agent = (request.headers.get("User-Agent") or "").lstrip().lower()
            if user_agent.startswith(self._md5_only):
                md5 = tuple(c for c in challenges if c.algorithm is Algorithm.MD5)
                challenges = md5 or challenges
        return challenges

    def _secret_for(self, username: str) -> StoredSecret | None:
        if callable(self._credentials):
            return self._credentials(username)
        return self._credentials.get(username)


@dataclass(frozen=True, slots=True, kw_only=True)
class Binding:
    """One registered contact of an address of record."""

    aor: str
    contact: str  # the Contact URI exactly as the phone wrote it: the Request-URI to reach it
    expires_at: float
    call_id: str
    cseq: int
    source: tuple[str, int]  # where the REGISTER came from: where to send requests (NAT)
    transport: str  # "UDP", "TCP" ...
    q: str | None = None
    user_agent: str | None = None

    def remaining(self, now: float) -> int:
        return max(0, int(self.expires_at - now + 0.5))

    @property
    def contact_uri(self) -> SipUri:
        return SipUri.parse(self.contact)

    @property
    def received_uri(self) -> SipUri:
        """The Contact rewritten to the address the phone registered from (a NAT'ed phone's
        contact names a private address that cannot be reached)."""
        host, port = self.source
        uri = replace(self.contact_uri, host=f"[{host}]" if ":" in host else host, port=port)
        if self.transport != "UDP":
            uri = uri.with_params(transport=self.transport.lower())
        return uri

    @property
    def behind_nat(self) -> bool:
        uri = self.contact_uri
        return (uri.host.strip("[]"), uri.port or 5060) != self.source


@dataclass(slots=True)
class _Contact:
    uri: SipUri
    text: str
    expires: int
    q: str | None


class _Reject(Exception):  # noqa: N818 - an internal signal carrying the response to send
    def __init__(
        self, status: int, reason: str | None = None, headers: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(status)
        self.status, self.reason, self.headers = status, reason, headers or []


class Registrar:
    """Bindings per address of record (the agent's user name) and the REGISTER handling of
    RFC 3261 §10.3. `secret` keys the digest nonces and the derived To tags."""

    def __init__(
        self,
        settings: RegistrarSettings,
        *,
        credentials: CredentialStore,
        secret: bytes,
        guard: SourceGuard | None = None,
    ) -> None:
        self.settings = settings
        self._digest = settings.phone_digest(credentials=credentials, secret=secret, guard=guard)
        self._tag_key = hmac.new(secret, b"registrar to-tag", hashlib.sha256).digest()
        self._bindings: dict[str, dict[tuple[object, ...], Binding]] = {}
        self._deadlines: list[tuple[float, str, tuple[object, ...]]] = []
        self._events: list[RegistrarEvent] = []

    # --- queries and timers ----------------------------------------------------------------

    def lookup(self, aor: str, now: float) -> list[Binding]:
        """Live contacts of `aor`, highest q first (RFC 3261 §16.6 ordering by q)."""
        live = [b for b in self._bindings.get(aor, {}).values() if b.expires_at > now]
        return sorted(live, key=lambda b: -float(b.q or "1"))

    def binding_counts(self) -> tuple[int, int]:
        """Contacts bound, and addresses of record with at least one (read for metrics)."""
        return sum(len(b) for b in self._bindings.values()), len(self._bindings)

    def next_timer(self) -> float | None:
        while self._deadlines:
            expires_at, aor, key = self._deadlines[0]
            binding = self._bindings.get(aor, {}).get(key)
            if binding is not None and binding.expires_at == expires_at:
                return expires_at
            heapq.heappop(self._deadlines)  # superseded by a refresh or removal
        return None

    def expire(self, now: float) -> list[Binding]:
        """Remove bindings whose time is up; each gives a RegistrationExpired event."""
        expired: list[Binding] = []
        while (deadline := self.next_timer()) is not None and deadline <= now:
            _, aor, key = heapq.heappop(self._deadlines)
            binding = self._bindings[aor].pop(key)
            if not self._bindings[aor]:
                del self._bindings[aor]
            expired.append(binding)
            logger.info("registration of %s at %s expired", aor, binding.contact)
            self._events.append(
                RegistrationExpired(
                    aor=binding.aor,
                    contact=binding.contact,
                    source_address=binding.source[0],
                    source_port=binding.source[1],
                    transport=binding.transport,
                )
            )
        return expired

    def take_events(self) -> list[RegistrarEvent]:
        events, self._events = self._events, []
        return events

    # --- REGISTER --------------------------------------------------------------------------

    def handle_register(
        self, request: SipRequest, source: tuple[str, int], transport: str, now: float
    ) -> SipResponse:
        """Process one REGISTER (already past the transaction layer) and return the response."""
        if request.method != "REGISTER":
            raise ValueError(f"handle_register got a {request.method} request")
        self.expire(now)
        to_tag = self._to_tag(request)
        try:
            early = inspect_request(request, to_tag=to_tag)
            if early is not None:
                return early
            return self._register(request, source, transport.upper(), now, to_tag)
        except _Reject as reject:
            return build_response(
                request, reject.status, reject.reason, to_tag=to_tag, headers=reject.headers
            )
        except SipParseError as exc:
            logger.info("bad REGISTER from %s:%d: %s", source[0], source[1], exc.detail)
            return build_response(request, exc.status, exc.reason_phrase, to_tag=to_tag)

    def _register(
        self,
        request: SipRequest,
        source: tuple[str, int],
        transport: str,
        now: float,
        to_tag: str,
    ) -> SipResponse:
        # Step 1: are we the registrar for the Request-URI's domain?
        domain = SipUri.parse(request.uri).host.lower()
        if self.settings.domains and domain not in self.settings.domains:
            raise _Reject(404, "Domain Not Served Here")
        # Steps 3-4: authenticate, then authorise the user for the To address of record.
        username = self._authenticate(request, source, now)
        aor = request.to.uri.user
        if aor is None:
            raise _Reject(404, "Address Of Record Not Found")
        if aor != username:
            logger.warning(
                "security: %r from %s tried to register %r", username, source[0], aor[:64]
            )
            raise _Reject(403, "Not Allowed For This Address Of Record")
        # Steps 5-7: the contacts and their expiries, then update all bindings or none.
        contact_values = request.headers.get_all("Contact")
        if contact_values:
            if "*" in (value.strip() for value in contact_values):
                self._unregister_all(request, aor, contact_values)
            else:
                contacts = [self._read_contact(value, request) for value in contact_values]
                self._update(request, aor, contacts, source, transport, now)
        # Step 8: 200 listing every current binding with its remaining time.
        response = build_response(request, 200, to_tag=to_tag)
        for binding in self.lookup(aor, now):
            params = f";q={binding.q}" if binding.q is not None else ""
            response.headers.add(
                "Contact", f"<{binding.contact}>;expires={binding.remaining(now)}{params}"
            )
        return response

    def _authenticate(self, request: SipRequest, source: tuple[str, int], now: float) -> str:
        credentials = self._our_credentials(request)
        if credentials is None:
            raise self._challenge(request, source, now, stale=False)
        result, events = self._digest.verify(request, credentials, source[0], now)
        if result.outcome is AuthOutcome.ACCEPTED:
            return credentials.username
        self._events.extend(events)
        raise self._challenge(request, source, now, stale=result.outcome is AuthOutcome.STALE)

    def _challenge(
        self, request: SipRequest, source: tuple[str, int], now: float, *, stale: bool
    ) -> _Reject:
        challenges = self._digest.challenges(request, source[0], now, stale=stale)
        return _Reject(401, headers=[("WWW-Authenticate", str(c)) for c in challenges])

    def _our_credentials(self, request: SipRequest) -> Credentials | None:
        for value in request.headers.get_lines("Authorization"):
            try:
                credentials = Credentials.parse(value)
            except DigestError as exc:
                raise _Reject(400, "Malformed Authorization Header") from exc
            if credentials.realm == self.settings.realm:
                return credentials
        return None

    def _read_contact(self, value: str, request: SipRequest) -> _Contact:
        address = NameAddr.parse(value)
        if not address.uri.is_sip:
            raise _Reject(400, "Contact Must Be A SIP URI")
        langle = find_unquoted(value, "<")
        text = (
            value[langle + 1 : value.index(">", langle)]
            if langle >= 0
            else value.strip().split(";", 1)[0]
        )
        expires = _delta(address.params.get("expires"))
        if expires is None:
            expires = _delta(request.headers.get("Expires"))
        if expires is None:
            expires = self.settings.default_expires
        # §10.3 step 7: an interval above zero, under an hour and under our minimum gets 423.
        if 0 < expires < min(self.settings.min_expires, 3600):
            raise _Reject(423, headers=[("Min-Expires", str(self.settings.min_expires))])
        return _Contact(
            uri=address.uri,
            text=text,
            expires=min(expires, self.settings.max_expires),
            q=address.params.get("q"),
        )

    def _unregister_all(self, request: SipRequest, aor: str, values: list[str]) -> None:
        # §10.3 step 6: "*" must stand alone and come with Expires: 0.
        if len(values) != 1 or _delta(request.headers.get("Expires")) != 0:
            raise _Reject(400, "Contact * Needs Expires 0 And No Other Contact")
        current = self._bindings.get(aor, {})
        for binding in current.values():
            self._check_order(binding, request)
        for binding in current.values():
            self._log_change("unregistered", binding)
            self._events.append(_removed(binding))
        self._bindings.pop(aor, None)

    def _update(
        self,
        request: SipRequest,
        aor: str,
        contacts: list[_Contact],
        source: tuple[str, int],
        transport: str,
        now: float,
    ) -> None:
        current = self._bindings.get(aor, {})
        updated = dict(current)
        events: list[RegistrarEvent] = []
        cseq = request.cseq.number
        user_agent = request.headers.get("User-Agent")
        for contact in contacts:
            key = _uri_key(contact.uri)
            existing = updated.get(key)
            if key in current:  # against the state before this request, not its own changes
                self._check_order(current[key], request)
            if contact.expires == 0:
                if existing is not None:
                    del updated[key]
                    events.append(_removed(existing))
                continue
            binding = Binding(
                aor=aor,
                contact=contact.text,
                expires_at=now + contact.expires,
                call_id=request.call_id,
                cseq=cseq,
                source=source,
                transport=transport,
                q=contact.q,
                user_agent=user_agent,
            )
            updated[key] = binding
            events.append(_added(binding, contact.expires, refreshed=existing is not None))
        if len(updated) > self.settings.max_contacts:
            raise _Reject(403, "Too Many Contacts")
        # All checks passed: commit every change at once (§10.3 step 7).
        if updated:
            self._bindings[aor] = updated
        else:
            self._bindings.pop(aor, None)
        for key, binding in updated.items():
            if current.get(key) is not binding:
                heapq.heappush(self._deadlines, (binding.expires_at, aor, key))
        for event in events:
            self._log_change(type(event).TYPE, event)
        self._events.extend(events)

    @staticmethod
    def _check_order(binding: Binding, request: SipRequest) -> None:
        # §10.3 step 7: the same Call-ID with a CSeq not above the stored one is an old or
        # reordered request; the whole update fails.
        if binding.call_id == request.call_id and request.cseq.number <= binding.cseq:
            raise _Reject(400, "Out Of Order CSeq")

    @staticmethod
    def _log_change(what: str, item: Binding | RegistrarEvent) -> None:
        if logger.isEnabledFor(logging.INFO):
            logger.info("%s: %r", what, item)

    def _to_tag(self, request: SipRequest) -> str:
        # RFC 3261 §8.2.6.2 needs a To tag, not a random one. Derived from the transaction
        # (Call-ID, CSeq, top Via) and not from the user names, so that two REGISTERs differing
        # only in the user get the same tag: an unknown user must look like a wrong password.
        seed = "|".join(request.headers.get(name) or "" for name in ("Call-ID", "CSeq", "Via"))
        digest = hmac.new(self._tag_key, seed.encode("utf-8", "surrogateescape"), hashlib.sha256)
        return digest.hexdigest()[:16]


def _removed(binding: Binding) -> RegistrationRemoved:
    return RegistrationRemoved(
        aor=binding.aor,
        contact=binding.contact,
        source_address=binding.source[0],
        source_port=binding.source[1],
        transport=binding.transport,
    )


def _added(
    binding: Binding, expires: int, *, refreshed: bool
) -> RegistrationAdded | RegistrationRefreshed:
    if refreshed:
        return RegistrationRefreshed(
            aor=binding.aor,
            contact=binding.contact,
            source_address=binding.source[0],
            source_port=binding.source[1],
            transport=binding.transport,
            expires_seconds=expires,
        )
    return RegistrationAdded(
        aor=binding.aor,
        contact=binding.contact,
        source_address=binding.source[0],
        source_port=binding.source[1],
        transport=binding.transport,
        expires_seconds=expires,
        user_agent=binding.user_agent,
    )


def _delta(value: str | None) -> int | None:
    """delta-seconds (RFC 3261 §20.19, §20.10 expires parameter); None when absent."""
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or not value.isascii():
        raise _Reject(400, "Bad Expires Value")
    return min(int(value), _MAX_DELTA)


def _uri_key(uri: SipUri) -> tuple[object, ...]:
    """Enough of RFC 3261 §19.1.4 URI equality to match a contact with its binding: scheme and
    host case-insensitive, user case-sensitive, port as written, the special parameters."""
    params = tuple(
        (name, (uri.params.get(name) or "").lower())
        for name in _COMPARED_PARAMS
        if name in uri.params
    )
    return (
        uri.scheme.lower(),
        uri.user,
        uri.password,
        uri.host.lower(),
        uri.port,
        params,
        tuple(sorted(uri.headers.items())),
    )
