-- Calls placed from agents' softphones have CDRs too: to a colleague (internal) or out through a
-- trunk (outbound). Calls from trunks, all there were before, are inbound.
ALTER TABLE cdrs ADD COLUMN direction text NOT NULL DEFAULT 'inbound';
