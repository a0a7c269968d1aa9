-- The contract's TreasuryUpdated(oldTreasury, newTreasury) logs: its owner
-- moves the treasury at any time (CheckoutUSDC 1.1.0's updateTreasury), and
-- a v2 payment must name the treasury in force at its log: chain.treasury
-- (or any, unset) until the first move, then each move's newTreasury from
-- its own log on (README, "Reconciliation rules"). Written by the indexer
-- alone, one row per log; a reorg sets `removed`, which undoes the move.
CREATE TABLE treasury_changes (
    id               INTEGER PRIMARY KEY,
    chain_id         INTEGER NOT NULL CHECK (chain_id > 0),
    contract_address TEXT NOT NULL CHECK (length(contract_address) = 42),
    tx_hash          TEXT NOT NULL CHECK (length(tx_hash) = 66),
    log_index        INTEGER NOT NULL CHECK (log_index >= 0),
    block_number     INTEGER NOT NULL CHECK (block_number >= 0),
    block_hash       TEXT NOT NULL CHECK (length(block_hash) = 66),
    old_treasury     TEXT NOT NULL CHECK (length(old_treasury) = 42),
    new_treasury     TEXT NOT NULL CHECK (length(new_treasury) = 42),
    removed          INTEGER NOT NULL DEFAULT 0 CHECK (removed IN (0, 1)),
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
                     CHECK (julianday(created_at) IS NOT NULL),
    UNIQUE (chain_id, tx_hash, log_index)
);
CREATE INDEX idx_treasury_changes_block ON treasury_changes (chain_id, contract_address, block_number);
