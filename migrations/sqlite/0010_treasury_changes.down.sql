-- Drops the treasury moves (see 0010's up): a build before it knows only
-- chain.treasury.
DROP INDEX idx_treasury_changes_block;
DROP TABLE treasury_changes;
