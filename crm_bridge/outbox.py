"""The webhook outbox in PostgreSQL: subscriptions, claiming due deliveries, recording results.

Deliveries are enqueued by the database itself. Migration ``0003_webhooks.sql`` puts a
statement-level trigger on ``events``: every statement that inserts events also inserts one
``webhook_deliveries`` row per (new event, active endpoint subscribed to its type), in the same
transaction. So the outbox is exactly as durable as the event log, needs no second writer, and
an event replayed from the spool (skipped by ``ON CONFLICT DO NOTHING``) is not enqueued twice.
This module keeps the ``webhook_endpoints`` table in step with ``crm.yaml`` so the trigger
knows who subscribes to what.

Ordering: deliveries of one lane (``ordering_key``: the call, else the agent, else the node) are
made one at a time in ``id`` order, which is publication order. ``claim`` only hands out the
oldest pending delivery of each lane, and only when no request for that lane is in flight (the
in-flight delivery is still pending, so it blocks its successors). Claims are leases: a worker
that dies lets them expire and another node, or the restarted one, takes over; the receiver
then sees the same ``webhook-id`` again (at least once).
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from config.crm import WebhookEndpoint
from cxos.envelope import ENVELOPE_KEYS, JsonValue, encode_json
from cxos.storage.database import Pool, Record

logger = logging.getLogger(__name__)


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    """Waiting for its (next) attempt."""
    DELIVERED = "delivered"
    """The endpoint answered 2xx (the row moves to ``webhook_delivered``)."""
    DEAD = "dead"
    """Attempts used up (or the event is gone): a dead letter until replayed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimedDelivery:
    """A delivery this worker now holds the lease on."""

    id: int
    endpoint: str
    event_id: str
    """The envelope ``id``; sent as ``webhook-id`` on every attempt."""
    event_type: str
    ordering_key: str
    attempts: int
    """Attempts already made before this one."""
    body: bytes | None
    """The envelope as JSON, or None when the event is no longer stored."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryResult:
    """What one attempt came to."""

    id: int
    state: DeliveryState
    retry_in: float = 0.0
    """Seconds until the next attempt (``pending`` only)."""
    status: int | None = None
    """HTTP status received, if any."""
    error: str | None = None
    """Why the attempt failed (timeout, connection refused, status …)."""


_UPSERT_ENDPOINT = """
INSERT INTO webhook_endpoints (name, url, event_types, active, updated_at)
VALUES ($1, $2, $3::text[], true, now())
ON CONFLICT (name) DO UPDATE
SET url = EXCLUDED.url, event_types = EXCLUDED.event_types, active = true, updated_at = now()
WHERE (webhook_endpoints.url, webhook_endpoints.event_types, webhook_endpoints.active)
      IS DISTINCT FROM (EXCLUDED.url, EXCLUDED.event_types, true)
"""

_DEACTIVATE_OTHERS = """
UPDATE webhook_endpoints SET active = false, updated_at = now()
WHERE active AND NOT (name = ANY($1::text[]))
RETURNING name
"""

# The head of each lane that is due and not leased. The anti-join sees leased rows too (they
# are still pending), so a lane with a request in flight offers nothing more.
_CLAIM = """
WITH due AS (
    SELECT d.id
    FROM webhook_deliveries AS d
    WHERE d.endpoint = $1
      AND d.state = 'pending'
      AND d.next_attempt_at <= now()
      AND (d.lease_until IS NULL OR d.lease_until < now())
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries AS p
          WHERE p.endpoint = d.endpoint
            AND p.ordering_key = d.ordering_key
            AND p.state = 'pending'
            AND p.id < d.id)
    ORDER BY d.id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE webhook_deliveries AS d
SET lease_owner = $3, lease_until = now() + make_interval(secs => $4)
WHERE d.id = ANY (ARRAY(SELECT id FROM due))
RETURNING d.id, d.event_id::text AS event_id, d.event_type, d.ordering_key, d.attempts,
          (SELECT e.envelope::text FROM events AS e WHERE e.id = d.event_id) AS envelope
"""

_DELIVERED = """
WITH done AS (
    DELETE FROM webhook_deliveries AS d
    USING unnest($1::bigint[], $2::integer[]) AS u(id, status)
    WHERE d.id = u.id AND d.state = 'pending'
    RETURNING d.id, d.endpoint, d.event_id, d.event_type, d.ordering_key, d.attempts + 1,
              u.status, d.replays, d.created_at
)
INSERT INTO webhook_delivered
    (id, endpoint, event_id, event_type, ordering_key, attempts, status, replays, created_at)
SELECT * FROM done
ON CONFLICT (id) DO NOTHING
"""

# Delivered rows leave the outbox, and in the same statement the next delivery of each of their
# lanes is leased when it is due: a busy call moves on without waiting for a general claim.
# Every part of one statement sees the same snapshot, so the rows just delivered are excluded
# by id when looking for each lane's new head.
_DELIVERED_AND_NEXT = """
WITH done AS (
    DELETE FROM webhook_deliveries AS d
    USING unnest($1::bigint[], $2::integer[]) AS u(id, status)
    WHERE d.id = u.id AND d.state = 'pending'
    RETURNING d.id, d.endpoint, d.event_id, d.event_type, d.ordering_key, d.attempts + 1,
              u.status, d.replays, d.created_at
), logged AS (
    INSERT INTO webhook_delivered
        (id, endpoint, event_id, event_type, ordering_key, attempts, status, replays, created_at)
    SELECT * FROM done
    ON CONFLICT (id) DO NOTHING
), heads AS (
    SELECT DISTINCT ON (n.ordering_key) n.id, n.next_attempt_at, n.lease_until
    FROM webhook_deliveries AS n
    WHERE n.endpoint = $3
      AND n.state = 'pending'
      AND n.ordering_key IN (SELECT done.ordering_key FROM done)
      AND n.id <> ALL ($1::bigint[])
    ORDER BY n.ordering_key, n.id
)
UPDATE webhook_deliveries AS d
SET lease_owner = $4, lease_until = now() + make_interval(secs => $5)
WHERE d.id = ANY (ARRAY(
          SELECT heads.id FROM heads
          WHERE heads.next_attempt_at <= now()
            AND (heads.lease_until IS NULL OR heads.lease_until < now())
          ORDER BY heads.id
          LIMIT $6))
  AND d.state = 'pending'
  AND (d.lease_until IS NULL OR d.lease_until < now())
RETURNING d.id, d.event_id::text AS event_id, d.event_type, d.ordering_key, d.attempts,
          (SELECT e.envelope::text FROM events AS e WHERE e.id = d.event_id) AS envelope
"""

_FAILED = """
UPDATE webhook_deliveries AS d
SET state = u.state,
    attempts = d.attempts + 1,
    next_attempt_at = CASE WHEN u.state = 'pending'
                           THEN now() + make_interval(secs => u.retry_in)
                           ELSE d.next_attempt_at END,
    dead_at = CASE WHEN u.state = 'dead' THEN now() END,
    last_status = u.status,
    last_error = u.error,
    lease_owner = NULL,
    lease_until = NULL
FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::integer[], $5::text[])
     AS u(id, state, retry_in, status, error)
WHERE d.id = u.id AND d.state = 'pending'
"""

_RELEASE = """
UPDATE webhook_deliveries SET lease_owner = NULL, lease_until = NULL
WHERE id = ANY($1::bigint[]) AND state = 'pending'
"""

_RELEASE_OWNER = """
UPDATE webhook_deliveries SET lease_owner = NULL, lease_until = NULL
WHERE lease_owner = $1 AND state = 'pending'
"""

_COUNTS = """
SELECT endpoint, state, count(*) AS n FROM webhook_deliveries GROUP BY endpoint, state
UNION ALL
SELECT endpoint, 'delivered', count(*) FROM webhook_delivered GROUP BY endpoint
"""


def render_body(envelope_text: str) -> bytes:
    """The webhook body: the stored envelope as compact JSON, its keys in envelope order.

    ``jsonb`` keeps no key order, so the top-level keys are put back in the documented order;
    the same stored event always renders to the same bytes.
    """
    envelope = json.loads(envelope_text)
    ordered: dict[str, JsonValue] = {key: envelope[key] for key in ENVELOPE_KEYS if key in envelope}
    for key, value in envelope.items():
        ordered.setdefault(key, value)
    return encode_json(ordered)


def _claimed(endpoint: str, records: Sequence[Record]) -> list[ClaimedDelivery]:
    claimed = []
    for record in records:
        envelope = record["envelope"]
        claimed.append(
            ClaimedDelivery(
                id=int(record["id"]),
                endpoint=endpoint,
                event_id=str(record["event_id"]),
                event_type=str(record["event_type"]),
                ordering_key=str(record["ordering_key"]),
                attempts=int(record["attempts"]),
                body=render_body(envelope) if envelope is not None else None,
            )
        )
    # UPDATE … RETURNING comes back in no particular order; lanes start oldest first.
    claimed.sort(key=lambda delivery: delivery.id)
    return claimed


class Outbox:
    """The outbox tables, as the delivery workers and the service use them."""

    def __init__(self, pool: Pool, *, owner: str) -> None:
        self._pool = pool
        self.owner = owner
        """Written into leases: the node's name, so its restart can take its leases back."""

    async def sync_endpoints(self, endpoints: Sequence[WebhookEndpoint]) -> None:
        """Make ``webhook_endpoints`` match the configuration (others become inactive)."""
        async with self._pool.acquire() as connection, connection.transaction():
            for endpoint in endpoints:
                await connection.execute(
                    _UPSERT_ENDPOINT, endpoint.name, endpoint.url, list(endpoint.events)
                )
            removed = await connection.fetch(_DEACTIVATE_OTHERS, [e.name for e in endpoints])
        for record in removed:
            logger.warning(
                "webhook endpoint %r is no longer configured: its pending deliveries wait "
                "until it is configured again",
                record["name"],
            )

    async def claim(self, endpoint: str, limit: int, lease: float) -> list[ClaimedDelivery]:
        """Lease up to ``limit`` deliveries due now, at most one per lane, oldest first."""
        if limit <= 0:
            return []
        async with self._pool.acquire() as connection:
            records = await connection.fetch(_CLAIM, endpoint, limit, self.owner, lease)
        return _claimed(endpoint, records)

    async def complete(
        self,
        results: Sequence[DeliveryResult],
        *,
        next_for: str | None = None,
        next_limit: int = 0,
        lease: float = 0,
    ) -> list[ClaimedDelivery]:
        """Record the outcome of attempts, releasing their leases (one transaction).

        With ``next_for`` (the endpoint), also lease the next delivery of lanes that were just
        delivered, when it is due, and return those: at most ``next_limit``, one per lane.
        """
        if not results:
            return []
        delivered = [r for r in results if r.state is DeliveryState.DELIVERED]
        failed = [r for r in results if r.state is not DeliveryState.DELIVERED]
        successors: list[ClaimedDelivery] = []
        async with self._pool.acquire() as connection, connection.transaction():
            if failed:
                await connection.execute(
                    _FAILED,
                    [r.id for r in failed],
                    [r.state.value for r in failed],
                    [r.retry_in for r in failed],
                    [r.status for r in failed],
                    [r.error for r in failed],
                )
            if delivered and next_for is not None and next_limit > 0:
                records = await connection.fetch(
                    _DELIVERED_AND_NEXT,
                    [r.id for r in delivered],
                    [r.status or 200 for r in delivered],
                    next_for,
                    self.owner,
                    lease,
                    next_limit,
                )
                successors = _claimed(next_for, records)
            elif delivered:
                await connection.execute(
                    _DELIVERED, [r.id for r in delivered], [r.status or 200 for r in delivered]
                )
        return successors

    async def release(self, ids: Sequence[int]) -> None:
        """Give leases back without an attempt (stopping): the deliveries are due again."""
        if not ids:
            return
        async with self._pool.acquire() as connection:
            await connection.execute(_RELEASE, list(ids))

    async def release_own_leases(self) -> int:
        """At start-up: leases this node held when it stopped or died are void."""
        async with self._pool.acquire() as connection:
            status = await connection.execute(_RELEASE_OWNER, self.owner)
        released = int(status.rsplit(" ", 1)[-1]) if status.startswith("UPDATE") else 0
        if released:
            logger.info("took back %d webhook deliveries leased before a restart", released)
        return released

    async def counts(self) -> dict[str, dict[str, int]]:
        """Deliveries per endpoint and state (``delivered`` counts the whole delivery log)."""
        async with self._pool.acquire() as connection:
            records = await connection.fetch(_COUNTS)
        counts: dict[str, dict[str, int]] = {}
        for record in records:
            counts.setdefault(str(record["endpoint"]), {})[str(record["state"])] = int(record["n"])
        return counts
