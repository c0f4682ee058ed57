"""The webhook HTTP/1.1 client against real loopback servers: framing, kept-alive connections."""

from __future__ import annotations

import asyncio
import random
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from config.crm import DeliverySettings
from crm_bridge.delivery import DeliveryWorker
from crm_bridge.http1 import HttpProtocolError
from crm_bridge.outbox import Outbox
from crm_bridge.webhook_http import WebhookHttpClient
from tests.crm.crm_db import endpoint, event_log, fresh_database, interleaved_calls, migrated_pool

NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
FAST = DeliverySettings(poll_interval=0.02, lease=30)


@dataclass(frozen=True)
class Reply:
    """What the server writes for one request: ``pieces`` one by one, then maybe its close."""

    pieces: Sequence[bytes] = (NO_CONTENT,)
    close: bool = False


#: Picks the reply to a request from its number overall and on its connection (both from 1);
#: None closes the connection without answering.
Script = Callable[[int, int], Reply | None]


class Endpoint:
    """A loopback HTTP server that answers as its script says."""

    def __init__(self, script: Script = lambda total, on_connection: Reply()) -> None:
        self.connections = 0
        self.answered = 0
        self.heads: list[bytes] = []
        self._script = script

    def webhook_ids(self) -> list[str]:
        return [
            line.split(b":", 1)[1].strip().decode()
            for head in self.heads
            for line in head.split(b"\r\n")
            if line.startswith(b"webhook-id:")
        ]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        on_connection = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                on_connection += 1
                reply = self._script(len(self.heads), on_connection)
                if reply is None:
                    break
                self.answered += 1
                for piece in reply.pieces:
                    writer.write(piece)
                    await writer.drain()
                if reply.close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            # The test is over and the loop cancels the connection's handler. Ending it here,
            # instead of as a cancelled task, spares Python 3.11's stream callback from logging
            # the cancellation as an error.
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(endpoint: Endpoint, tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    server = await asyncio.start_server(endpoint.handle, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.close()


async def post_all(url: str, count: int) -> list[int]:
    client = WebhookHttpClient(url)
    try:
        return [(await client.post([("webhook-id", f"m{n}")], b"{}")).status for n in range(count)]
    finally:
        await client.close()


async def test_requests_reuse_one_kept_alive_connection() -> None:
    endpoint = Endpoint()
    async with serving(endpoint) as url:
        statuses = await post_all(f"{url}/hooks", 20)
    assert statuses == [204] * 20
    assert (endpoint.answered, endpoint.connections) == (20, 1)
    assert endpoint.webhook_ids() == [f"m{n}" for n in range(20)]
    assert b"content-length: 2\r\n" in endpoint.heads[0]


async def test_a_response_in_pieces_gives_its_status_and_retry_after() -> None:
    pieces = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-", b"After: 7\r\nContent-Length: 5\r\n")
    endpoint = Endpoint(lambda total, _: Reply((*pieces, b"\r\nab", b"cde")))
    async with serving(endpoint) as url:
        client = WebhookHttpClient(url)
        responses = [await client.post([("webhook-id", f"m{n}")], b"{}") for n in range(2)]
        await client.close()
    assert [(r.status, r.header("retry-after")) for r in responses] == [(503, "7")] * 2
    assert endpoint.connections == 1


async def test_chunked_responses_after_interim_ones_keep_the_connection() -> None:
    chunked = Reply(
        (
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"5;ext=1\r\nhel",
            b"lo\r\n0\r\nX-Trailer: y\r\n\r\n",
        )
    )
    endpoint = Endpoint(lambda total, _: chunked)
    async with serving(endpoint) as url:
        statuses = await post_all(url, 3)
    assert statuses == [200] * 3
    assert endpoint.connections == 1


async def test_responses_that_end_their_connection_are_read_and_it_is_not_reused() -> None:
    replies = [
        Reply((b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",)),
        Reply((b"HTTP/1.0 202 Accepted\r\nContent-Length: 0\r\n\r\n",)),
        Reply((b"HTTP/1.1 200 OK\r\n\r\nbody with no length",), close=True),
        # Bytes beyond the response: the connection is out of step.
        Reply((b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 204",)),
        Reply(),
    ]
    endpoint = Endpoint(lambda total, _: replies[total - 1])
    async with serving(endpoint) as url:
        statuses = await post_all(url, 5)
    assert statuses == [204, 202, 200, 204, 204]
    assert endpoint.connections == 5


async def test_a_server_closing_idle_kept_alive_connections_costs_no_failure() -> None:
    # Every answer is followed by the server's close, as its idle timeout would do.
    endpoint = Endpoint(lambda total, _: Reply(close=True))
    async with serving(endpoint) as url:
        statuses = await post_all(url, 4)
    assert statuses == [204] * 4
    assert (endpoint.answered, endpoint.connections) == (4, 4)


async def test_a_request_meeting_a_closing_connection_goes_again_with_its_webhook_id() -> None:
    # The server closes each connection when its second request arrives, without answering:
    # what a server's idle timeout does to a request that crosses it.
    endpoint = Endpoint(lambda total, on_connection: None if on_connection == 2 else Reply())
    async with serving(endpoint) as url:
        statuses = await post_all(f"{url}/hooks", 4)
    assert statuses == [204] * 4
    assert endpoint.answered == 4
    assert endpoint.webhook_ids() == ["m0", "m1", "m1", "m2", "m2", "m3", "m3"]


async def test_a_server_that_never_answers_fails_the_request() -> None:
    endpoint = Endpoint(lambda total, on_connection: None)
    async with serving(endpoint) as url:
        client = WebhookHttpClient(f"{url}/hooks")
        with pytest.raises(ConnectionError):
            await client.post([("webhook-id", "m")], b"{}")
        await client.close()
    assert endpoint.answered == 0


MALFORMED = [
    b"HTTP/1.1 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
]


async def test_malformed_responses_fail_their_request_and_not_the_next() -> None:
    truncated = Reply((b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",), close=True)
    replies = [*(Reply((bad,)) for bad in MALFORMED), truncated, Reply()]
    endpoint = Endpoint(lambda total, _: replies[total - 1])
    async with serving(endpoint) as url:
        client = WebhookHttpClient(url)
        for n in range(len(MALFORMED)):
            with pytest.raises(HttpProtocolError):
                await client.post([("webhook-id", f"m{n}")], b"{}")
        with pytest.raises(ConnectionResetError, match="during the response"):
            await client.post([("webhook-id", "truncated")], b"{}")
        response = await client.post([("webhook-id", "good")], b"{}")
        await client.close()
    assert response.status == 204
    assert endpoint.connections == len(replies)


async def test_malformed_answers_are_failed_attempts_of_a_delivery(tmp_path: Path) -> None:
    server = Endpoint(lambda total, _: Reply((MALFORMED[total - 1],)) if total <= 3 else Reply())
    async with fresh_database() as database, serving(server) as url:
        pool = await migrated_pool(database)
        outbox = Outbox(pool, owner="node-a")
        ep = endpoint(url)
        await outbox.sync_endpoints([ep])
        worker = DeliveryWorker(ep, outbox, settings=FAST, rng=random.Random(7))
        worker.start()
        async with event_log(pool, tmp_path / "spool") as (bus, writer):
            published = [bus.publish(event) for event in interleaved_calls(calls=2, steps=3)]
            assert await writer.wait_idle(10)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while worker.stats().delivered < len(published):
            assert loop.time() < deadline, "the deliveries were not made"
            await asyncio.sleep(0.01)
        stats = worker.stats()
        await worker.stop(grace=2)
        await pool.close()
    assert stats.failed_attempts >= 3  # and more if the machine is too slow for a timeout
    assert sorted(set(server.webhook_ids())) == sorted(str(p.id) for p in published)


async def test_the_url_gives_the_request_target_host_and_credentials() -> None:
    endpoint = Endpoint()
    async with serving(endpoint) as url:
        user_url = url.replace("http://", "http://crm:s%40cret@")
        client = WebhookHttpClient(f"{user_url}/in box/%41?tenant=a b")
        response = await client.post([("webhook-id", "m")], b"{}")
        with pytest.raises(ValueError, match="invalid"):
            await client.post([("x-bad", "a\r\nb: c")], b"{}")
        await client.close()
    assert response.status == 204
    assert len(endpoint.heads) == 1
    request_line, *fields = endpoint.heads[0].decode().split("\r\n")
    assert request_line == "POST /in%20box/%41?tenant=a%20b HTTP/1.1"
    assert f"host: {url.removeprefix('http://')}" in fields
    assert "authorization: Basic Y3JtOnNAY3JldA==" in fields  # crm:s@cret


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt"),
            *("ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_https_checks_the_server_certificate(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    endpoint = Endpoint()
    async with serving(endpoint, tls) as url:
        untrusted = WebhookHttpClient(url)
        with pytest.raises(ssl.SSLCertVerificationError):
            await untrusted.post([("webhook-id", "m0")], b"{}")
        await untrusted.close()
        trusting = WebhookHttpClient(url, ssl_context=ssl.create_default_context(cafile=cert))
        response = await trusting.post([("webhook-id", "m1")], b"{}")
        await trusting.close()
    assert response.status == 204
    assert endpoint.webhook_ids() == ["m1"]
