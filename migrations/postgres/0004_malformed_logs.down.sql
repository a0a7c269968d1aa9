-- Drops the malformed logs (see migrations/sqlite/0008).
DROP TABLE malformed_logs;
