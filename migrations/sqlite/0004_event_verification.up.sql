-- A second opinion on each payment log (chain.verify_rpc_urls). NULL: not
-- checked (verification off, or not final yet, or no verifier has seen the
-- block); 'verified': chain.verify_quorum independent endpoints returned the
-- same log (tx hash, log index, block hash, topics, data); 'disputed': one of
-- them has the block but not that log. With verification on, an order becomes
-- `paid` only through a 'verified' event. A reorg that re-includes the log
-- resets the columns (the event is checked again on its new block).
ALTER TABLE contract_events ADD COLUMN verification TEXT
    CHECK (verification IS NULL OR verification IN ('verified', 'disputed'));
-- Why: which endpoints confirmed, or what the disputing one answered.
-- Endpoints appear redacted (scheme, host and port only).
ALTER TABLE contract_events ADD COLUMN verification_detail TEXT;
ALTER TABLE contract_events ADD COLUMN verified_at TEXT;

CREATE INDEX idx_contract_events_disputed ON contract_events (chain_id, contract_address)
    WHERE verification = 'disputed' AND removed = 0;
