"""A loopback TCP relay in front of PostgreSQL whose plug the tests can pull (a DB outage)."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse


class OutageProxy:
    """Relays 127.0.0.1:<port> to the real server; ``cut()`` closes the port and every link."""

    def __init__(self, upstream_dsn: str) -> None:
        parts = urllib.parse.urlsplit(upstream_dsn)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._dsn_parts = parts
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def dsn(self) -> str:
        netloc = f"{self._dsn_parts.username or 'postgres'}@127.0.0.1:{self.port}"
        return urllib.parse.urlunsplit(self._dsn_parts._replace(netloc=netloc))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """The database disappears: the port refuses connections, open ones are reset."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    async def restore(self) -> None:
        await self.start()

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.transport.abort()
            return
        self._links.update((writer, up_writer))

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._links.discard(writer)
        self._links.discard(up_writer)
