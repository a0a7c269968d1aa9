-- Deep reorgs: a reorganisation that orphaned payments already counted as
-- final. Each stays open (and /readyz unready) until an operator runs
-- `liqpass-indexer ack-reorg`, or until every order it reversed is paid again.
CREATE TABLE reorg_incidents (
    id               INTEGER PRIMARY KEY,
    chain_id         INTEGER NOT NULL,
    contract_address TEXT NOT NULL,
    depth            INTEGER NOT NULL CHECK (depth > 0),
    ancestor_block   INTEGER NOT NULL CHECK (ancestor_block >= 0),
    old_checkpoint   INTEGER NOT NULL CHECK (old_checkpoint > ancestor_block),
    -- JSON array of the orders.id values moved to payment_status 'reversed'.
    reversed_orders  TEXT NOT NULL CHECK (json_valid(reversed_orders)),
    detected_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    acknowledged_at  TEXT
);

CREATE INDEX idx_reorg_incidents_open ON reorg_incidents (chain_id, contract_address)
    WHERE acknowledged_at IS NULL;
