-- Call detail records: one row per call, opened when the call starts and completed when it ends.
CREATE TABLE cdrs (
    call_id          text        PRIMARY KEY,
    node             text        NOT NULL,
    trunk_id         text        NOT NULL,
    did              text        NOT NULL,
    caller_id        text        NOT NULL,
    caller_name      text        NOT NULL,
    started_at       timestamptz NOT NULL,
    answered_at      timestamptz,
    ended_at         timestamptz,
    end_reason       text,
    hangup_by        text,
    disposition      text        NOT NULL,
    duration_seconds double precision,
    ivr_seconds      double precision NOT NULL DEFAULT 0,
    wait_seconds     double precision NOT NULL DEFAULT 0,
    talk_seconds     double precision NOT NULL DEFAULT 0,
    hold_seconds     double precision NOT NULL DEFAULT 0,
    wrap_up_seconds  double precision NOT NULL DEFAULT 0,
    segment_count    integer     NOT NULL DEFAULT 0,
    agents           text[]      NOT NULL DEFAULT '{}',
    problems         text[]      NOT NULL DEFAULT '{}',
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX cdrs_started ON cdrs (started_at);
-- Calls still open on a node: closed with end_reason 'server restart' when it starts again.
CREATE INDEX cdrs_open ON cdrs (node) WHERE ended_at IS NULL;

-- The segments of a call: IVR, queue, agent, transfer... in order.
CREATE TABLE cdr_segments (
    call_id          text        NOT NULL REFERENCES cdrs (call_id) ON DELETE CASCADE,
    segment_index    integer     NOT NULL,
    kind             text        NOT NULL,
    started_at       timestamptz NOT NULL,
    ended_at         timestamptz,
    outcome          text,
    ivr_tree_id      text,
    queue_id         text,
    agent_id         text,
    destination      text,
    wait_seconds     double precision NOT NULL DEFAULT 0,
    ring_seconds     double precision NOT NULL DEFAULT 0,
    talk_seconds     double precision NOT NULL DEFAULT 0,
    hold_seconds     double precision NOT NULL DEFAULT 0,
    wrap_up_seconds  double precision,
    offers           integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (call_id, segment_index)
);

CREATE INDEX cdr_segments_agent ON cdr_segments (agent_id, started_at) WHERE agent_id IS NOT NULL;
CREATE INDEX cdr_segments_queue ON cdr_segments (queue_id, started_at) WHERE queue_id IS NOT NULL;
