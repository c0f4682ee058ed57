-- CRM webhooks: the subscribed endpoints, and one delivery row per (endpoint, stored event).

-- The endpoints of crm.yaml and the event types each subscribes to ('call.ended', 'queue.*' or
-- '*'). The CRM bridge rewrites this table from its configuration at start-up and on reload;
-- an endpoint removed from the configuration stays, inactive, so its deliveries keep a name.
CREATE TABLE webhook_endpoints (
    name        text        PRIMARY KEY,
    url         text        NOT NULL,
    event_types text[]      NOT NULL,
    active      boolean     NOT NULL DEFAULT true,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The outbox. A row is written by the trigger below in the same transaction as its event, so
-- an event is stored if and only if its deliveries are. ``id`` follows publication order, which
-- is the order deliveries of one ``ordering_key`` (a call, else an agent, else a node) are made.
-- It holds only what is not delivered yet (pending) and dead letters, so it stays small
-- however long the server runs; delivered rows move to ``webhook_delivered``.
CREATE TABLE webhook_deliveries (
    id              bigserial   PRIMARY KEY,
    endpoint        text        NOT NULL,
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    ordering_key    text        NOT NULL,
    state           text        NOT NULL DEFAULT 'pending'
                                CHECK (state IN ('pending', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- A worker holding a delivery (request in flight); an expired lease may be taken over.
    lease_owner     text,
    lease_until     timestamptz,
    last_status     integer,
    last_error      text,
    replays         integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    dead_at         timestamptz,
    UNIQUE (endpoint, event_id)
);

-- The delivery log: one row per delivery the endpoint acknowledged (2xx), written when it
-- leaves the outbox. Append-only, like the event log.
CREATE TABLE webhook_delivered (
    id           bigint      PRIMARY KEY,
    endpoint     text        NOT NULL,
    event_id     uuid        NOT NULL,
    event_type   text        NOT NULL,
    ordering_key text        NOT NULL,
    attempts     integer     NOT NULL,
    status       integer     NOT NULL,
    replays      integer     NOT NULL,
    created_at   timestamptz NOT NULL,
    delivered_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX webhook_delivered_event ON webhook_delivered (event_id);

-- Finding the deliveries due, and whether an earlier one of the same lane is still pending.
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (endpoint, id)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_lane ON webhook_deliveries (endpoint, ordering_key, id)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_dead ON webhook_deliveries (endpoint, id)
    WHERE state = 'dead';

-- Dead letters: deliveries that used up their attempts, waiting for an administrator's replay.
CREATE VIEW webhook_dead_letters AS
SELECT id, endpoint, event_id, event_type, ordering_key, attempts, last_status, last_error,
       replays, created_at, dead_at
FROM webhook_deliveries
WHERE state = 'dead';

-- One statement-level trigger per insert into events: it sees exactly the rows inserted (not
-- those skipped by ON CONFLICT DO NOTHING), so a replayed event is never enqueued twice.
CREATE FUNCTION webhook_enqueue() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
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
    ON CONFLICT (endpoint, event_id) DO NOTHING;
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_enqueue_webhooks
    AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT
    EXECUTE FUNCTION webhook_enqueue();
