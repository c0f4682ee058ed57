"""The webhook outbox in PostgreSQL: subscriptions, claiming due deliveries, recording results.

Deliveries are enqueued by the database itself. Migration ``0003_webhooks.sql`` puts a
statement-level trigger on ``events``: every statement that inserts events also inserts one
``webhook_deliveries`` row per (new event, active endpoint subscribed to its type), in the same
transaction. So the outbox is exactly as durable as the event log, needs no second writer, and
an event replayed from the spool (skipped by ``ON CONFLICT DO NOTHING``) is not enqueued twice.
This module keeps the ``webhook_endpoints`` table in step with ``crm.yaml`` so the trigger
knows who subscribes to what.

Ordering: deliveries of one lane (``ordering_key``: the call, else the agent, else the node) are
made one at a time in ``id`` order, which is publication order. Migration ``0004_webhook_lanes``
adds a ``webhook_lanes`` row for each lane with pending deliveries, kept by the same trigger:
the lane carries the lease (a worker sending its oldest delivery) and when that delivery is due.
``claim`` leases lanes that are due and not leased (one index range, however large the backlog)
and sends each one's oldest pending delivery; recording a delivered result moves the lane to its
next delivery in the same transaction. Leases expire: a worker that dies lets them lapse and
another node, or the restarted one, takes over; the receiver then sees the same ``webhook-id``
again (at least once).
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

# Claiming is two statements in one transaction. The first leases lanes: those due and not
# leased, oldest due first, and those whose lease expired (a worker that died), skipping lanes
# another transaction holds. Both scans read a partial index, so the cost follows ``$2``, not
# the backlog.
_LEASE_LANES = """
WITH due AS (
    SELECT l.endpoint, l.ordering_key
    FROM webhook_lanes AS l
    WHERE l.endpoint = $1 AND l.lease_owner IS NULL AND l.next_attempt_at <= now()
    ORDER BY l.next_attempt_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), expired AS (
    SELECT l.endpoint, l.ordering_key
    FROM webhook_lanes AS l
    WHERE l.endpoint = $1 AND l.lease_owner IS NOT NULL AND l.lease_until < now()
      AND l.next_attempt_at <= now()
    ORDER BY l.lease_until
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), chosen AS (
    SELECT * FROM expired UNION ALL SELECT * FROM due LIMIT $2
)
UPDATE webhook_lanes AS l
SET lease_owner = $3, lease_until = now() + make_interval(secs => $4)
FROM chosen
WHERE l.endpoint = chosen.endpoint AND l.ordering_key = chosen.ordering_key
RETURNING l.ordering_key
"""

# The second reads each leased lane's oldest pending delivery. It is a statement of its own so
# that its snapshot is taken after the lane rows were locked: it sees every delivery committed
# by whoever changed those lanes before (READ COMMITTED, PostgreSQL docs §13.2.1).
_LANE_HEADS = """
SELECT d.id, d.event_id::text AS event_id, d.event_type, d.ordering_key, d.attempts,
       (SELECT e.envelope::text FROM events AS e WHERE e.id = d.event_id) AS envelope
FROM unnest($2::text[]) AS k(ordering_key)
CROSS JOIN LATERAL (
    SELECT n.id, n.event_id, n.event_type, n.ordering_key, n.attempts
    FROM webhook_deliveries AS n
    WHERE n.endpoint = $1 AND n.ordering_key = k.ordering_key AND n.state = 'pending'
    ORDER BY n.id
    LIMIT 1
) AS d
"""

# A lane row exists exactly while its lane has pending deliveries; one found empty under our
# lock (which should not happen) is removed rather than leased forever.
_DROP_EMPTY_LANES = """
DELETE FROM webhook_lanes AS l
WHERE l.endpoint = $1 AND l.ordering_key = ANY ($2::text[])
  AND NOT EXISTS (
      SELECT 1 FROM webhook_deliveries AS d
      WHERE d.endpoint = l.endpoint AND d.ordering_key = l.ordering_key AND d.state = 'pending')
"""

# The outbox's tables change size by orders of magnitude within minutes (a receiver that is down
# for a while, then the catch-up), faster than statistics follow, and a cached generic plan made
# while they were small (a sequential scan) would stay in use as they grow. Claims and results
# are therefore planned each time from the tables' current size (PostgreSQL docs §20.7.2,
# ``plan_cache_mode``); their rows are found through primary keys and the lane index. The
# id-keyed parts say ``state <> 'dead'`` (the same as ``= 'pending'`` here) so that they are not
# tempted by a scan of the whole pending index.
_CUSTOM_PLANS = "SET LOCAL plan_cache_mode = force_custom_plan"

# Recording results starts by locking their lanes, in key order like the enqueue trigger, so
# the next statement sees the lanes as they are and nobody changes them until commit.
_LOCK_LANES = """
SELECT 1
FROM webhook_lanes AS l
WHERE (l.endpoint, l.ordering_key) IN (
    SELECT d.endpoint, d.ordering_key FROM webhook_deliveries AS d WHERE d.id = ANY ($1::bigint[]))
ORDER BY l.endpoint, l.ordering_key
FOR UPDATE OF l
"""

# Then, in one statement: delivered rows leave the outbox for the delivery log; failed ones
# are rescheduled or become dead letters; each lane gets its new head (the oldest pending
# delivery not recorded here: every part of the statement sees the same snapshot, so recorded
# rows are excluded by id) and its due time, or is deleted when it has none left. Lanes whose
# head was delivered and whose next delivery is due keep their lease when this worker holds it
# (at most ``$8`` of them, oldest first), and those next deliveries are returned: a busy call
# moves on without waiting for a claim. A lane leased by another worker (ours expired) keeps
# that lease.
_RECORD = """
WITH u AS (
    SELECT *
    FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::integer[], $5::text[])
         AS u(id, state, retry_in, status, error)
), delivered AS (
    DELETE FROM webhook_deliveries AS d
    USING u
    WHERE d.id = u.id AND u.state = 'delivered' AND d.state <> 'dead'
    RETURNING d.id, d.endpoint, d.event_id, d.event_type, d.ordering_key,
              d.attempts + 1 AS attempts, u.status, d.replays, d.created_at
), logged AS (
    INSERT INTO webhook_delivered
        (id, endpoint, event_id, event_type, ordering_key, attempts, status, replays, created_at)
    SELECT id, endpoint, event_id, event_type, ordering_key, attempts, status, replays, created_at
    FROM delivered
    ON CONFLICT (id) DO NOTHING
), failed AS (
    UPDATE webhook_deliveries AS d
    SET state = u.state,
        attempts = d.attempts + 1,
        next_attempt_at = CASE WHEN u.state = 'pending'
                               THEN now() + make_interval(secs => u.retry_in)
                               ELSE d.next_attempt_at END,
        dead_at = CASE WHEN u.state = 'dead' THEN now() END,
        last_status = u.status,
        last_error = u.error
    FROM u
    WHERE d.id = u.id AND u.state <> 'delivered' AND d.state <> 'dead'
    RETURNING d.id, d.endpoint, d.ordering_key, d.state, d.next_attempt_at
), touched AS (
    SELECT id, endpoint, ordering_key, true AS delivered, NULL::timestamptz AS retry_at
    FROM delivered
    UNION ALL
    SELECT id, endpoint, ordering_key, false, CASE WHEN state = 'pending' THEN next_attempt_at END
    FROM failed
), lanes AS (
    SELECT t.id, t.endpoint, t.ordering_key, t.retry_at, h.id AS head_id, h.next_attempt_at AS due,
           COALESCE(w.lease_owner = $6, false) AS ours,
           t.delivered AND COALESCE(w.lease_owner = $6, false) AND h.next_attempt_at <= now()
               AS chainable
    FROM touched AS t
    JOIN webhook_lanes AS w ON w.endpoint = t.endpoint AND w.ordering_key = t.ordering_key
    LEFT JOIN LATERAL (
        SELECT n.id, n.next_attempt_at
        FROM webhook_deliveries AS n
        WHERE t.retry_at IS NULL
          AND n.endpoint = t.endpoint AND n.ordering_key = t.ordering_key AND n.state = 'pending'
          AND n.id <> ALL ($1::bigint[])
        ORDER BY n.id
        LIMIT 1
    ) AS h ON true
), ranked AS (
    SELECT lanes.*,
           COALESCE(chainable, false)
           AND row_number() OVER (PARTITION BY COALESCE(chainable, false) ORDER BY id) <= $8
               AS keep
    FROM lanes
), emptied AS (
    DELETE FROM webhook_lanes AS w
    USING ranked AS r
    WHERE w.endpoint = r.endpoint AND w.ordering_key = r.ordering_key
      AND r.retry_at IS NULL AND r.head_id IS NULL
), moved AS (
    UPDATE webhook_lanes AS w
    SET next_attempt_at = COALESCE(r.retry_at, r.due),
        lease_owner = CASE WHEN r.keep OR NOT r.ours THEN w.lease_owner END,
        lease_until = CASE WHEN r.keep THEN now() + make_interval(secs => $7)
                           WHEN r.ours THEN NULL
                           ELSE w.lease_until END
    FROM ranked AS r
    WHERE w.endpoint = r.endpoint AND w.ordering_key = r.ordering_key
      AND (r.retry_at IS NOT NULL OR r.head_id IS NOT NULL)
      -- A lane that keeps its lease is left as it is while half the lease remains: its due
      -- time means nothing while it is leased, and a row not rewritten is one less dead tuple.
      AND NOT (r.keep AND w.lease_until > now() + make_interval(secs => $7 / 2))
)
SELECT d.id, d.event_id::text AS event_id, d.event_type, d.ordering_key, d.attempts,
       (SELECT e.envelope::text FROM events AS e WHERE e.id = d.event_id) AS envelope
FROM ranked AS r
JOIN webhook_deliveries AS d ON d.id = r.head_id
WHERE r.keep
"""

_RELEASE = """
UPDATE webhook_lanes AS l SET lease_owner = NULL, lease_until = NULL
FROM webhook_deliveries AS d
WHERE d.id = ANY ($1::bigint[])
  AND l.endpoint = d.endpoint AND l.ordering_key = d.ordering_key AND l.lease_owner = $2
"""

_RELEASE_OWNER = """
UPDATE webhook_lanes SET lease_owner = NULL, lease_until = NULL
WHERE lease_owner = $1
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
        """Lease up to ``limit`` deliveries due now, at most one per lane, oldest due first."""
        if limit <= 0:
            return []
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(_CUSTOM_PLANS)
            leased = await connection.fetch(_LEASE_LANES, endpoint, limit, self.owner, lease)
            if not leased:
                return []
            keys = [str(record["ordering_key"]) for record in leased]
            records = await connection.fetch(_LANE_HEADS, endpoint, keys)
            if len(records) < len(keys):
                found = {str(record["ordering_key"]) for record in records}
                empty = [key for key in keys if key not in found]
                await connection.execute(_DROP_EMPTY_LANES, endpoint, empty)
                logger.warning(
                    "webhooks %r: removed %d lanes with nothing to send", endpoint, len(empty)
                )
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
        ids = [r.id for r in results]
        limit = next_limit if next_for is not None else 0
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(_CUSTOM_PLANS)
            await connection.execute(_LOCK_LANES, ids)
            records = await connection.fetch(
                _RECORD,
                ids,
                [r.state.value for r in results],
                [r.retry_in for r in results],
                [
                    r.status or 200 if r.state is DeliveryState.DELIVERED else r.status
                    for r in results
                ],
                [r.error for r in results],
                self.owner,
                lease,
                limit,
            )
        return _claimed(next_for, records) if next_for is not None else []

    async def release(self, ids: Sequence[int]) -> None:
        """Give leases back without an attempt (stopping): the deliveries are due again."""
        if not ids:
            return
        async with self._pool.acquire() as connection:
            await connection.execute(_RELEASE, list(ids), self.owner)

    async def release_own_leases(self) -> int:
        """At start-up: leases this node held when it stopped or died are void."""
        async with self._pool.acquire() as connection:
            status = await connection.execute(_RELEASE_OWNER, self.owner)
        released = int(status.rsplit(" ", 1)[-1]) if status.startswith("UPDATE") else 0
        if released:
            logger.info("took back %d webhook lanes leased before a restart", released)
        return released

    async def counts(self) -> dict[str, dict[str, int]]:
        """Deliveries per endpoint and state (``delivered`` counts the whole delivery log)."""
        async with self._pool.acquire() as connection:
            records = await connection.fetch(_COUNTS)
        counts: dict[str, dict[str, int]] = {}
        for record in records:
            counts.setdefault(str(record["endpoint"]), {})[str(record["state"])] = int(record["n"])
        return counts
