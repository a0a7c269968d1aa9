-- Drops the treasury moves (see migrations/sqlite/0010).
DROP TABLE treasury_changes;
