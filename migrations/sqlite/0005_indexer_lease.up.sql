-- The writer's lease: one row per (chain, contract). Exactly one indexer
-- replica writes: the one named in `holder` while `expires_at` (the
-- database's clock) is in the future. `epoch` is the fencing token: it grows
-- by one at every takeover, and every write transaction of the indexer
-- checks, in the same transaction, that the lease is still its own under the
-- same epoch, so a replica that lost the lease (paused, partitioned) can
-- never commit again under its old epoch. Written by the indexer alone.
CREATE TABLE indexer_lease (
    chain_id         INTEGER NOT NULL CHECK (chain_id > 0),
    contract_address TEXT NOT NULL CHECK (length(contract_address) = 42),
    holder           TEXT NOT NULL CHECK (length(holder) BETWEEN 1 AND 256),
    epoch            INTEGER NOT NULL CHECK (epoch > 0),
    acquired_at      TEXT NOT NULL CHECK (julianday(acquired_at) IS NOT NULL),
    renewed_at       TEXT NOT NULL CHECK (julianday(renewed_at) IS NOT NULL),
    expires_at       TEXT NOT NULL CHECK (julianday(expires_at) IS NOT NULL),
    PRIMARY KEY (chain_id, contract_address)
);
