-- Drops the verification outcomes (orders keep their state: a disputed one
-- stays `confirming`, and is promoted by the next run only if verification
-- is then off, or verified again).
DROP INDEX idx_contract_events_disputed;
ALTER TABLE contract_events DROP COLUMN verified_at;
ALTER TABLE contract_events DROP COLUMN verification_detail;
ALTER TABLE contract_events DROP COLUMN verification;
