-- The event log: every published envelope, once (its UUIDv7 id is the key).
CREATE TABLE events (
    id         uuid        PRIMARY KEY,
    node       text        NOT NULL,
    seq        bigint      NOT NULL,
    type       text        NOT NULL,
    version    integer     NOT NULL,
    call_id    text,
    time       timestamptz NOT NULL,
    envelope   jsonb       NOT NULL,
    stored_at  timestamptz NOT NULL DEFAULT now()
);

-- Resuming a node's stream from a sequence number.
CREATE INDEX events_node_seq ON events (node, seq);
-- Everything about one call, in publication order (UUIDv7 order).
CREATE INDEX events_call ON events (call_id, id) WHERE call_id IS NOT NULL;
-- Reports and exports over a time range, optionally of some types.
CREATE INDEX events_time ON events (time);
CREATE INDEX events_type_time ON events (type, time);

-- Agent state history is the agent.state_changed events, one row per change.
CREATE VIEW agent_state_history AS
SELECT
    id,
    node,
    seq,
    time,
    envelope -> 'data' ->> 'agent_id'                           AS agent_id,
    envelope -> 'data' ->> 'previous_state'                     AS previous_state,
    envelope -> 'data' ->> 'state'                              AS state,
    envelope -> 'data' ->> 'reason'                             AS reason,
    (envelope -> 'data' ->> 'seconds_in_previous')::double precision AS seconds_in_previous,
    call_id
FROM events
WHERE type = 'agent.state_changed';
