"""Every refusal the API gives is JSON: ``{"error": CODE, "message": TEXT, "field": NAME|null}``.

``field`` names the offending input (``body.priority``, ``query.from``, ``path.agent_id``) so a
client can point at it; ``code`` is stable and meant for programs, ``message`` for people.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    503: "unavailable",
}


class ApiError(Exception):
    """A request the API refuses, with the status and the field it is about."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.code = code or _CODES.get(status, "error")
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def response(self) -> web.Response:
        body: dict[str, Any] = {"error": self.code, "message": self.message, "field": self.field}
        body.update(self.extra)
        return web.json_response(body, status=self.status, headers=self.headers)


def bad_input(field: str, message: str) -> ApiError:
    return ApiError(400, f"{field}: {message}", field=field, code="invalid_input")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every refusal, including aiohttp's own 404/405/413, into the JSON error body."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in {"allow", "retry-after"}}
        return ApiError(exc.status, exc.reason, headers=headers).response()
    except Exception:
        # A bug: logged with its traceback, answered without internals.
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response(
            {"error": "internal", "message": "internal server error", "field": None}, status=500
        )


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; an empty body is an empty object."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_input("body", f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise bad_input("body", "must be a JSON object")
    return value
