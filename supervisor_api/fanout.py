"""Event stream fan-out: one bus subscription and one writer per distinct filter.

Clients that ask for the same events (typically every supervisor screen on the whole stream)
share one bus subscription, one filter evaluation per event and one task. That task writes each
event's WebSocket frame to every client of the group in one synchronous pass: the frame is built
once per event, because a server's frames are unmasked (RFC 6455 §5.1) and so are the same bytes
for every client, and writing to a socket whose kernel buffer has room does not block. Per
client there is only what differs: where its stream starts (resume), what it holds until its
handshake is done, and how many of the frames written the kernel has not taken yet (the
slow-client bound).

The frames go to the request's transport (``web.BaseRequest.transport``, public API) rather
than through ``WebSocketResponse.send_frame``, which would cost a coroutine per client and event.
That is safe to mix with aiohttp's own writes (hello, heartbeats, pings, close) because without
compression aiohttp writes each frame with one synchronous ``transport.write`` too, so frames
never interleave mid-frame; and nothing is written once aiohttp has sent its Close frame
(RFC 6455 §5.5.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import struct
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from aiohttp import WSCloseCode, web

from cxos.bus import (
    EventBus,
    Filter,
    OverflowPolicy,
    Published,
    SubscriberDisconnectedError,
    Subscription,
)

logger = logging.getLogger(__name__)

#: RFC 6455 §7.4.1: 1008 is a policy violation (here: the client did not keep up).
CLOSE_TOO_SLOW = WSCloseCode.POLICY_VIOLATION
_LENGTH_16 = struct.Struct("!BBH")
_LENGTH_64 = struct.Struct("!BBQ")


def text_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked text frame (RFC 6455 §5.2) carrying ``payload``."""
    # First byte: FIN set, opcode 0x1 (text). Then the payload length in 7 bits, or 126 and
    # 16 bits, or 127 and 64 bits, in network byte order; no mask key from a server.
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 1 << 16:
        return _LENGTH_16.pack(0x81, 126, size) + payload
    return _LENGTH_64.pack(0x81, 127, size) + payload


class StreamClient:
    """One WebSocket client of a fan-out group.

    Until ``go_live`` (its hello is sent) frames are held in ``held``; then they are written to
    the transport. ``unsent`` counts the frames written that are still in the transport's buffer
    (the kernel has not taken them): more than ``limit`` means the client does not keep up.
    """

    __slots__ = (
        "_unsent",
        "_written",
        "close",
        "group",
        "held",
        "held_next",
        "limit",
        "name",
        "next_seq",
        "replayed",
        "start_seq",
        "transport",
        "unsent",
        "ws",
    )

    def __init__(self, ws: web.WebSocketResponse, name: str, limit: int) -> None:
        self.ws = ws
        self.name = name
        self.limit = limit
        self.start_seq = 0
        """The first live event for this client; earlier ones came from the replay ring."""
        self.next_seq = 0
        """The first event not yet written to the transport (where a resume would start)."""
        self.transport: asyncio.Transport | None = None
        self.held: list[bytes] | None = []
        """Frames waiting for the handshake to finish; None once the client is live."""
        self.held_next = 0
        self.replayed = 0
        """How many of the held frames are replayed ones (not bound by ``limit``)."""
        self.group: FilterGroup | None = None
        self.close: tuple[int, bytes] | None = None
        """Code and reason when the server cut the client off."""
        self.unsent = 0
        self._written = 0
        # (total bytes written when the write ended, frames in that write), oldest first.
        self._unsent: deque[tuple[int, int]] = deque()

    def hold(self, frames: list[bytes], next_seq: int) -> None:
        assert self.held is not None
        if frames:
            self.held.extend(frames)
            self.held_next = next_seq

    def write(self, data: bytes, frames: int, next_seq: int) -> bool:
        """Write ``frames`` frames; False when the client has more than ``limit`` unsent."""
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError(f"{self.name}: connection lost")
        transport.write(data)
        self.next_seq = next_seq
        self._written += len(data)
        buffered = transport.get_write_buffer_size()
        if not buffered:
            if self.unsent:
                self._unsent.clear()
                self.unsent = 0
            return True
        self._unsent.append((self._written, frames))
        self.unsent += frames
        # Bytes aiohttp wrote itself (pings, heartbeats) are not counted in _written, so this
        # may count a frame as unsent a little longer than it is: the bound errs on the safe side.
        sent = self._written - buffered
        unsent = self._unsent
        while unsent and unsent[0][0] <= sent:
            self.unsent -= unsent.popleft()[1]
        return self.unsent <= self.limit


@dataclass(slots=True, eq=False)
class FilterGroup:
    """The clients sharing one filter, its bus subscription and its writer task."""

    key: Hashable
    subscription: Subscription
    clients: dict[StreamClient, None] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None


@dataclass(slots=True)
class FanOut:
    """Groups clients by filter and writes each event to all of a group's clients at once."""

    bus: EventBus
    frame: Callable[[Published], bytes]
    """The WebSocket frame of an event (cached: the same bytes for every group)."""
    on_disconnect: Callable[[str], None]
    last_sent: dict[web.WebSocketResponse, float]
    """Loop time of the last frame written to each live socket (for heartbeats)."""
    groups: dict[Hashable, FilterGroup] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _closing: set[asyncio.Task[None]] = field(default_factory=set)

    def join(
        self,
        client: StreamClient,
        key: Hashable,
        make_filter: Callable[[], Filter],
        *,
        group_buffer: int,
        resume_from: int | None,
    ) -> None:
        """Add ``client`` to the group of ``key``, first holding the events it resumes from.

        Synchronous, so that the replayed events and the live ones join with nothing lost or
        repeated. Raises ``ReplayUnavailableError`` when ``resume_from`` is gone from the ring.
        """
        held: list[Published] = []
        client.start_seq = client.next_seq = client.held_next = self.bus.next_seq
        if resume_from is not None:
            # A filter of its own for the replay: queue and agent filters learn calls as they
            # go, and the group's has already seen the live events, not these.
            replay_filter = make_filter()
            held = [p for p in self.bus.replay_from(resume_from) if replay_filter(p)]
            client.next_seq = resume_from
        if held:
            client.hold([self.frame(p) for p in held], held[-1].seq + 1)
            client.replayed = len(held)
        group = self.groups.get(key)
        if group is None:
            subscription = self.bus.subscribe(
                f"websocket-group-{next(self._ids)}",
                # A burst this large reaching the group before its writer runs would have
                # overflowed each client's queue too: the whole group is cut off.
                maxsize=group_buffer,
                filter=make_filter(),
                overflow_policy=OverflowPolicy.DISCONNECT,
            )
            group = FilterGroup(key, subscription)
            group.task = asyncio.create_task(self._write_events(group), name="websocket-fanout")
            self.groups[key] = group
        group.clients[client] = None
        client.group = group

    def go_live(self, client: StreamClient, transport: asyncio.Transport) -> bool:
        """Write what ``client`` holds and from now on write its events as they come.

        False when it was cut off while its handshake went on: the caller closes it with
        ``client.close``.
        """
        client.transport = transport
        held = client.held
        client.held = None
        if client.close is not None:
            return False
        try:
            if held and not client.write(b"".join(held), len(held), client.held_next):
                self._too_slow(client)
        except (ConnectionError, RuntimeError):
            self._lost(client)
        return True

    def leave(self, client: StreamClient) -> None:
        group = client.group
        if group is None:
            return
        client.group = None
        group.clients.pop(client, None)
        if not group.clients and self.groups.get(group.key) is group:
            # Nobody left: stop the subscription rather than filter events for no one.
            del self.groups[group.key]
            # Ends the writer's iteration; it finds no client to close.
            group.subscription.close("no client left")

    async def _write_events(self, group: FilterGroup) -> None:
        subscription = group.subscription
        try:
            async for first in subscription:
                batch = [first]
                while (more := subscription.get_nowait()) is not None:
                    batch.append(more)
                self._deliver(group, batch)
        except SubscriberDisconnectedError:
            logger.info("event stream group %s too slow; its clients are disconnected", group.key)
            self._end_group(group, "too_slow")
            return
        finally:
            subscription.close("writer stopped")
        self._end_group(group, "bus_closed")

    def _deliver(self, group: FilterGroup, batch: list[Published]) -> None:
        frames = [self.frame(p) for p in batch]
        # One write per client per batch: when the writer's turn comes late, the events that
        # queued up meanwhile leave in one system call.
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        first_seq = batch[0].seq
        next_seq = batch[-1].seq + 1
        last_sent = self.last_sent
        now = asyncio.get_running_loop().time()
        for client in tuple(group.clients):
            if client.held is not None:
                client.hold(
                    [f for p, f in zip(batch, frames, strict=True) if p.seq >= client.start_seq],
                    next_seq,
                )
                if len(client.held) - client.replayed > client.limit:
                    self._too_slow(client)
                continue
            if client.ws.closed:
                self.leave(client)  # closing: its handler counts it when the socket is done
                continue
            try:
                if client.start_seq > first_seq:
                    mine = [
                        f for p, f in zip(batch, frames, strict=True) if p.seq >= client.start_seq
                    ]
                    if not mine:
                        continue
                    ok = client.write(b"".join(mine), len(mine), next_seq)
                else:
                    ok = client.write(data, len(frames), next_seq)
            except (ConnectionError, RuntimeError):
                self._lost(client)
                continue
            if ok:
                last_sent[client.ws] = now
            else:
                self._too_slow(client)

    def _lost(self, client: StreamClient) -> None:
        self.leave(client)
        client.close = (WSCloseCode.ABNORMAL_CLOSURE, b"connection lost")
        self.on_disconnect("connection_lost")

    def _too_slow(self, client: StreamClient) -> None:
        logger.info("event stream client %s too slow; disconnected", client.name)
        message = f"queue full: resume_from={client.next_seq}"
        self._close(client, "too_slow", CLOSE_TOO_SLOW, message.encode())

    def _end_group(self, group: FilterGroup, reason: str) -> None:
        if self.groups.get(group.key) is group:
            del self.groups[group.key]
        for client in tuple(group.clients):
            if reason == "too_slow":
                self._too_slow(client)
            else:
                self._close(client, reason, WSCloseCode.GOING_AWAY, b"server shutting down")

    def _close(self, client: StreamClient, reason: str, code: int, message: bytes) -> None:
        self.leave(client)
        client.close = (code, message)
        self.on_disconnect(reason)
        if client.held is not None:
            return  # the handler closes it once the handshake is done
        task = asyncio.create_task(_close(client.ws, code, message))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


async def _close(ws: web.WebSocketResponse, code: int, message: bytes) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.close(code=code, message=message)
