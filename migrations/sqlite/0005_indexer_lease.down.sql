-- Drops the writer's lease: a build before 0005 writes without one (one
-- indexer per database file, by hand).
DROP TABLE indexer_lease;
