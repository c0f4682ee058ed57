"""``GET /api/events``: the live event stream over a WebSocket (RFC 6455).

Each client gets its own bus subscription with a bounded queue and the ``disconnect`` overflow
policy: publishing never waits for a client, and a client that cannot keep up is closed with
code 1008 and a reason saying where to resume. Frames are JSON text: event frames are the event
envelopes (docs/events.md); control frames have a ``control`` key (``hello``, ``heartbeat``,
``error``). A reconnecting client passes ``resume_from`` (its last ``seq`` + 1) and receives the
missed events, then the live stream, with nothing lost or repeated in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, web

from config.api import Role, StreamSettings
from cxos.bus import (
    EventBus,
    EventFilter,
    OverflowPolicy,
    Published,
    ReplayUnavailableError,
    SubscriberDisconnectedError,
    Subscription,
)
from cxos.envelope import format_time, to_json
from supervisor_api.auth import PRINCIPAL
from supervisor_api.errors import ApiError, bad_input

logger = logging.getLogger(__name__)

SUBPROTOCOL = "cxos.events.v1"
#: Calls a queue/agent filter remembers so that the calls' other events follow (bounded).
TRACKED_CALLS = 10_000
#: RFC 6455 §7.4.1: 1008 is a policy violation (here: the client did not keep up).
CLOSE_TOO_SLOW = WSCloseCode.POLICY_VIOLATION


class EnvelopeCache:
    """JSON text of recent envelopes, so N clients cost one encoding per event, not N."""

    __slots__ = ("_node", "_size", "_texts")

    def __init__(self, node: str, size: int = 4096) -> None:
        self._node = node
        self._size = size
        self._texts: OrderedDict[int, str] = OrderedDict()

    def text(self, published: Published) -> str:
        text = self._texts.get(published.seq)
        if text is None:
            text = to_json(published, self._node).decode()
            self._texts[published.seq] = text
            if len(self._texts) > self._size:
                self._texts.popitem(last=False)
        return text


class StreamFilter:
    """Which events one client wants: by type, call, queue and/or agent.

    A queue (or agent) filter follows the calls it has seen in that queue (or with that agent),
    so a client watching ``sales`` also receives those calls' ``call.*`` events, which carry no
    queue. Tracking runs before the type filter so it is complete whatever types are chosen.
    """

    __slots__ = ("_calls", "agent_id", "call_id", "queue_id", "types")

    def __init__(
        self,
        *,
        types: EventFilter | None = None,
        queue_id: str | None = None,
        agent_id: str | None = None,
        call_id: str | None = None,
    ) -> None:
        self.types = types
        self.queue_id = queue_id
        self.agent_id = agent_id
        self.call_id = call_id
        self._calls: OrderedDict[str, None] = OrderedDict()

    def _follows(self, published: Published, key: str, wanted: str) -> bool:
        call_id = published.call_id
        if getattr(published.event, key, None) == wanted:
            if call_id is not None:
                self._calls[call_id] = None
                if len(self._calls) > TRACKED_CALLS:
                    self._calls.popitem(last=False)
            return True
        if call_id is not None and call_id in self._calls:
            if published.event.TYPE == "call.ended":
                del self._calls[call_id]
            return True
        return False

    def __call__(self, published: Published) -> bool:
        if self.call_id is not None and published.call_id != self.call_id:
            return False
        if self.queue_id is not None and not self._follows(published, "queue_id", self.queue_id):
            return False
        if self.agent_id is not None and not self._follows(published, "agent_id", self.agent_id):
            return False
        return self.types is None or self.types(published)


@dataclass(slots=True)
class StreamHub:
    """The event stream's shared parts: the bus, the encoder cache and the open sockets."""

    bus: EventBus
    node: str
    settings: Callable[[], StreamSettings]
    clock: Callable[[], float]
    on_disconnect: Callable[[str], None] = lambda reason: None
    cache: EnvelopeCache = field(init=False)
    #: Open sockets → loop time of the last frame sent (for heartbeats).
    sockets: dict[web.WebSocketResponse, float] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.cache = EnvelopeCache(self.node)

    async def close_all(self) -> None:
        for ws in tuple(self.sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")

    async def send_heartbeats(self) -> None:
        """Send a heartbeat frame on every stream idle for ``heartbeat_seconds``; runs forever.

        One task for all clients rather than a timer per client and event: aiohttp allows
        sending from another task than the one reading the socket.
        """
        loop = asyncio.get_running_loop()
        while True:
            interval = self.settings().heartbeat_seconds
            await asyncio.sleep(interval / 4)
            now = loop.time()
            idle = [ws for ws, last in self.sockets.items() if now - last >= interval]
            if not idle:
                continue
            frame = _control(
                "heartbeat", next_seq=self.bus.next_seq, time=format_time(self.clock())
            )
            for ws in idle:
                if ws.closed or ws not in self.sockets:
                    continue
                self.sockets[ws] = now
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_str(frame)


def _parse_query(request: web.Request) -> tuple[StreamFilter, int | None]:
    query = request.query
    for name in query:
        if name not in {"types", "queue_id", "agent_id", "call_id", "resume_from"}:
            raise bad_input(f"query.{name}", "unknown parameter")
    types: EventFilter | None = None
    if "types" in query:
        patterns = frozenset(p.strip() for p in query["types"].split(",") if p.strip())
        try:
            types = EventFilter(types=patterns) if patterns else None
        except ValueError as exc:
            raise bad_input("query.types", str(exc)) from None
    resume_from: int | None = None
    if "resume_from" in query:
        raw = query["resume_from"]
        if not raw.isdigit() or int(raw) < 1:
            raise bad_input("query.resume_from", "must be an integer >= 1")
        resume_from = int(raw)
    ids = {}
    for name in ("queue_id", "agent_id", "call_id"):
        value = query.get(name)
        if value is not None and not value:
            raise bad_input(f"query.{name}", "must not be empty")
        ids[name] = value
    principal = request[PRINCIPAL]
    if principal.role is Role.AGENT:
        # An agent token sees only its own agent's events.
        if ids["agent_id"] not in {None, principal.agent_id}:
            raise ApiError(403, "an agent token can only follow its own agent")
        ids["agent_id"] = principal.agent_id
    stream_filter = StreamFilter(
        types=types, queue_id=ids["queue_id"], agent_id=ids["agent_id"], call_id=ids["call_id"]
    )
    return stream_filter, resume_from


def _control(kind: str, **fields: Any) -> str:
    return json.dumps({"control": kind, **fields}, separators=(",", ":"))


async def events_handler(request: web.Request, hub: StreamHub) -> web.StreamResponse:
    stream_filter, resume_from = _parse_query(request)
    settings = hub.settings()
    if len(hub.sockets) >= settings.max_clients:
        raise ApiError(503, "too many event stream clients", headers={"Retry-After": "5"})
    # No permessage-deflate (RFC 7692): compressing every frame once per client costs more
    # CPU than the bandwidth is worth on a LAN, and the same event goes to many clients.
    ws = web.WebSocketResponse(
        protocols=(SUBPROTOCOL,),
        heartbeat=settings.heartbeat_seconds,
        max_msg_size=4096,
        compress=False,
    )
    if not ws.can_prepare(request).ok:
        raise ApiError(
            426,
            "this endpoint speaks WebSocket only",
            code="upgrade_required",
            headers={"Upgrade": "websocket", "Connection": "Upgrade"},
        )
    name = f"websocket-{next(hub._ids)}-{request[PRINCIPAL].name}"
    replay_error: ReplayUnavailableError | None = None
    try:
        # Subscribing before the handshake: events published meanwhile are queued, not lost.
        subscription = hub.bus.subscribe(
            name,
            maxsize=settings.client_buffer,
            filter=stream_filter,
            overflow_policy=OverflowPolicy.DISCONNECT,
            resume_from=resume_from,
        )
    except ReplayUnavailableError as exc:
        replay_error = exc
    await ws.prepare(request)
    hub.sockets[ws] = asyncio.get_running_loop().time()
    try:
        if replay_error is not None:
            await ws.send_str(
                _control(
                    "error",
                    error="replay_unavailable",
                    message=replay_error.reason,
                    oldest_seq=replay_error.oldest,
                    next_seq=replay_error.next_seq,
                )
            )
            await ws.close(code=CLOSE_TOO_SLOW, message=b"replay unavailable")
            hub.on_disconnect("replay_unavailable")
            return ws
        await ws.send_str(
            _control("hello", node=hub.node, next_seq=hub.bus.next_seq, resume_from=resume_from)
        )
        sender = asyncio.create_task(_send_events(ws, subscription, hub))
        try:
            async for _message in ws:
                pass  # clients send nothing meaningful; reading handles pings and the close
        finally:
            if not sender.done():
                sender.cancel()
                hub.on_disconnect("client_closed")
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            subscription.close("client closed")
    finally:
        hub.sockets.pop(ws, None)
    return ws


async def _send_events(
    ws: web.WebSocketResponse, subscription: Subscription, hub: StreamHub
) -> None:
    last_seq = 0
    sockets = hub.sockets
    loop = asyncio.get_running_loop()
    try:
        async for published in subscription:
            await ws.send_str(hub.cache.text(published))
            sockets[ws] = loop.time()
            last_seq = published.seq
    except SubscriberDisconnectedError:
        logger.info("event stream client %s too slow; disconnected", subscription.name)
        message = f"queue full: resume_from={last_seq + 1}" if last_seq else "queue full"
        hub.on_disconnect("too_slow")
        await ws.close(code=CLOSE_TOO_SLOW, message=message.encode())
        return
    except (ConnectionError, RuntimeError):
        hub.on_disconnect("connection_lost")
        return
    hub.on_disconnect("bus_closed")
    await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
