"""The delivery worker: signed webhook POSTs from the outbox, at least once, in order per lane.

One worker per endpoint. Its loop:

1. record the results of finished attempts (one statement);
2. take as many circuit-breaker permits as it has free request slots (none while the breaker
   is open, one probe when half-open) and lease that many due deliveries from the outbox, at
   most one per lane (``crm_bridge.outbox``);
3. POST each, signed per Standard Webhooks (``crm_bridge.signing``) with the event id as
   ``webhook-id`` on every attempt, so a receiver can drop repeats, over the endpoint's
   kept-alive connections (``crm_bridge.webhook_http``);
4. sleep until an attempt finishes or ``poll_interval`` passes.

What an attempt comes to is decided by ``decide`` (pure): 2xx is delivered; anything else is
retried after ``RetryPolicy``'s exponential backoff with jitter, never sooner than the
receiver's ``Retry-After`` (RFC 9110 §10.2.3), and becomes a dead letter once the attempts are
used up. Only failures that say the endpoint itself is unwell (no answer, 5xx, 408, 429) count
against the breaker; a 4xx answer shows the endpoint is up and rejects this one message.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from config.crm import DeliverySettings, WebhookEndpoint
from crm_bridge.backoff import (
    BreakerState,
    CircuitBreaker,
    Permit,
    RandomSource,
    RetryPolicy,
    Transition,
)
from crm_bridge.http1 import HttpProtocolError
from crm_bridge.outbox import ClaimedDelivery, DeliveryResult, DeliveryState, Outbox
from crm_bridge.signing import WebhookSecret, signature_headers
from crm_bridge.webhook_http import WebhookHttpClient

logger = logging.getLogger(__name__)

USER_AGENT = "CXOS-Webhooks/1"

#: Statuses that mean "the endpoint is overloaded or unwell" although it answered.
_UNWELL_STATUSES = frozenset({408, 429})


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """What one HTTP attempt got: a status, or an error with no status."""

    status: int | None = None
    error: str | None = None
    retry_after: float | None = None
    """Seconds the receiver asked us to wait (``Retry-After``), if it did."""

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def endpoint_unwell(self) -> bool:
        """Counts against the circuit breaker."""
        if self.status is None:
            return True
        return self.status >= 500 or self.status in _UNWELL_STATUSES


def decide(
    delivery: ClaimedDelivery, attempt: Attempt, policy: RetryPolicy, rng: RandomSource
) -> DeliveryResult:
    """The outcome of ``attempt`` for ``delivery``: delivered, retry later, or dead letter."""
    if attempt.succeeded:
        return DeliveryResult(id=delivery.id, state=DeliveryState.DELIVERED, status=attempt.status)
    error = attempt.error or f"HTTP {attempt.status}"
    number = delivery.attempts + 1
    wait = policy.delay(number, rng, attempt.retry_after)
    if wait is None:
        return DeliveryResult(
            id=delivery.id,
            state=DeliveryState.DEAD,
            status=attempt.status,
            error=f"{error} (attempt {number} of {policy.max_attempts})",
        )
    return DeliveryResult(
        id=delivery.id,
        state=DeliveryState.PENDING,
        retry_in=wait,
        status=attempt.status,
        error=error,
    )


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from ``Retry-After`` (RFC 9110 §10.2.3: delay-seconds or an HTTP-date);
    None when absent or unreadable. ``now`` is wall-clock Unix seconds."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def policy_of(endpoint: WebhookEndpoint) -> RetryPolicy:
    retry = endpoint.retry
    return RetryPolicy(
        initial_delay=retry.initial_delay,
        multiplier=retry.multiplier,
        max_delay=retry.max_delay,
        jitter=retry.jitter,
        max_attempts=retry.max_attempts,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerStats:
    endpoint: str
    delivered: int
    """Deliveries acknowledged with 2xx."""
    failed_attempts: int
    dead_letters: int
    in_flight: int
    breaker: str
    """The circuit breaker's state: closed, open or half_open."""
    database_ok: bool


class DeliveryWorker:
    """Delivers one endpoint's outbox; ``start()`` runs it, ``stop(grace)`` ends it."""

    def __init__(
        self,
        endpoint: WebhookEndpoint,
        outbox: Outbox,
        *,
        client: WebhookHttpClient | None = None,
        settings: DeliverySettings | None = None,
        rng: RandomSource | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.endpoint = endpoint
        self._outbox = outbox
        self._client = client or WebhookHttpClient(endpoint.url, max_idle=endpoint.max_in_flight)
        # Sent with every request; the signature headers come first.
        self._fixed_headers = (("content-type", "application/json"), ("user-agent", USER_AGENT))
        self._settings = settings or DeliverySettings()
        self._rng: RandomSource = rng or random.Random()
        self._wall_clock = wall_clock
        self._policy = policy_of(endpoint)
        self._secrets = [WebhookSecret.parse(endpoint.secret)] + [
            WebhookSecret.parse(text) for text in endpoint.previous_secrets
        ]
        breaker = endpoint.circuit_breaker
        self.breaker = CircuitBreaker(
            endpoint.name,
            failure_threshold=breaker.failure_threshold,
            cooldown=breaker.cooldown,
            max_cooldown=breaker.max_cooldown,
        )
        self.transitions: deque[Transition] = deque(maxlen=64)
        """The breaker's latest state changes, oldest first (for logs, the API and tests)."""
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._results: list[DeliveryResult] = []
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._database_ok = True
        self._next_claim = 0.0
        self._claiming: asyncio.Task[None] | None = None
        self._reserved = 0
        """Request slots held by the claim in progress."""
        """Loop time before which no general claim is made (lanes in motion go on meanwhile)."""
        self._delivered = self._failed = self._dead = 0

    # Life cycle --------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"delivery worker {self.endpoint.name!r} already started")
        self._task = asyncio.create_task(self._run(), name=f"webhooks-{self.endpoint.name}")

    def wake(self) -> None:
        """Look at the outbox now (e.g. after dead letters were replayed)."""
        self._wake.set()

    async def stop(self, grace: float) -> None:
        """Let requests in flight finish for up to ``grace`` seconds, record what finished, and
        give the leases of the rest back so they are sent again at the next start."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await asyncio.wait((self._task,))
        pending = list(self._in_flight.values())
        if pending:
            await asyncio.wait(pending, timeout=max(grace, 0.0))
        unfinished = list(self._in_flight)
        for task in self._in_flight.values():
            task.cancel()
        if self._in_flight:
            await asyncio.wait(list(self._in_flight.values()))
        try:
            await self._flush()
            await self._outbox.release(unfinished)
        except Exception:
            # Their leases expire by themselves; the next start takes them back anyway.
            logger.warning("webhooks %r: could not record the last results", self.endpoint.name)
        await self._client.close()

    def stats(self) -> WorkerStats:
        return WorkerStats(
            endpoint=self.endpoint.name,
            delivered=self._delivered,
            failed_attempts=self._failed,
            dead_letters=self._dead,
            in_flight=len(self._in_flight),
            breaker=self.breaker.state.value,
            database_ok=self._database_ok,
        )

    # Loop --------------------------------------------------------------------------------------

    async def _run(self) -> None:
        retry_delay = 0.05
        while not self._stopping:
            self._wake.clear()
            try:
                await self._flush()
            except Exception as exc:
                self._database_failed(exc)
                await self._sleep(retry_delay)
                retry_delay = min(retry_delay * 2, 2.0)
                continue
            self._database_recovered()
            retry_delay = 0.05
            self._claim_in_background()
            if not self._results:
                await self._sleep(self._settings.poll_interval)
        if self._claiming is not None:
            await asyncio.wait((self._claiming,))

    def _database_failed(self, exc: Exception) -> None:
        if self._database_ok:
            self._database_ok = False
            logger.warning(
                "webhooks %r: outbox unavailable (%s: %s); retrying",
                self.endpoint.name,
                type(exc).__name__,
                exc,
            )

    def _database_recovered(self) -> None:
        if not self._database_ok:
            self._database_ok = True
            logger.info("webhooks %r: outbox available again", self.endpoint.name)

    async def _sleep(self, seconds: float) -> None:
        """Until ``seconds`` pass or an attempt finishes (or ``wake``/``stop``)."""
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass

    def _free_slots(self) -> int:
        return self.endpoint.max_in_flight - len(self._in_flight) - self._reserved

    def _claim_in_background(self) -> None:
        """Look for due deliveries of lanes not in motion, without holding up ``_flush``.

        The general claim scans the outbox in id order and costs more the larger the backlog,
        so it runs beside the loop that records results and moves lanes along, at most one at
        a time, and not again soon after one that found less than it asked for.
        """
        if self._claiming is not None or self._stopping:
            return
        now = asyncio.get_running_loop().time()
        self._note(self.breaker.handle_timer(now))
        if now < self._next_claim:
            return
        permits: list[Permit] = []
        free = self._free_slots()
        while len(permits) < free and (permit := self.breaker.acquire(now)) is not None:
            permits.append(permit)
        if not permits:
            return
        self._reserved = len(permits)
        self._claiming = asyncio.create_task(self._claim(permits, now))

    async def _claim(self, permits: list[Permit], started: float) -> None:
        try:
            claimed = await self._outbox.claim(
                self.endpoint.name, len(permits), self._settings.lease
            )
        except Exception as exc:
            for permit in permits:
                self.breaker.record_cancelled(permit)
            self._database_failed(exc)
            self._next_claim = started + 1.0
        else:
            self._start(claimed, permits)
            # One that found less than it asked for has seen everything due: the next can
            # wait a little, while lanes already moving continue through ``_flush``.
            full = len(claimed) == len(permits)
            self._next_claim = (
                started if full else started + min(self._settings.poll_interval, 0.05)
            )
        finally:
            self._reserved = 0
            self._claiming = None
            self._wake.set()

    async def _flush(self) -> None:
        """Record finished attempts; lease and start the next delivery of each lane that was
        just delivered (while the breaker is closed)."""
        results, self._results = self._results, []
        if not results:
            return
        now = asyncio.get_running_loop().time()
        chainable = sum(1 for result in results if result.state is DeliveryState.DELIVERED)
        chainable = min(chainable, self._free_slots())
        permits: list[Permit] = []
        if not self._stopping and self.breaker.state is BreakerState.CLOSED:
            while len(permits) < chainable and (permit := self.breaker.acquire(now)) is not None:
                permits.append(permit)
        try:
            successors = await self._outbox.complete(
                results,
                next_for=self.endpoint.name,
                next_limit=len(permits),
                lease=self._settings.lease,
            )
        except BaseException:
            self._results[:0] = results  # kept for the next try; the leases still hold them
            for permit in permits:
                self.breaker.record_cancelled(permit)
            raise
        self._start(successors, permits)

    def _start(self, claimed: list[ClaimedDelivery], permits: list[Permit]) -> None:
        for permit in permits[len(claimed) :]:
            self.breaker.record_cancelled(permit)
        for delivery, permit in zip(claimed, permits, strict=False):
            task = asyncio.create_task(self._deliver(delivery, permit))
            self._in_flight[delivery.id] = task

    # One attempt -------------------------------------------------------------------------------

    async def _deliver(self, delivery: ClaimedDelivery, permit: Permit) -> None:
        try:
            if delivery.body is None:
                self.breaker.record_cancelled(permit)
                result = DeliveryResult(
                    id=delivery.id,
                    state=DeliveryState.DEAD,
                    error="the event is no longer in the event log",
                )
            else:
                attempt = await self._post(delivery, delivery.body)
                now = asyncio.get_running_loop().time()
                if attempt.endpoint_unwell:
                    self._note(self.breaker.record_failure(permit, now))
                else:
                    self._note(self.breaker.record_success(permit, now))
                result = decide(delivery, attempt, self._policy, self._rng)
        except asyncio.CancelledError:
            self.breaker.record_cancelled(permit)
            self._in_flight.pop(delivery.id, None)
            raise
        self._count(delivery, result)
        self._results.append(result)
        self._in_flight.pop(delivery.id, None)
        self._wake.set()

    def _note(self, transition: Transition | None) -> None:
        if transition is not None:
            self.transitions.append(transition)

    def _count(self, delivery: ClaimedDelivery, result: DeliveryResult) -> None:
        if result.state is DeliveryState.DELIVERED:
            self._delivered += 1
            return
        self._failed += 1
        if result.state is DeliveryState.DEAD:
            self._dead += 1
            logger.error(
                "webhooks %r: event %s (%s) is a dead letter: %s",
                self.endpoint.name,
                delivery.event_id,
                delivery.event_type,
                result.error,
            )
        elif logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "webhooks %r: event %s attempt %d failed (%s); next in %.1f s",
                self.endpoint.name,
                delivery.event_id,
                delivery.attempts + 1,
                result.error,
                result.retry_in,
            )

    async def _post(self, delivery: ClaimedDelivery, body: bytes) -> Attempt:
        timestamp = int(self._wall_clock())
        signed = signature_headers(self._secrets, delivery.event_id, timestamp, body)
        timeout = self.endpoint.timeout
        try:
            async with asyncio.timeout(timeout):
                # Redirects are not followed: a 3xx is a failed attempt like any other.
                response = await self._client.post((*signed.items(), *self._fixed_headers), body)
        except TimeoutError:
            return Attempt(error=f"no answer within {timeout:g} s")
        except (HttpProtocolError, OSError) as exc:
            return Attempt(error=f"{type(exc).__name__}: {exc}"[:500])
        retry_after = parse_retry_after(response.header("retry-after"), self._wall_clock())
        return Attempt(status=response.status, retry_after=retry_after)
