-- The database contract shared with the order API (see README, "Database contract").
-- The order API inserts `orders` and reads everything; the indexer is the only
-- writer of `contract_events`, `sync_state`, `block_hashes`, `order_audit` and of
-- the payment columns of `orders` (payment_status, status when paid, paid_*).
-- Timestamps written by SQL are ISO-8601 UTC text ('2026-11-24T10:00:00.000Z'),
-- which sorts chronologically; block times are unix seconds (INTEGER).

CREATE TABLE orders (
    id                TEXT PRIMARY KEY NOT NULL
                      CHECK (length(id) BETWEEN 1 AND 128),
    order_ref         TEXT NOT NULL UNIQUE
                      CHECK (length(order_ref) = 66 AND substr(order_ref, 1, 2) = '0x'
                             AND substr(order_ref, 3) NOT GLOB '*[^0-9a-f]*'),
    wallet_address    TEXT NOT NULL
                      CHECK (length(wallet_address) = 42 AND substr(wallet_address, 1, 2) = '0x'
                             AND substr(wallet_address, 3) NOT GLOB '*[^0-9a-f]*'),
    premium_usdc      INTEGER NOT NULL
                      CHECK (typeof(premium_usdc) = 'integer' AND premium_usdc > 0),
    status            TEXT NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'paid', 'active', 'expired', 'claimed',
                                        'cancelled', 'refunded')),
    payment_status    TEXT NOT NULL DEFAULT 'pending'
                      CHECK (payment_status IN ('pending', 'confirming', 'paid', 'reversed',
                                                'refunded', 'failed')),
    payment_method    TEXT NOT NULL DEFAULT 'permit2'
                      CHECK (length(payment_method) BETWEEN 1 AND 64),
    payment_proof_id  TEXT CHECK (payment_proof_id IS NULL OR length(payment_proof_id) BETWEEN 1 AND 256),
    expires_at        TEXT CHECK (expires_at IS NULL OR julianday(expires_at) IS NOT NULL),
    created_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
                      CHECK (julianday(created_at) IS NOT NULL),
    updated_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
                      CHECK (julianday(updated_at) IS NOT NULL),
    -- Filled by the indexer when the payment is final (status 'paid').
    paid_tx_hash      TEXT
                      CHECK (paid_tx_hash IS NULL OR (length(paid_tx_hash) = 66
                             AND substr(paid_tx_hash, 1, 2) = '0x'
                             AND substr(paid_tx_hash, 3) NOT GLOB '*[^0-9a-f]*')),
    paid_log_index    INTEGER CHECK (paid_log_index IS NULL OR paid_log_index >= 0),
    paid_block_number INTEGER CHECK (paid_block_number IS NULL OR paid_block_number >= 0),
    paid_amount_usdc  INTEGER CHECK (paid_amount_usdc IS NULL OR paid_amount_usdc > 0),
    paid_at           TEXT CHECK (paid_at IS NULL OR julianday(paid_at) IS NOT NULL),
    CHECK ((paid_tx_hash IS NULL) = (paid_log_index IS NULL)
       AND (paid_tx_hash IS NULL) = (paid_block_number IS NULL)
       AND (paid_tx_hash IS NULL) = (paid_amount_usdc IS NULL))
);

CREATE UNIQUE INDEX idx_orders_idempotency
    ON orders (wallet_address, payment_proof_id) WHERE payment_proof_id IS NOT NULL;
CREATE INDEX idx_orders_created_at ON orders (created_at);
CREATE INDEX idx_orders_status ON orders (status, payment_status);
CREATE INDEX idx_orders_confirming ON orders (id) WHERE payment_status = 'confirming';

-- One row per PremiumPaid log ever seen, never deleted: a log orphaned by a
-- reorg is kept with removed = 1.
CREATE TABLE contract_events (
    id               INTEGER PRIMARY KEY,
    chain_id         INTEGER NOT NULL CHECK (chain_id > 0),
    contract_address TEXT NOT NULL
                     CHECK (length(contract_address) = 42 AND substr(contract_address, 1, 2) = '0x'
                            AND substr(contract_address, 3) NOT GLOB '*[^0-9a-f]*'),
    tx_hash          TEXT NOT NULL
                     CHECK (length(tx_hash) = 66 AND substr(tx_hash, 1, 2) = '0x'
                            AND substr(tx_hash, 3) NOT GLOB '*[^0-9a-f]*'),
    log_index        INTEGER NOT NULL CHECK (log_index >= 0),
    block_number     INTEGER NOT NULL CHECK (block_number >= 0),
    block_hash       TEXT NOT NULL
                     CHECK (length(block_hash) = 66 AND substr(block_hash, 1, 2) = '0x'
                            AND substr(block_hash, 3) NOT GLOB '*[^0-9a-f]*'),
    block_timestamp  INTEGER CHECK (block_timestamp IS NULL OR block_timestamp >= 0),
    event_name       TEXT NOT NULL,
    event_version    INTEGER NOT NULL CHECK (event_version IN (1, 2)),
    order_ref        TEXT NOT NULL
                     CHECK (length(order_ref) = 66 AND substr(order_ref, 1, 2) = '0x'
                            AND substr(order_ref, 3) NOT GLOB '*[^0-9a-f]*'),
    payer            TEXT NOT NULL
                     CHECK (length(payer) = 42 AND substr(payer, 1, 2) = '0x'
                            AND substr(payer, 3) NOT GLOB '*[^0-9a-f]*'),
    -- Micro-USDC when the uint256 fits a signed 64-bit integer; otherwise NULL
    -- with amount_overflow = 1. amount_raw always holds the exact decimal value.
    amount_usdc      INTEGER CHECK (amount_usdc IS NULL OR amount_usdc >= 0),
    amount_raw       TEXT NOT NULL CHECK (length(amount_raw) BETWEEN 1 AND 78
                                          AND amount_raw NOT GLOB '*[^0-9]*'),
    amount_overflow  INTEGER NOT NULL DEFAULT 0 CHECK (amount_overflow IN (0, 1)),
    quote_hash       TEXT NOT NULL,
    args_json        TEXT NOT NULL CHECK (json_valid(args_json)),
    -- The order this event paid (matched, or an accepted overpayment); NULL otherwise.
    order_id         TEXT REFERENCES orders (id),
    match_status     TEXT NOT NULL
                     CHECK (match_status IN ('matched', 'unknown_order', 'duplicate_payment',
                                             'payer_mismatch', 'underpaid', 'overpaid',
                                             'late_payment', 'wrong_destination')),
    removed          INTEGER NOT NULL DEFAULT 0 CHECK (removed IN (0, 1)),
    indexed_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK ((amount_overflow = 1) = (amount_usdc IS NULL)),
    UNIQUE (chain_id, tx_hash, log_index)
);

CREATE INDEX idx_contract_events_order_ref ON contract_events (order_ref);
CREATE INDEX idx_contract_events_order_id ON contract_events (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX idx_contract_events_block ON contract_events (chain_id, contract_address, block_number);
CREATE INDEX idx_contract_events_unknown ON contract_events (order_ref)
    WHERE match_status = 'unknown_order' AND removed = 0;

-- The checkpoint: the last block whose logs are all in contract_events.
-- Written only in the transaction that writes those logs.
CREATE TABLE sync_state (
    chain_id         INTEGER NOT NULL,
    contract_address TEXT NOT NULL,
    block_number     INTEGER NOT NULL CHECK (block_number >= 0),
    block_hash       TEXT NOT NULL,
    updated_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (chain_id, contract_address)
);

-- Hashes of recently indexed blocks (the unfinalized window), for reorg detection,
-- including after a restart.
CREATE TABLE block_hashes (
    chain_id         INTEGER NOT NULL,
    contract_address TEXT NOT NULL,
    block_number     INTEGER NOT NULL CHECK (block_number >= 0),
    block_hash       TEXT NOT NULL,
    parent_hash      TEXT,
    PRIMARY KEY (chain_id, contract_address, block_number)
) WITHOUT ROWID;

-- Every change the indexer makes to an order, append-only.
CREATE TABLE order_audit (
    id                  INTEGER PRIMARY KEY,
    order_id            TEXT NOT NULL REFERENCES orders (id),
    actor               TEXT NOT NULL DEFAULT 'indexer',
    reason              TEXT NOT NULL,
    from_status         TEXT NOT NULL,
    to_status           TEXT NOT NULL,
    from_payment_status TEXT NOT NULL,
    to_payment_status   TEXT NOT NULL,
    event_id            INTEGER REFERENCES contract_events (id),
    created_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE INDEX idx_order_audit_order ON order_audit (order_id, id);
