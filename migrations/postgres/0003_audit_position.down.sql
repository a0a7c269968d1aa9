-- Drops the audit's position (see migrations/sqlite/0007).
DROP TABLE audit_state;
