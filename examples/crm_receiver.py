"""A reference CRM webhook receiver: verifies Standard Webhooks signatures, stores deliveries.

    python examples/crm_receiver.py --secret whsec_... [--port 8088] [--store deliveries.jsonl]

It answers ``204`` to a delivery whose signature verifies (``crm_bridge.signing.verify``),
``401`` to one that does not, and ``400`` to a body that is not a JSON envelope. Deliveries are
de-duplicated on ``webhook-id`` as the specification asks receivers to do: a repeat is answered
``204`` again but stored once. With ``--store`` each new delivery is appended to a JSON Lines
file.

Tests and benchmarks use the ``CrmReceiver`` class directly: it can be told to fail (answer a
status, or hang) for a while, and it keeps every attempt it saw.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from crm_bridge.signing import WebhookSecret, WebhookVerificationError, verify

logger = logging.getLogger("crm_receiver")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedDelivery:
    webhook_id: str
    timestamp: int
    envelope: dict[str, Any]
    repeat: bool
    """True when this ``webhook-id`` had been accepted before."""


class CrmReceiver:
    """The receiving side of the webhooks, in memory (and optionally a JSON Lines file)."""

    def __init__(
        self,
        secrets: Iterable[WebhookSecret],
        *,
        clock: Callable[[], float] = time.time,
        store: Path | None = None,
    ) -> None:
        self.secrets = list(secrets)
        self._clock = clock
        self._store = store
        self.accepted: list[ReceivedDelivery] = []
        """Every accepted request, repeats included, in arrival order."""
        self.unique: dict[str, ReceivedDelivery] = {}
        """First acceptance of each ``webhook-id`` (dict order: arrival order)."""
        self.rejected = 0
        self.attempts = 0
        """Requests received, whatever the answer."""
        self.fail_status: int | None = None
        """When set, every request is answered with this status (and not stored)."""
        self.hang_seconds = 0.0
        """When set, every request waits this long before being handled."""
        self.arrived = asyncio.Event()
        """Set whenever a new delivery is stored."""

    # Behaviour for tests --------------------------------------------------------------------------

    def fail_with(self, status: int | None) -> None:
        self.fail_status = status

    def hang(self, seconds: float) -> None:
        self.hang_seconds = seconds

    def heal(self) -> None:
        self.fail_status = None
        self.hang_seconds = 0.0

    def envelopes(self) -> list[dict[str, Any]]:
        """Distinct deliveries in the order they were first accepted."""
        return [delivery.envelope for delivery in self.unique.values()]

    async def wait_for(self, count: int, within: float) -> bool:
        """Wait until ``count`` distinct deliveries are stored; False if not within ``within`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while len(self.unique) < count:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self.arrived.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self.arrived.wait()
            except TimeoutError:
                return False
        return True

    # HTTP -----------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if self.hang_seconds:
            await asyncio.sleep(self.hang_seconds)
        if self.fail_status is not None:
            return web.Response(status=self.fail_status, text="failing on purpose\n")
        body = await request.read()
        try:
            webhook_id = verify(self.secrets, request.headers, body, now=self._clock())
        except WebhookVerificationError as exc:
            self.rejected += 1
            logger.warning("rejected a delivery: %s", exc)
            return web.Response(status=401, text=f"{exc}\n")
        try:
            envelope = json.loads(body)
        except ValueError:
            return web.Response(status=400, text="body is not JSON\n")
        if not isinstance(envelope, dict) or envelope.get("id") != webhook_id:
            return web.Response(status=400, text="body is not the envelope of webhook-id\n")
        delivery = ReceivedDelivery(
            webhook_id=webhook_id,
            timestamp=int(request.headers["webhook-timestamp"]),
            envelope=envelope,
            repeat=webhook_id in self.unique,
        )
        self.accepted.append(delivery)
        if not delivery.repeat:
            self.unique[webhook_id] = delivery
            if self._store is not None:
                with self._store.open("ab") as handle:
                    handle.write(body + b"\n")
            self.arrived.set()
        return web.Response(status=204)


@asynccontextmanager
async def serve(
    receiver: CrmReceiver, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Run ``receiver`` on ``host:port`` (0: any free port); yields its URL."""
    runner = web.AppRunner(receiver.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", ())
    bound_port = sockets[0].getsockname()[1] if sockets else port
    try:
        yield f"http://{host}:{bound_port}/webhooks"
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="reference CRM webhook receiver")
    parser.add_argument("--secret", required=True, action="append", help="whsec_… (repeatable)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8088)
    parser.add_argument("--store", type=Path, default=None, help="append deliveries here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    receiver = CrmReceiver([WebhookSecret.parse(s) for s in args.secret], store=args.store)
    logger.info("receiving webhooks on http://%s:%d/", args.host, args.port)
    web.run_app(receiver.app(), host=args.host, port=args.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
