-- Late matching, driven by the orders that arrive late: when the order API
-- inserts an order (or changes its order_ref) while live unknown_order
-- events with that order_ref are stored, a trigger queues those events
-- here, in the order API's own statement; the indexer matches the queued
-- events in its next write transaction and deletes their rows. Its cost
-- follows the late orders, never the history of unknown_order events (an
-- outsider's payments to no order cost a lookup here, nothing per pass).
-- The order API's INSERT pays one index lookup (idx_contract_events_order_ref).
CREATE TABLE late_matches (
    event_id INTEGER PRIMARY KEY REFERENCES contract_events (id)
);

CREATE TRIGGER orders_late_match_insert AFTER INSERT ON orders
BEGIN
    INSERT OR IGNORE INTO late_matches (event_id)
    SELECT id FROM contract_events
    WHERE order_ref = NEW.order_ref AND match_status = 'unknown_order' AND removed = 0;
END;

CREATE TRIGGER orders_late_match_update AFTER UPDATE OF order_ref ON orders
BEGIN
    INSERT OR IGNORE INTO late_matches (event_id)
    SELECT id FROM contract_events
    WHERE order_ref = NEW.order_ref AND match_status = 'unknown_order' AND removed = 0;
END;

-- Events waiting for an order that exists already (the scan before this
-- migration would have matched them at its next pass), unless a person
-- settled them.
INSERT OR IGNORE INTO late_matches (event_id)
SELECT ce.id FROM contract_events ce JOIN orders o ON o.order_ref = ce.order_ref
WHERE ce.match_status = 'unknown_order' AND ce.removed = 0
  AND NOT EXISTS (SELECT 1 FROM payment_resolutions r WHERE r.event_id = ce.id);

-- Partial indexes, so that the daemon's lookups of waiting orders cost
-- what is waiting, not the history of orders: the pending-order sweep's
-- (pending orders by creation time; an abandoned checkout stays pending)
-- and the open reorg incidents' (orders still reversed). Each order enters
-- them at most while it waits.
CREATE INDEX idx_orders_pending ON orders (created_at)
    WHERE status = 'pending' AND payment_status = 'pending';
CREATE INDEX idx_orders_reversed ON orders (id) WHERE payment_status = 'reversed';
