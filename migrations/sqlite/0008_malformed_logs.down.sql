-- Drops the malformed logs (see 0008's up): a build before it ignores them.
DROP INDEX idx_malformed_logs_block;
DROP TABLE malformed_logs;
