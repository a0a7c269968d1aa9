-- A payment on an order that is `cancelled` or `expired` gets an outcome
-- whose name says so: `order_cancelled`, `order_expired` (until now
-- `duplicate_payment` and `late_payment`, which keep their other meanings:
-- the order paid by another log, or settled otherwise; the block time after
-- `expires_at`). Rows stored before keep their outcome. SQLite changes a
-- CHECK only by rebuilding the table: done as migration 0003 does (rows set
-- aside, foreign-key checks deferred, the same rows and ids put back).
PRAGMA defer_foreign_keys = ON;
CREATE TEMP TABLE contract_events_saved AS SELECT * FROM contract_events;

CREATE TABLE contract_events_new (
    id               INTEGER PRIMARY KEY,
    chain_id         INTEGER NOT NULL CHECK (chain_id > 0),
    contract_address TEXT NOT NULL
                     CHECK (length(contract_address) = 42 AND substr(contract_address, 1, 2) = '0x'),
    tx_hash          TEXT NOT NULL
                     CHECK (length(tx_hash) = 66 AND substr(tx_hash, 1, 2) = '0x'),
    log_index        INTEGER NOT NULL CHECK (log_index >= 0),
    block_number     INTEGER NOT NULL CHECK (block_number >= 0),
    block_hash       TEXT NOT NULL
                     CHECK (length(block_hash) = 66 AND substr(block_hash, 1, 2) = '0x'),
    block_timestamp  INTEGER CHECK (block_timestamp IS NULL OR block_timestamp >= 0),
    event_name       TEXT NOT NULL,
    event_version    INTEGER NOT NULL CHECK (event_version IN (1, 2)),
    order_ref        TEXT NOT NULL
                     CHECK (length(order_ref) = 66 AND substr(order_ref, 1, 2) = '0x'),
    payer            TEXT NOT NULL
                     CHECK (length(payer) = 42 AND substr(payer, 1, 2) = '0x'),
    -- Micro-USDC when the uint256 fits a signed 64-bit integer; otherwise NULL
    -- with amount_overflow = 1. amount_raw always holds the exact decimal value.
    amount_usdc      INTEGER CHECK (amount_usdc IS NULL OR amount_usdc >= 0),
    amount_raw       TEXT NOT NULL CHECK (length(amount_raw) BETWEEN 1 AND 78),
    amount_overflow  INTEGER NOT NULL DEFAULT 0 CHECK (amount_overflow IN (0, 1)),
    quote_hash       TEXT NOT NULL,
    args_json        TEXT NOT NULL CHECK (json_valid(args_json)),
    -- The order this event paid (matched, or an accepted overpayment); NULL otherwise.
    order_id         TEXT REFERENCES orders (id),
    match_status     TEXT NOT NULL
                     CHECK (match_status IN ('matched', 'unknown_order', 'duplicate_payment',
                                             'payer_mismatch', 'underpaid', 'overpaid',
                                             'late_payment', 'wrong_destination',
                                             'order_cancelled', 'order_expired')),
    removed          INTEGER NOT NULL DEFAULT 0 CHECK (removed IN (0, 1)),
    indexed_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    verification     TEXT
                     CHECK (verification IS NULL OR verification IN ('verified', 'disputed')),
    verification_detail TEXT,
    verified_at      TEXT,
    CHECK ((amount_overflow = 1) = (amount_usdc IS NULL)),
    UNIQUE (chain_id, tx_hash, log_index)
);
DROP TABLE contract_events;
ALTER TABLE contract_events_new RENAME TO contract_events;

INSERT INTO contract_events (id, chain_id, contract_address, tx_hash, log_index, block_number, block_hash,
    block_timestamp, event_name, event_version, order_ref, payer, amount_usdc, amount_raw,
    amount_overflow, quote_hash, args_json, order_id, match_status, removed, indexed_at,
    updated_at, verification, verification_detail, verified_at)
SELECT id, chain_id, contract_address, tx_hash, log_index, block_number, block_hash,
    block_timestamp, event_name, event_version, order_ref, payer, amount_usdc, amount_raw,
    amount_overflow, quote_hash, args_json, order_id, match_status, removed, indexed_at,
    updated_at, verification, verification_detail, verified_at
FROM contract_events_saved;
DROP TABLE contract_events_saved;

CREATE INDEX idx_contract_events_order_ref ON contract_events (order_ref);
CREATE INDEX idx_contract_events_order_id ON contract_events (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX idx_contract_events_block ON contract_events (chain_id, contract_address, block_number);
CREATE INDEX idx_contract_events_unknown ON contract_events (order_ref)
    WHERE match_status = 'unknown_order' AND removed = 0;
CREATE INDEX idx_contract_events_disputed ON contract_events (chain_id, contract_address)
    WHERE verification = 'disputed' AND removed = 0;
