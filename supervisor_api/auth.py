"""Bearer-token authentication (RFC 6750) and role checks for every route.

Each handler declares who may call it with :func:`access`; the middleware authenticates the token
before the handler runs, so a handler never sees an anonymous request unless it is public. A
request with no usable token is answered 401 with ``WWW-Authenticate: Bearer`` (RFC 6750 §3); a
valid token without the right role is answered 403.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from config.api import ApiToken, Role
from supervisor_api.errors import ApiError, Handler

#: WebSocket subprotocol prefix carrying a token, for browsers that cannot set headers on a
#: WebSocket handshake: ``new WebSocket(url, ["cxos.events.v1", "bearer." + token])``.
SUBPROTOCOL_PREFIX = "bearer."


class Access(enum.Enum):
    """Who may call a route."""

    PUBLIC = "public"
    """Anyone: health checks and the wallboard's static files (which hold no data)."""
    ANY_ROLE = "any_role"
    """Any valid token; the handler narrows what an agent token sees."""
    AGENT_SELF = "agent_self"
    """Supervisors and admins, or an agent token whose agent is ``{agent_id}`` in the path."""
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who is calling: the token's name (for the log), its role and, for agents, the agent."""

    name: str
    role: Role
    agent_id: str | None = None

    def at_least(self, role: Role) -> bool:
        return self.role.rank >= role.rank


PRINCIPAL = web.RequestKey("principal", Principal)

_ACCESS_ATTRIBUTE = "__cxos_access__"

H = TypeVar("H", bound=Callable[..., object])


def access(rule: Access) -> Callable[[H], H]:
    """Declare who may call a handler; a handler without a declaration needs any valid token."""

    def mark(handler: H) -> H:
        setattr(handler, _ACCESS_ATTRIBUTE, rule)
        return handler

    return mark


def access_of(handler: object) -> Access:
    rule = getattr(handler, _ACCESS_ATTRIBUTE, Access.ANY_ROLE)
    return rule if isinstance(rule, Access) else Access.ANY_ROLE


class TokenTable:
    """Tokens by the SHA-256 of their secret.

    Looking up a digest rather than comparing secrets means the comparison time depends on the
    hash, which an attacker cannot steer towards a stored token.
    """

    __slots__ = ("_by_digest",)

    def __init__(self, tokens: Iterable[ApiToken]) -> None:
        self._by_digest = {
            token.digest: Principal(name=token.name, role=token.role, agent_id=token.agent_id)
            for token in tokens
        }

    def authenticate(self, presented: str) -> Principal | None:
        return self._by_digest.get(hashlib.sha256(presented.encode()).hexdigest())


def presented_token(request: web.Request) -> str | None:
    """The token of ``Authorization: Bearer`` (RFC 6750 §2.1) or of a ``bearer.`` subprotocol."""
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header is not None:
        scheme, _, value = header.partition(" ")
        # RFC 7235 §2.1: the auth-scheme is case-insensitive.
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    for protocol in request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL, "").split(","):
        protocol = protocol.strip()
        if protocol.startswith(SUBPROTOCOL_PREFIX) and len(protocol) > len(SUBPROTOCOL_PREFIX):
            return protocol[len(SUBPROTOCOL_PREFIX) :]
    return None


def _challenge(message: str, error: str | None) -> ApiError:
    # RFC 6750 §3: a request without credentials gets a bare challenge; a bad token gets
    # error="invalid_token".
    value = 'Bearer realm="cxos"' + (f', error="{error}"' if error else "")
    return ApiError(401, message, headers={hdrs.WWW_AUTHENTICATE: value})


def authorize(rule: Access, principal: Principal, request: web.Request) -> None:
    """Raise a 403 ``ApiError`` unless ``principal`` may use a route declared ``rule``."""
    if rule in {Access.PUBLIC, Access.ANY_ROLE}:
        return
    if rule is Access.ADMIN:
        if not principal.at_least(Role.ADMIN):
            raise ApiError(403, "this action needs the admin role")
        return
    if principal.at_least(Role.SUPERVISOR):
        return
    if rule is Access.AGENT_SELF and principal.agent_id == request.match_info.get("agent_id"):
        return
    what = "another agent" if rule is Access.AGENT_SELF else "this resource"
    raise ApiError(403, f"an agent token cannot access {what}")


def auth_middleware(tokens: Callable[[], TokenTable]) -> Middleware:
    """Middleware authenticating against the current token table (it changes on reload)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        rule = access_of(handler)
        if rule is Access.PUBLIC:
            return await handler(request)
        token = presented_token(request)
        if token is None:
            raise _challenge("a bearer token is required", None)
        principal = tokens().authenticate(token)
        if principal is None:
            raise _challenge("the bearer token is not valid", "invalid_token")
        authorize(rule, principal, request)
        request[PRINCIPAL] = principal
        return await handler(request)

    return middleware
