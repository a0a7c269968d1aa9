-- The outbox: one row per change the order API may act on (an order
-- confirming, paid, back to pending, reversed, resolved by a person; every
-- payment that is not `matched`), written by the indexer in the same
-- transaction as the change. `id` is the cursor (read `WHERE id > $cursor
-- ORDER BY id`); `event_id` is stable across retries, replays and crash
-- recovery, and unique, so a change is never announced twice. The delivery
-- columns are the webhook dispatcher's; NULL/0 until it tries.
CREATE TABLE payment_notifications (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id         TEXT NOT NULL UNIQUE CHECK (length(event_id) BETWEEN 1 AND 256),
    type             TEXT NOT NULL CHECK (length(type) BETWEEN 1 AND 64),
    order_id         TEXT,
    payload          TEXT NOT NULL CHECK (json_valid(payload)),
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  TEXT,
    last_status      INTEGER,
    last_error       TEXT,
    delivered_at     TEXT,
    gave_up_at       TEXT
);

CREATE INDEX idx_payment_notifications_order ON payment_notifications (order_id, id)
    WHERE order_id IS NOT NULL;
CREATE INDEX idx_payment_notifications_created ON payment_notifications (created_at);
-- The webhook dispatcher's queue: what is neither delivered nor given up.
CREATE INDEX idx_payment_notifications_undelivered ON payment_notifications (id)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;

-- The free-text reason a person gave for a manual resolution (`resolve`).
ALTER TABLE order_audit ADD COLUMN note TEXT;
-- A manual resolution names the event it settles (`resolve`); finding
-- the open exceptions asks for it by event.
CREATE INDEX idx_order_audit_event ON order_audit (event_id) WHERE event_id IS NOT NULL;

-- A person's resolution of a payment that pays no order (`unknown_order`:
-- refunded to the payer, or void), which `order_audit` cannot hold. One per
-- event; with it the payment no longer needs a person (`review`).
CREATE TABLE payment_resolutions (
    event_id    INTEGER PRIMARY KEY REFERENCES contract_events (id),
    resolution  TEXT NOT NULL CHECK (resolution IN ('refunded', 'void')),
    actor       TEXT NOT NULL CHECK (length(actor) BETWEEN 1 AND 256),
    note        TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
