-- CRM webhooks: one row per lane with deliveries waiting, so that finding what to send next costs
-- the same however large the outbox backlog is.
--
-- A lane is an (endpoint, ordering_key) pair: the deliveries of one call (else one agent, else one
-- node) to one endpoint, made one at a time in id order. Until now the worker found each lane's
-- oldest pending delivery by scanning the pending rows in id order with an anti-join, which grew
-- with the backlog. Now:
--
-- * ``webhook_lanes`` holds a row for every lane that has pending deliveries, and only for those.
--   It carries the lane's lease (a worker sending the lane's oldest delivery) and when that
--   delivery is due. The delivery itself is the lane's pending row with the smallest id, one
--   index probe on ``webhook_deliveries_lane``.
-- * The trigger on ``events`` creates or locks the lane rows of the deliveries it inserts; the
--   worker locks lane rows before recording results, and deletes a lane whose last pending
--   delivery left, in the same transaction. The lane row lock is what orders these: an insert
--   racing with the lane's emptying either waits for the delete and creates the lane again, or
--   makes the worker wait and see its new delivery (READ COMMITTED takes a new snapshot per
--   statement, PostgreSQL docs §13.2.1).
-- * Claiming reads ``webhook_lanes_due`` (lanes due and not leased, oldest due first) with
--   ``FOR UPDATE SKIP LOCKED``: its cost depends on how many deliveries are asked for, not on the
--   backlog, and lanes in backoff cost nothing until they are due.

CREATE TABLE webhook_lanes (
    endpoint        text        NOT NULL,
    ordering_key    text        NOT NULL,
    -- When the lane's oldest pending delivery is due (its retry time after a failed attempt).
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- A worker sending the lane's oldest delivery; an expired lease may be taken over.
    lease_owner     text,
    lease_until     timestamptz,
    PRIMARY KEY (endpoint, ordering_key)
);

CREATE INDEX webhook_lanes_due ON webhook_lanes (endpoint, next_attempt_at)
    WHERE lease_owner IS NULL;
CREATE INDEX webhook_lanes_leased ON webhook_lanes (endpoint, lease_until)
    WHERE lease_owner IS NOT NULL;

-- Lanes of the deliveries already waiting. Leases held on them before this migration are void
-- (the rows' lease columns go below): a delivery in flight then may be sent again, with its
-- webhook-id, which receivers drop as a repeat.
INSERT INTO webhook_lanes (endpoint, ordering_key, next_attempt_at)
SELECT DISTINCT ON (endpoint, ordering_key) endpoint, ordering_key, next_attempt_at
FROM webhook_deliveries
WHERE state = 'pending'
ORDER BY endpoint, ordering_key, id;

-- Leases are the lanes' now; the whole-outbox scan index served the old claim only.
DROP INDEX webhook_deliveries_pending;
ALTER TABLE webhook_deliveries DROP COLUMN lease_owner, DROP COLUMN lease_until;

-- As in 0003, plus the lanes: one upsert per lane the statement's events enqueue to, in key
-- order (so that two transactions lock lane rows in the same order and never deadlock). The
-- ``DO UPDATE`` matters: it locks an existing lane row, or waits for a worker deleting it and
-- then inserts it again; ``DO NOTHING`` would do neither.
CREATE OR REPLACE FUNCTION webhook_enqueue() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH queued AS (
        INSERT INTO webhook_deliveries (endpoint, event_id, event_type, ordering_key)
        SELECT w.name,
               n.id,
               n.type,
               COALESCE(n.call_id, 'agent:' || (n.envelope #>> '{data,agent_id}'), 'node:' || n.node)
        FROM new_events AS n
        JOIN webhook_endpoints AS w
          ON w.active
         AND EXISTS (
               SELECT 1
               FROM unnest(w.event_types) AS p(pattern)
               WHERE p.pattern = '*'
                  OR p.pattern = n.type
                  OR (right(p.pattern, 2) = '.*' AND starts_with(n.type, left(p.pattern, -1)))
             )
        ORDER BY n.node, n.seq, w.name
        ON CONFLICT (endpoint, event_id) DO NOTHING
        RETURNING endpoint, ordering_key
    )
    INSERT INTO webhook_lanes AS l (endpoint, ordering_key)
    SELECT DISTINCT endpoint, ordering_key FROM queued
    ORDER BY endpoint, ordering_key
    ON CONFLICT (endpoint, ordering_key) DO UPDATE SET endpoint = l.endpoint;
    RETURN NULL;
END;
$$;
