"""Per-source protection in front of the SIP core: blocking after repeated authentication failures
and a token-bucket rate limit for INVITE and REGISTER floods. Sans-IO; time is passed in.

What a blocked source gets: nothing. Its requests are dropped without an answer, because
- answering costs a send for each attempt, and over UDP any answer can be reflected at a
  spoofed address (RFC 3261 §26.1.5, denial of service and amplification);
- scanners (svmap, svwar, svcrack) learn from every answer; silence looks like nothing listens;
- a legitimate phone that was mistyped into a block simply sees timeouts and retries later: it
  loses nothing a 403 would have given it, since a 403 would not unblock it either.

What counts as a failure is decided by the caller and should be a wrong answer to a nonce that
we issued to that very address (see `telephony.sip.digest.AuthResult`): a spoofed UDP source
never received our nonce, so it cannot get someone else's address blocked.

Rate-limited requests are dropped too: over UDP the client's transaction retransmits (RFC 3261
§17.1.1.2 Timer A, §17.1.2.2 Timer E) and gets through once its bucket has refilled, which is
the backoff we want. IPv6 sources are counted per /64 (configurable) since one host owns a whole
prefix. Every table is an LRU bounded by `max_sources`.

Configured trunks are the exception to counting per source: a carrier sends every call from a
few addresses, at rates no single phone or scanner has a reason to reach. Their INVITEs are
counted per trunk instead (`TrunkLimit`, from the trunk's configured calls per second), so that
a busy trunk is not throttled like a flood while an INVITE flood with a trunk's address forged
as its source still meets a ceiling.

Dropping silently must not mean dropping unseen: each source whose requests are dropped gives a
`FloodNotice` (taken with `take_notices`) at most once per `notice_interval`, carrying how many
were dropped since its last one, so that the I/O layer can log a flood as it happens without a
line per request.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections import OrderedDict, deque
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from telephony.sip.registrar_events import AuthenticationFailed, SourceBlocked, SourceUnblocked

__all__ = [
    "FloodNotice",
    "GuardCounters",
    "GuardSettings",
    "GuardVerdict",
    "SourceGuard",
    "TrunkLimit",
    "auth_failure_events",
]

logger = logging.getLogger(__name__)

_RATE_LIMITED_METHODS = frozenset({"INVITE", "REGISTER"})
_Entry = TypeVar("_Entry")


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardSettings:
    """Limits per source. Times in seconds; `rate` in requests per second."""

    max_failures: int = 5
    """Authentication failures within `failure_window` that get a source blocked."""
    failure_window: float = 60.0
    """Length of the sliding window in which failures are counted, seconds."""
    block_seconds: float = 600.0
    """How long a blocked source is ignored, seconds."""
    rate: float = 10.0
    """Sustained INVITE + REGISTER requests per second allowed from one source."""
    burst: int = 40
    """Requests a source may send at once before `rate` applies (bucket size)."""
    max_sources: int = 10_000
    """Sources each table remembers; the least recently seen is forgotten first."""
    ipv6_prefix: int = 64
    """IPv6 sources are grouped by this prefix length."""
    notice_interval: float = 60.0
    """Shortest time between two `FloodNotice`s about one source, seconds."""

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.burst < 1 or self.max_sources < 1:
            raise ValueError("max_failures, burst and max_sources must be at least 1")
        if (
            self.failure_window <= 0
            or self.block_seconds <= 0
            or self.rate <= 0
            or self.notice_interval <= 0
        ):
            raise ValueError(
                "failure_window, block_seconds, rate and notice_interval must be positive"
            )
        if not 1 <= self.ipv6_prefix <= 128:
            raise ValueError("ipv6_prefix must be between 1 and 128")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrunkLimit:
    """The INVITE rate of one configured trunk, counted for the trunk as a whole."""

    trunk_id: str
    calls_per_second: float
    """Sustained INVITEs per second, all the trunk's sources together."""

    def __post_init__(self) -> None:
        if self.calls_per_second <= 0:
            raise ValueError("calls_per_second must be positive")

    @property
    def burst(self) -> int:
        """INVITEs the trunk may send at once: one second's worth."""
        return max(1, math.ceil(self.calls_per_second))


class GuardVerdict(StrEnum):
    ALLOW = "allow"
    BLOCKED = "blocked"  # drop silently
    RATE_LIMITED = "rate_limited"  # drop silently


@dataclass(frozen=True, slots=True, kw_only=True)
class FloodNotice:
    """Requests from `source` are being dropped unanswered (at most one notice per source per
    `GuardSettings.notice_interval`)."""

    source: str
    """The source as counted: an IPv4 address or an IPv6 prefix."""
    verdict: GuardVerdict
    """`BLOCKED` or `RATE_LIMITED`."""
    method: str
    """The method of the request that prompted this notice."""
    dropped: int
    """Requests of this source dropped since its previous notice, this one included."""
    trunk_id: str | None = None
    """The trunk whose INVITE rate was exceeded, when the source is a trunk's."""


@dataclass(slots=True)
class _Noticed:
    at: float
    dropped: int = 0


@dataclass(slots=True)
class _Block:
    until: float
    dropped: int = 0


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


@dataclass(slots=True)
class GuardCounters:
    """Totals for metrics."""

    auth_failures: int = 0
    blocks: int = 0
    dropped_blocked: int = 0
    dropped_rate_limited: int = 0


class SourceGuard:
    """Failure counting, blocking and rate limiting per source; one per server."""

    def __init__(self, settings: GuardSettings | None = None) -> None:
        self.settings = settings or GuardSettings()
        self.counters = GuardCounters()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        # Blocks all last `block_seconds` and are added as time goes on, so this LRU is also
        # ordered by end time: the first entry is the next to end.
        self._blocked: OrderedDict[str, _Block] = OrderedDict()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._trunk_buckets: OrderedDict[str, _Bucket] = OrderedDict()
        # Source address as received → its key: every request asks, and parsing the address
        # costs more than the rest of the check. Bounded like the other tables (oldest first).
        self._keys: dict[str, str] = {}
        self._noticed: OrderedDict[str, _Noticed] = OrderedDict()
        self.notices: list[FloodNotice] = []
        """Notices not taken yet (`take_notices`)."""

    def source_key(self, address: str) -> str:
        """The unit we count: the IPv4 address, or the IPv6 /64 (an IPv4-mapped IPv6 address
        counts as its IPv4 address)."""
        keys = self._keys
        key = keys.get(address)
        if key is None:
            key = self._parse_key(address)
            if len(keys) >= self.settings.max_sources:
                del keys[next(iter(keys))]
            keys[address] = key
        return key

    def _parse_key(self, address: str) -> str:
        try:
            ip = ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            return address
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                return str(ip.ipv4_mapped)
            network = ipaddress.IPv6Network((ip, self.settings.ipv6_prefix), strict=False)
            return str(network)
        return str(ip)

    def check(
        self, address: str, method: str, now: float, *, trunk: TrunkLimit | None = None
    ) -> GuardVerdict:
        """Whether to process a request from `address`; call before parsing beyond the method.

        `trunk` is the limit of the configured trunk `address` belongs to, if any: its INVITEs
        are then counted against the trunk's rate rather than the per-source one. Blocks apply
        to every source alike.
        """
        if not self._blocked and method not in _RATE_LIMITED_METHODS:
            return GuardVerdict.ALLOW  # the common case: an ACK, BYE ... with nobody blocked
        key = self.source_key(address)
        block = self._blocked.get(key)
        if block is not None:
            if now < block.until:
                block.dropped += 1
                self.counters.dropped_blocked += 1
                self._note_drop(key, GuardVerdict.BLOCKED, method, now, None)
                return GuardVerdict.BLOCKED
            self._unblock(key, block)
        if method not in _RATE_LIMITED_METHODS:
            return GuardVerdict.ALLOW
        if trunk is not None and method == "INVITE":
            verdict = self._take_token(
                self._trunk_buckets, trunk.trunk_id, trunk.calls_per_second, trunk.burst, now
            )
        else:
            verdict = self._take_token(
                self._buckets, key, self.settings.rate, self.settings.burst, now
            )
        if verdict is GuardVerdict.RATE_LIMITED:
            self._note_drop(key, verdict, method, now, trunk.trunk_id if trunk else None)
        return verdict

    def take_notices(self) -> list[FloodNotice]:
        """The flood notices since the last call (handed over)."""
        notices = self.notices
        self.notices = []
        return notices

    def blocked_count(self, now: float) -> int:
        """Sources blocked at `now` (read for metrics)."""
        return sum(1 for block in self._blocked.values() if now < block.until)

    def _note_drop(
        self, key: str, verdict: GuardVerdict, method: str, now: float, trunk_id: str | None
    ) -> None:
        noticed = self._noticed.get(key)
        if noticed is None:
            self._noticed[key] = _Noticed(at=now)
            self._trim(self._noticed)
            dropped = 1
        else:
            noticed.dropped += 1
            if now - noticed.at < self.settings.notice_interval:
                return
            dropped = noticed.dropped
            noticed.at = now
            noticed.dropped = 0
        self.notices.append(
            FloodNotice(
                source=key, verdict=verdict, method=method, dropped=dropped, trunk_id=trunk_id
            )
        )

    def is_blocked(self, address: str, now: float) -> bool:
        block = self._blocked.get(self.source_key(address))
        return block is not None and now < block.until

    def record_failure(self, address: str, now: float) -> SourceBlocked | None:
        """Count one authentication failure; returns the event when it gets the source blocked."""
        key = self.source_key(address)
        self.counters.auth_failures += 1
        window = self._failures.pop(key, None) or deque(maxlen=self.settings.max_failures)
        window.append(now)
        while window and window[0] <= now - self.settings.failure_window:
            window.popleft()
        if len(window) < self.settings.max_failures:
            self._failures[key] = window
            self._trim(self._failures)
            return None
        self._blocked.pop(key, None)
        self._blocked[key] = _Block(until=now + self.settings.block_seconds)
        self._trim(self._blocked)
        self.counters.blocks += 1
        logger.warning(
            "security: blocking source %s for %.0f s after %d authentication failures in %.0f s",
            key,
            self.settings.block_seconds,
            len(window),
            self.settings.failure_window,
        )
        return SourceBlocked(
            source=key,
            failures=len(window),
            window_seconds=self.settings.failure_window,
            block_seconds=self.settings.block_seconds,
        )

    def next_timer(self) -> float | None:
        """When the earliest block ends."""
        for block in self._blocked.values():
            return block.until
        return None

    def expire(self, now: float) -> list[SourceUnblocked]:
        """End the blocks that are due, and forget failure windows that have slid past."""
        ended: list[SourceUnblocked] = []
        while self._blocked:
            key, block = next(iter(self._blocked.items()))
            if block.until > now:
                break
            ended.append(self._unblock(key, block))
        horizon = now - self.settings.failure_window
        stale = [key for key, window in self._failures.items() if window[-1] <= horizon]
        for key in stale:
            del self._failures[key]
        return ended

    def _unblock(self, key: str, block: _Block) -> SourceUnblocked:
        del self._blocked[key]
        logger.info("security: source %s unblocked (%d requests dropped)", key, block.dropped)
        return SourceUnblocked(source=key, dropped_requests=block.dropped)

    def _take_token(
        self,
        table: OrderedDict[str, _Bucket],
        key: str,
        rate: float,
        burst: int,
        now: float,
    ) -> GuardVerdict:
        bucket = table.pop(key, None)
        if bucket is None:
            bucket = _Bucket(tokens=float(burst), updated=now)
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(float(burst), bucket.tokens + elapsed * rate)
        bucket.updated = now
        table[key] = bucket  # most recently seen goes last
        self._trim(table)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return GuardVerdict.ALLOW
        self.counters.dropped_rate_limited += 1
        return GuardVerdict.RATE_LIMITED

    def _trim(self, table: OrderedDict[str, _Entry]) -> None:
        # Forgetting the oldest entry is the price of bounded memory: a forgotten flooder starts
        # again with a full bucket, a forgotten block ends early (the oldest ends soonest anyway).
        while len(table) > self.settings.max_sources:
            table.popitem(last=False)


def auth_failure_events(
    guard: SourceGuard | None, source: str, username: str, method: str, now: float
) -> list[AuthenticationFailed | SourceBlocked]:
    """A wrong answer to one of our challenges (REGISTER or INVITE, agent or trunk): the
    security event, and the block it brings about when it is the source's last allowed failure.
    The user name is cut to 64 characters: it is the peer's text, not ours."""
    events: list[AuthenticationFailed | SourceBlocked] = [
        AuthenticationFailed(source_address=source, username=username[:64], method=method)
    ]
    if guard is not None and (blocked := guard.record_failure(source, now)):
        events.append(blocked)
    return events
