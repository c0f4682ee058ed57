"""``GET /api/events``: the live event stream over a WebSocket (RFC 6455).

Clients asking for the same events share one bus subscription with a bounded queue and the
``disconnect`` overflow policy, and one writer (``supervisor_api.fanout``): publishing never
waits for a client, and a client that cannot keep up is closed with code 1008 and a reason
saying where to resume. Frames are JSON text: event frames are the event envelopes
(docs/events.md); control frames have a ``control`` key (``hello``, ``heartbeat``, ``error``).
A reconnecting client passes ``resume_from`` (its last ``seq`` + 1) and receives the missed
events, then the live stream, with nothing lost or repeated in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, web

from config.api import Role, StreamSettings
from cxos.bus import EventBus, EventFilter, Published, ReplayUnavailableError
from cxos.envelope import format_time, to_json
from supervisor_api.auth import PRINCIPAL
from supervisor_api.errors import ApiError, bad_input
from supervisor_api.fanout import CLOSE_TOO_SLOW, FanOut, StreamClient, text_frame

logger = logging.getLogger(__name__)

SUBPROTOCOL = "cxos.events.v1"
#: Calls a queue/agent filter remembers so that the calls' other events follow (bounded).
TRACKED_CALLS = 10_000
__all__ = ["CLOSE_TOO_SLOW", "EnvelopeCache", "StreamFilter", "StreamHub", "events_handler"]


class EnvelopeCache:
    """WebSocket frames of recent envelopes, so N clients and any number of filters cost one
    serialisation and one frame per event, not N."""

    __slots__ = ("_frames", "_node", "_size")

    def __init__(self, node: str, size: int = 4096) -> None:
        self._node = node
        self._size = size
        self._frames: OrderedDict[int, bytes] = OrderedDict()

    def frame(self, published: Published) -> bytes:
        frame = self._frames.get(published.seq)
        if frame is None:
            frame = text_frame(to_json(published, self._node))
            self._frames[published.seq] = frame
            if len(self._frames) > self._size:
                self._frames.popitem(last=False)
        return frame


class StreamFilter:
    """Which events one client wants: by type, call, queue and/or agent.

    A queue (or agent) filter follows the calls it has seen in that queue (or with that agent),
    so a client watching ``sales`` also receives those calls' ``call.*`` events, which carry no
    queue. Tracking runs before the type filter so it is complete whatever types are chosen.
    """

    __slots__ = ("_calls", "agent_id", "call_id", "queue_id", "types")

    @staticmethod
    def key(
        types: EventFilter | None, queue_id: str | None, agent_id: str | None, call_id: str | None
    ) -> tuple[frozenset[str], str | None, str | None, str | None]:
        """Clients whose filters have equal keys get the same events and share a subscription."""
        return (types.types if types is not None else frozenset(), queue_id, agent_id, call_id)

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
    fanout: FanOut = field(init=False)
    #: Open sockets → loop time of the last frame sent (for heartbeats).
    sockets: dict[web.WebSocketResponse, float] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.cache = EnvelopeCache(self.node)
        self.fanout = FanOut(
            bus=self.bus,
            frame=self.cache.frame,
            on_disconnect=self.on_disconnect,
            last_sent=self.sockets,
        )

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


@dataclass(frozen=True, slots=True)
class _Query:
    types: EventFilter | None
    queue_id: str | None
    agent_id: str | None
    call_id: str | None
    resume_from: int | None

    def key(self) -> Hashable:
        return StreamFilter.key(self.types, self.queue_id, self.agent_id, self.call_id)

    def make_filter(self) -> StreamFilter:
        return StreamFilter(
            types=self.types, queue_id=self.queue_id, agent_id=self.agent_id, call_id=self.call_id
        )


def _parse_query(request: web.Request) -> _Query:
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
    return _Query(
        types=types,
        queue_id=ids["queue_id"],
        agent_id=ids["agent_id"],
        call_id=ids["call_id"],
        resume_from=resume_from,
    )


def _control(kind: str, **fields: Any) -> str:
    return json.dumps({"control": kind, **fields}, separators=(",", ":"))


async def events_handler(request: web.Request, hub: StreamHub) -> web.StreamResponse:
    query = _parse_query(request)
    settings = hub.settings()
    if len(hub.sockets) >= settings.max_clients:
        raise ApiError(503, "too many event stream clients", headers={"Retry-After": "5"})
    # No permessage-deflate (RFC 7692): compressing every frame once per client costs more
    # CPU than the bandwidth is worth on a LAN, and the same frame goes to many clients.
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
    client = StreamClient(
        ws, f"websocket-{next(hub._ids)}-{request[PRINCIPAL].name}", settings.client_buffer
    )
    replay_error: ReplayUnavailableError | None = None
    try:
        # Joining before the handshake: events published meanwhile are held, not lost.
        hub.fanout.join(
            client,
            query.key(),
            query.make_filter,
            group_buffer=settings.client_buffer,
            resume_from=query.resume_from,
        )
    except ReplayUnavailableError as exc:
        replay_error = exc
    try:
        await ws.prepare(request)
        hub.sockets[ws] = asyncio.get_running_loop().time()
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
            _control(
                "hello", node=hub.node, next_seq=hub.bus.next_seq, resume_from=query.resume_from
            )
        )
        transport = request.transport
        if transport is None or not hub.fanout.go_live(client, transport):
            if client.close is not None:
                code, message = client.close
                await ws.close(code=code, message=message)
            return ws
        async for _message in ws:
            pass  # clients send nothing meaningful; reading handles pings and the close
        if client.close is None:
            hub.on_disconnect("client_closed")
    finally:
        hub.fanout.leave(client)
        hub.sockets.pop(ws, None)
    return ws
