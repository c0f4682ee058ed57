"""Kept-alive HTTP/1.1 connections to one webhook endpoint: the asyncio layer of ``http1``.

A webhook POST is a small body, three signature headers and a status to read back. aiohttp's
client does much more per request (cookies, tracing hooks, timers, header multidicts, the
payload registry), which cost about 150 µs of CPU per delivery on the reference machine, more
than the rest of the delivery path together; this client sends the encoded request on an idle
kept-alive connection and reads the response with ``crm_bridge.http1`` in a few tens of µs.
The CRM look-up keeps aiohttp: a few requests per call, where its features are worth it.

Connections are reused LIFO (the most recently used is the most likely to be alive). One the
server closed while idle is noticed by its ``connection_lost`` and not taken again; if a reused
connection still fails before any response byte arrives (the server closed it as the request
left), the request goes once more on a new connection, with the same ``webhook-id``, as a
keep-alive client may (RFC 9112 §9.3.1). A connection whose request was cancelled (the attempt
timed out) is closed: its next bytes would belong to the abandoned response.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import urllib.parse
from collections.abc import Iterable
from typing import cast

from crm_bridge.http1 import HttpProtocolError, Response, ResponseParser, encode_request

logger = logging.getLogger(__name__)


#: Characters left as they are in a URL's path and query: RFC 3986 §3.3 pchar and "/", and "%"
#: so that existing escapes stay escapes.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


class StaleConnectionError(ConnectionError):
    """A reused connection closed before any byte of the response arrived."""


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection carrying one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser: ResponseParser | None = None
        self._waiter: asyncio.Future[Response] | None = None
        self.closed = False
        self.idle_since = 0.0

    # asyncio.Protocol -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not subclasses of asyncio.Transport).
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        parser, waiter = self._parser, self._waiter
        if parser is None or waiter is None or waiter.done():
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        try:
            response = parser.feed(data)
        except HttpProtocolError as exc:
            self._fail(exc)
            return
        if response is not None:
            self._parser = self._waiter = None
            waiter.set_result(response)

    def eof_received(self) -> bool:
        parser, waiter = self._parser, self._waiter
        if parser is not None and waiter is not None and not waiter.done():
            try:
                response = parser.feed_eof()
            except HttpProtocolError as exc:
                self._fail(self._closed_error(parser, exc))
            else:
                if response is not None:
                    self._parser = self._waiter = None
                    waiter.set_result(response)
        self.closed = True
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        parser, waiter = self._parser, self._waiter
        if parser is not None and waiter is not None and not waiter.done():
            waiter.set_exception(self._closed_error(parser, exc))

    # Use ------------------------------------------------------------------------------------------

    def send(self, request: bytes) -> asyncio.Future[Response]:
        """Write ``request``; the future resolves to its response."""
        assert self._transport is not None and self._waiter is None
        self._parser = ResponseParser()
        self._waiter = self._loop.create_future()
        self._transport.write(request)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, exc: Exception) -> None:
        waiter = self._waiter
        self._parser = self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    @staticmethod
    def _closed_error(parser: ResponseParser, cause: BaseException | None) -> Exception:
        if not parser.received_any:
            return StaleConnectionError(f"connection closed before any response ({cause})")
        return ConnectionResetError(f"connection closed during the response ({cause})")


class WebhookHttpClient:
    """POSTs to one URL over a small pool of kept-alive connections."""

    def __init__(
        self,
        url: str,
        *,
        max_idle: int = 128,
        idle_timeout: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook URL must be http:// or https:// with a host: {url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._authority = host if parts.port is None else f"{host}:{parts.port}"
        # Characters a request-target may not hold are percent-encoded (RFC 3986 §2.1); the
        # escapes already there are kept.
        path = urllib.parse.quote(parts.path or "/", safe=_PATH_SAFE)
        query = urllib.parse.quote(parts.query, safe=_PATH_SAFE + "?")
        self._target = path + (f"?{query}" if query else "")
        self._auth: tuple[tuple[str, str], ...] = ()
        if parts.username is not None:
            # Credentials in the URL become Basic authentication (RFC 7617), as aiohttp did.
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self._auth = (("authorization", f"Basic {token}"),)
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        self._max_idle = max_idle
        self._idle_timeout = idle_timeout
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()

    async def post(self, headers: Iterable[tuple[str, str]], body: bytes) -> Response:
        """Send one POST and read its response (raises ``OSError`` or ``HttpProtocolError``)."""
        request = encode_request(
            "POST", self._target, self._authority, (*self._auth, *headers), body
        )
        connection = self._take_idle()
        if connection is not None:
            try:
                return await self._exchange(connection, request)
            except StaleConnectionError:
                logger.debug("webhook connection to %s was closed while idle", self._authority)
        return await self._exchange(await self._open(), request)

    async def close(self) -> None:
        for connection in list(self._all):
            connection.close()
        self._all.clear()
        self._idle.clear()

    def _take_idle(self) -> _Connection | None:
        now = asyncio.get_running_loop().time()
        while self._idle:
            connection = self._idle.pop()
            if connection.closed:
                self._all.discard(connection)
            elif now - connection.idle_since > self._idle_timeout:
                self._discard(connection)
            else:
                return connection
        return None

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            lambda: _Connection(loop),
            self._host,
            self._port,
            ssl=self._ssl,
            server_hostname=self._host if self._ssl is not None else None,
        )
        self._all.add(connection)
        return connection

    async def _exchange(self, connection: _Connection, request: bytes) -> Response:
        try:
            response = await connection.send(request)
        except BaseException:
            self._discard(connection)
            raise
        if not response.keep_alive or connection.closed:
            self._discard(connection)
            return response
        connection.idle_since = asyncio.get_running_loop().time()
        if len(self._idle) >= self._max_idle:
            self._discard(self._idle.pop(0))
        self._idle.append(connection)
        return response

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        self._all.discard(connection)
