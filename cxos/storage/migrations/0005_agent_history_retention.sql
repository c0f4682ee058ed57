-- Agent state history at start-up, and retention.

-- Each agent's latest state change, found without reading the whole history: at start-up a node
-- closes the states its agents were left in when it was killed (cxos.storage.agent_history).
CREATE INDEX events_agent_state
    ON events ((envelope #>> '{data,agent_id}'), time, seq)
    WHERE type = 'agent.state_changed';

-- Pruning the delivery log by age (cxos.storage.retention). The log is written in delivery
-- order, so a BRIN index (a few pages, next to nothing to maintain per row) finds the old part.
CREATE INDEX webhook_delivered_at ON webhook_delivered USING brin (delivered_at);
