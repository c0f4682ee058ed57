"""HTTP digest authentication as SIP uses it (RFC 3261 §22.4, RFC 2617, RFC 8760 SHA-256).

Sans-IO. The server side keeps no per-challenge state: a nonce is the time it was issued plus an
HMAC over that time, the client's source address and the realm, so any node holding the secret can
check it and an expired one can be told apart from a forged one (stale=true, RFC 2617 §3.2.1). The
only state is a bounded map of the highest nonce-count seen per nonce, against replays (§3.2.2).
Passwords and hashes never reach a log line or a repr.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "Algorithm",
    "AuthOutcome",
    "AuthResult",
    "Challenge",
    "Credentials",
    "DigestAuthenticator",
    "DigestError",
    "StoredSecret",
    "answer_challenge",
    "choose_challenge",
    "compute_ha1",
    "compute_response",
    "parse_auth_params",
]

logger = logging.getLogger(__name__)


class DigestError(ValueError):
    """An Authorization or WWW-Authenticate value that cannot be read or used; `detail` says why."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Algorithm(StrEnum):
    """Digest algorithms (RFC 2617 §3.2.1, RFC 8760 §2)."""

    MD5 = "MD5"
    MD5_SESS = "MD5-sess"
    SHA256 = "SHA-256"
    SHA256_SESS = "SHA-256-sess"

    @classmethod
    def parse(cls, text: str) -> Algorithm | None:
        """Case-insensitive look-up of an algorithm token; None when we do not implement it."""
        for algorithm in cls:
            if algorithm.value.lower() == text.lower():
                return algorithm
        return None

    @property
    def is_session(self) -> bool:
        return self in (Algorithm.MD5_SESS, Algorithm.SHA256_SESS)

    @property
    def base(self) -> Algorithm:
        """The algorithm whose H(username:realm:password) a -sess variant builds on."""
        return (
            Algorithm.SHA256 if self in (Algorithm.SHA256, Algorithm.SHA256_SESS) else Algorithm.MD5
        )

    def hash(self, text: str) -> str:
        name = "sha256" if self.base is Algorithm.SHA256 else "md5"
        return hashlib.new(name, text.encode("utf-8")).hexdigest()


# --- header values -------------------------------------------------------------------------

# RFC 3261 §25.1 token, and quoted-string with quoted-pair escapes (§25.1, RFC 7230 §3.2.6).
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_SCHEME = re.compile(rf"\s*({_TOKEN})(?:\s+|$)")
_PARAM = re.compile(
    rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\x09\x20-\x7e\x80-\U0010ffff])*)"'
    r'|([^\s,"]+))\s*'
)
_ESCAPE = re.compile(r"\\(.)")
_MAX_PARAMS = 32


def parse_auth_params(value: str) -> tuple[str, dict[str, str]]:
    """Split `Digest a="x", b=y` into the scheme and a dict of lower-cased names to unquoted
    values. Each name may occur once (RFC 7235 §2.1); empty list elements are allowed (§7 of
    RFC 7230)."""
    match = _SCHEME.match(value)
    if match is None:
        raise DigestError("missing authentication scheme")
    scheme, position = match.group(1), match.end()
    params: dict[str, str] = {}
    while position < len(value):
        if value[position] in ", \t":
            position += 1
            continue
        match = _PARAM.match(value, position)
        if match is None:
            raise DigestError(f"malformed parameter at character {position}")
        name = match.group(1).lower()
        if name in params:
            raise DigestError(f"parameter {name!r} appears twice")
        if len(params) == _MAX_PARAMS:
            raise DigestError(f"more than {_MAX_PARAMS} parameters")
        quoted = match.group(2)
        params[name] = _ESCAPE.sub(r"\1", quoted) if quoted is not None else match.group(3)
        position = match.end()
        if position < len(value) and value[position] != ",":
            raise DigestError(f"expected ',' at character {position}")
    return scheme, params


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _require(params: dict[str, str], *names: str) -> None:
    for name in names:
        if name not in params:
            raise DigestError(f"missing {name!r} parameter")


def _digest_params(value: str) -> dict[str, str]:
    scheme, params = parse_auth_params(value)
    if scheme.lower() != "digest":
        raise DigestError(f"scheme {scheme!r} is not Digest")
    return params


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    """A WWW-Authenticate / Proxy-Authenticate value (RFC 2617 §3.2.1)."""

    realm: str
    nonce: str
    algorithm: Algorithm = Algorithm.MD5
    qop: tuple[str, ...] = ("auth",)
    opaque: str | None = None
    stale: bool = False

    @classmethod
    def parse(cls, value: str) -> Challenge:
        params = _digest_params(value)
        _require(params, "realm", "nonce")
        algorithm = Algorithm.parse(params.get("algorithm", "MD5"))
        if algorithm is None:
            raise DigestError(f"unsupported algorithm {params['algorithm']!r}")
        qop = (
            tuple(q.strip() for q in params["qop"].split(",") if q.strip())
            if "qop" in params
            else ()
        )
        return cls(
            realm=params["realm"],
            nonce=params["nonce"],
            algorithm=algorithm,
            qop=qop,
            opaque=params.get("opaque"),
            stale=params.get("stale", "").lower() == "true",
        )

    def __str__(self) -> str:
        parts = [
            f"realm={_quote(self.realm)}",
            f"nonce={_quote(self.nonce)}",
            f"algorithm={self.algorithm.value}",
        ]
        if self.qop:
            parts.append(f"qop={_quote(','.join(self.qop))}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.stale:
            parts.append("stale=true")
        return "Digest " + ", ".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """An Authorization / Proxy-Authorization value (RFC 2617 §3.2.2). `algorithm` is kept as
    sent so that a credential for an algorithm we do not offer can be refused, not misread."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str = field(repr=False)
    algorithm: str = "MD5"
    cnonce: str | None = None
    qop: str | None = None
    nc: str | None = None
    opaque: str | None = None

    @classmethod
    def parse(cls, value: str) -> Credentials:
        params = _digest_params(value)
        _require(params, "username", "realm", "nonce", "uri", "response")
        if "qop" in params:
            # RFC 2617 §3.2.2: with qop, cnonce and nc MUST be present; nc is 8 hex digits.
            _require(params, "cnonce", "nc")
            if not re.fullmatch(r"[0-9a-fA-F]{8}", params["nc"]):
                raise DigestError("nc is not 8 hexadecimal digits")
        return cls(
            username=params["username"],
            realm=params["realm"],
            nonce=params["nonce"],
            uri=params["uri"],
            response=params["response"],
            algorithm=params.get("algorithm", "MD5"),
            cnonce=params.get("cnonce"),
            qop=params.get("qop"),
            nc=params.get("nc"),
            opaque=params.get("opaque"),
        )

    def __str__(self) -> str:
        parts = [
            f"username={_quote(self.username)}",
            f"realm={_quote(self.realm)}",
            f"nonce={_quote(self.nonce)}",
            f"uri={_quote(self.uri)}",
            f"response={_quote(self.response)}",
            f"algorithm={self.algorithm}",
        ]
        if self.cnonce is not None:
            parts.append(f"cnonce={_quote(self.cnonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.qop is not None:
            parts.append(f"qop={self.qop}")
        if self.nc is not None:
            parts.append(f"nc={self.nc}")
        return "Digest " + ", ".join(parts)


# --- the digest computation (RFC 2617 §3.2.2.1-3) ----------------------------------------------


def compute_ha1(algorithm: Algorithm, username: str, realm: str, password: str) -> str:
    """H(username:realm:password), the value a configuration may store instead of the password.
    For a -sess algorithm this is still the base value; the session part needs the nonces."""
    return algorithm.base.hash(f"{username}:{realm}:{password}")


def compute_response(
    *,
    algorithm: Algorithm,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None,
    nc: str | None,
    cnonce: str | None,
) -> str:
    """request-digest of RFC 2617 §3.2.2.1 for qop=auth (or no qop, RFC 2069 compatibility)."""
    if algorithm.is_session:
        ha1 = algorithm.hash(f"{ha1}:{nonce}:{cnonce or ''}")
    ha2 = algorithm.hash(f"{method}:{uri}")
    if qop is None:
        return algorithm.hash(f"{ha1}:{nonce}:{ha2}")
    return algorithm.hash(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredSecret:
    """What the configuration holds for one user: the password, or H(user:realm:password) per
    algorithm so that no plaintext is stored. A stored HA1 is only valid for the realm it was
    computed with."""

    password: str | None = field(default=None, repr=False)
    ha1_md5: str | None = field(default=None, repr=False)
    ha1_sha256: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.password is None and self.ha1_md5 is None and self.ha1_sha256 is None:
            raise ValueError("a stored secret needs a password or at least one HA1")

    def ha1(self, algorithm: Algorithm, username: str, realm: str) -> str | None:
        if self.password is not None:
            return compute_ha1(algorithm, username, realm, self.password)
        stored = self.ha1_sha256 if algorithm.base is Algorithm.SHA256 else self.ha1_md5
        return stored.lower() if stored is not None else None


# --- server side ---------------------------------------------------------------------------


class AuthOutcome(StrEnum):
    ACCEPTED = "accepted"
    STALE = "stale"  # right password, old nonce: challenge again with stale=true
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthResult:
    """The verdict and, for logs and counters only, why (never shown to the client).
    `counts_as_failure` marks a wrong answer to a nonce we issued to that very source: proof the
    source received our challenge, so a guess to count against it (a spoofed address cannot
    produce one, so it cannot get somebody else blocked)."""

    outcome: AuthOutcome
    reason: str
    counts_as_failure: bool = False


_NONCE = re.compile(r"([0-9a-f]{1,14})\.([0-9a-f]{1,8})\.([A-Za-z0-9_-]{24})")


class DigestAuthenticator:
    """Issues challenges and checks credentials for one realm. `secret` keys the nonce HMAC: the
    same secret on every node lets any node check any nonce. `accept_without_qop` admits RFC 2069
    style answers (no qop, nc or cnonce) from phones that ignore the qop we offer."""

    def __init__(
        self,
        *,
        realm: str,
        secret: bytes,
        nonce_lifetime: float = 300.0,
        algorithms: Sequence[Algorithm] = (Algorithm.SHA256, Algorithm.MD5),
        max_tracked_nonces: int = 4096,
        accept_without_qop: bool = False,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the nonce secret must be at least 16 bytes")
        if not algorithms:
            raise ValueError("at least one algorithm must be offered")
        self.realm = realm
        self.algorithms = tuple(algorithms)
        self.nonce_lifetime = nonce_lifetime
        self.accept_without_qop = accept_without_qop
        self._secret = secret
        self._max_tracked = max_tracked_nonces
        self._highest_nc: OrderedDict[str, int] = OrderedDict()
        self._sequence = 0

    def make_nonce(self, *, source: str, now: float) -> str:
        """`<issued ms>.<sequence>.<HMAC>`: the sequence number keeps two nonces issued to one
        address in the same millisecond (two phones behind one NAT) apart, so that each phone's
        nonce-count starts afresh."""
        issued = max(0, int(now * 1000))
        self._sequence = (self._sequence + 1) % 2**32
        return f"{issued:x}.{self._sequence:x}.{self._nonce_mac(issued, self._sequence, source)}"

    def challenges(self, *, source: str, now: float, stale: bool = False) -> tuple[Challenge, ...]:
        """One challenge per algorithm, in preference order: RFC 8760 §2.4 has the UAC use the
        topmost one it supports, so SHA-256 goes first and MD5 stays for older phones."""
        nonce = self.make_nonce(source=source, now=now)
        return tuple(
            Challenge(realm=self.realm, nonce=nonce, algorithm=algorithm, stale=stale)
            for algorithm in self.algorithms
        )

    def verify(
        self,
        credentials: Credentials,
        *,
        method: str,
        secret: StoredSecret | None,
        source: str,
        now: float,
    ) -> AuthResult:
        """Check `credentials` for a request with `method` from `source`. `secret` is None for an
        unknown user: the work done is the same as for a known one, so neither the answer nor its
        timing tells the two apart."""
        algorithm = Algorithm.parse(credentials.algorithm)
        if algorithm is None or algorithm not in self.algorithms:
            return AuthResult(outcome=AuthOutcome.REJECTED, reason="algorithm not offered")
        if credentials.realm != self.realm:
            return AuthResult(outcome=AuthOutcome.REJECTED, reason="realm mismatch")
        if credentials.qop is None:
            # RFC 3261 §22.4 item 8: we always send qop, and a client that sees it MUST answer
            # with it; yet the server MUST support RFC 2617's compatibility with RFC 2069
            # answers, which carry no qop. Phones that ignore qop exist (PyVoIP).
            if not self.accept_without_qop:
                return AuthResult(outcome=AuthOutcome.REJECTED, reason="qop=auth missing")
        elif credentials.qop != "auth" or credentials.nc is None or credentials.cnonce is None:
            return AuthResult(outcome=AuthOutcome.REJECTED, reason="qop=auth missing")
        ha1 = None if secret is None else secret.ha1(algorithm, credentials.username, self.realm)
        expected = compute_response(
            algorithm=algorithm,
            # An unknown user is checked against a hash nobody can match, at the same cost.
            ha1=ha1 if ha1 is not None else algorithm.hash(self.realm),
            nonce=credentials.nonce,
            method=method,
            uri=credentials.uri,
            qop=credentials.qop,
            nc=credentials.nc,
            cnonce=credentials.cnonce,
        )
        matches = hmac.compare_digest(
            expected.encode("ascii"), credentials.response.lower().encode("utf-8")
        )
        issued = self._check_nonce(credentials.nonce, source)
        if issued is None:
            return AuthResult(outcome=AuthOutcome.REJECTED, reason="nonce not issued to source")
        if ha1 is None:
            return AuthResult(
                outcome=AuthOutcome.REJECTED, reason="unknown user", counts_as_failure=True
            )
        if not matches:
            return AuthResult(
                outcome=AuthOutcome.REJECTED, reason="wrong response", counts_as_failure=True
            )
        age = now - issued / 1000
        if age > self.nonce_lifetime or age < -1.0:
            return AuthResult(outcome=AuthOutcome.STALE, reason="nonce expired")
        # Without qop there is no nonce-count: such a nonce is good for one request only, which
        # keeps the replay protection nc gives (RFC 2617 §4.5) at the cost of a new challenge.
        count = 0 if credentials.nc is None else int(credentials.nc, 16)
        if not self._count(credentials.nonce, count):
            return AuthResult(outcome=AuthOutcome.STALE, reason="nonce count replayed")
        return AuthResult(outcome=AuthOutcome.ACCEPTED, reason="ok")

    def _nonce_mac(self, issued: int, sequence: int, source: str) -> str:
        message = f"{issued}|{sequence}|{source}|{self.realm}".encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()[:18]
        return base64.urlsafe_b64encode(digest).decode("ascii")

    def _check_nonce(self, nonce: str, source: str) -> int | None:
        """The issue time (ms) of a nonce we made for `source`, else None."""
        match = _NONCE.fullmatch(nonce)
        if match is None:
            return None
        issued, sequence = int(match.group(1), 16), int(match.group(2), 16)
        if not hmac.compare_digest(self._nonce_mac(issued, sequence, source), match.group(3)):
            return None
        return issued

    def _count(self, nonce: str, nc: int) -> bool:
        """RFC 2617 §3.2.2: nc must grow with each request on one nonce. Memory is bounded: the
        least recently used nonce is forgotten first, after which its next count is accepted once
        more (no worse than not tracking at all, and the nonce still expires)."""
        highest = self._highest_nc.get(nonce)
        if highest is not None and nc <= highest:
            return False
        self._highest_nc[nonce] = nc
        self._highest_nc.move_to_end(nonce)
        while len(self._highest_nc) > self._max_tracked:
            self._highest_nc.popitem(last=False)
        return True


# --- client side (CXOS registering or authenticating to a trunk) -------------------------------


def choose_challenge(values: Sequence[str]) -> Challenge:
    """RFC 8760 §2.4: use the topmost Digest challenge whose algorithm we support."""
    reasons = []
    for value in values:
        try:
            return Challenge.parse(value)
        except DigestError as exc:
            reasons.append(exc.detail)
    raise DigestError("no usable challenge: " + ("; ".join(reasons) or "none offered"))


def answer_challenge(
    challenge: Challenge,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    cnonce: str,
    nc: int = 1,
) -> Credentials:
    """Credentials answering `challenge` for one request. `cnonce` is the caller's random string;
    `nc` counts requests sent with this nonce, starting at 1."""
    if challenge.qop and "auth" not in challenge.qop:
        raise DigestError(f"no supported qop in {','.join(challenge.qop)!r}")
    qop = "auth" if challenge.qop else None
    nc_text = f"{nc:08x}" if qop else None
    ha1 = compute_ha1(challenge.algorithm, username, challenge.realm, password)
    response = compute_response(
        algorithm=challenge.algorithm,
        ha1=ha1,
        nonce=challenge.nonce,
        method=method,
        uri=uri,
        qop=qop,
        nc=nc_text,
        cnonce=cnonce if qop or challenge.algorithm.is_session else None,
    )
    return Credentials(
        username=username,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response=response,
        algorithm=challenge.algorithm.value,
        cnonce=cnonce if qop or challenge.algorithm.is_session else None,
        qop=qop,
        nc=nc_text,
        opaque=challenge.opaque,
    )
