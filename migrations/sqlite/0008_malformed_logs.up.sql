-- Logs of the checkout contract that carry a PremiumPaid topic0 but that no
-- emit of either event version can produce: a wrong number of topics, an
-- address that is not a clean address, data of the wrong length. Never a
-- payment and never matched to an order; kept raw, for a person (`review`,
-- `status`, the outbox's `payment.malformed`). A table of their own, not rows
-- of contract_events, whose columns (order_ref, payer, amounts) and whose
-- meaning to the order API ("a decoded payment") such a log cannot fill.
-- Written by the indexer alone; one row per log, like contract_events; a
-- reorg sets `removed`.
CREATE TABLE malformed_logs (
    id               INTEGER PRIMARY KEY,
    chain_id         INTEGER NOT NULL CHECK (chain_id > 0),
    contract_address TEXT NOT NULL CHECK (length(contract_address) = 42),
    tx_hash          TEXT NOT NULL CHECK (length(tx_hash) = 66),
    log_index        INTEGER NOT NULL CHECK (log_index >= 0),
    block_number     INTEGER NOT NULL CHECK (block_number >= 0),
    block_hash       TEXT NOT NULL CHECK (length(block_hash) = 66),
    block_timestamp  INTEGER CHECK (block_timestamp IS NULL OR block_timestamp >= 0),
    -- The raw log: its topics as a JSON array of 0x hex, its data as 0x hex.
    topics_json      TEXT NOT NULL,
    data             TEXT NOT NULL CHECK (substr(data, 1, 2) = '0x'),
    -- Why it is not a PremiumPaid (the decoder's words).
    reason           TEXT NOT NULL,
    -- topic1 when the log has one: the orderId it would name.
    order_ref        TEXT CHECK (order_ref IS NULL OR length(order_ref) = 66),
    removed          INTEGER NOT NULL DEFAULT 0 CHECK (removed IN (0, 1)),
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
                     CHECK (julianday(created_at) IS NOT NULL),
    UNIQUE (chain_id, tx_hash, log_index)
);
CREATE INDEX idx_malformed_logs_block ON malformed_logs (chain_id, contract_address, block_number);
