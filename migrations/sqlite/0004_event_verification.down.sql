-- Drops the verification outcomes. Orders keep their state: one held
-- `confirming` by a dispute stays so; a build of the schema before 0004
-- (which knows no verification) would promote it once final.
DROP INDEX idx_contract_events_disputed;
ALTER TABLE contract_events DROP COLUMN verified_at;
ALTER TABLE contract_events DROP COLUMN verification_detail;
ALTER TABLE contract_events DROP COLUMN verification;
