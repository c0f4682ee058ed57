-- Agent state history at start-up, and retention.
--
-- Both indexes are built with CONCURRENTLY, outside a transaction: a plain CREATE INDEX holds a
-- lock that stops every insert into the table until the index is built, and on a long-running
-- event log that is minutes of calls whose events wait in memory and the spool.
-- migration: no-transaction
-- The first text of this file built the same indexes inside the migration's transaction.
-- migration: supersedes a804c5dc00b78d5ced1a88cb813a7ffc7aed9dc0003d6b9893548dcb6555cbda

-- Each agent's latest state change, found without reading the whole history: at start-up a node
-- closes the states its agents were left in when it was killed (cxos.storage.agent_history).
CREATE INDEX CONCURRENTLY IF NOT EXISTS events_agent_state
    ON events ((envelope #>> '{data,agent_id}'), time, seq)
    WHERE type = 'agent.state_changed';

-- Pruning the delivery log by age (cxos.storage.retention). The log is written in delivery
-- order, so a BRIN index (a few pages, next to nothing to maintain per row) finds the old part.
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_delivered_at
    ON webhook_delivered USING brin (delivered_at);
