-- The late-match queue (see migrations/sqlite/0011): the same table, and a
-- trigger on orders that queues the live unknown_order events of an order
-- inserted late (or whose order_ref changed). The function's search_path is
-- the one this migration runs under (database.schema), whatever the order
-- API's connection uses.
CREATE TABLE late_matches (
    event_id BIGINT PRIMARY KEY REFERENCES contract_events (id)
);

CREATE FUNCTION liqpass_queue_late_match() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO late_matches (event_id)
    SELECT id FROM contract_events
    WHERE order_ref = NEW.order_ref AND match_status = 'unknown_order' AND removed = 0
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER orders_late_match AFTER INSERT OR UPDATE OF order_ref ON orders
FOR EACH ROW EXECUTE FUNCTION liqpass_queue_late_match();

INSERT INTO late_matches (event_id)
SELECT ce.id FROM contract_events ce JOIN orders o ON o.order_ref = ce.order_ref
WHERE ce.match_status = 'unknown_order' AND ce.removed = 0
  AND NOT EXISTS (SELECT 1 FROM payment_resolutions r WHERE r.event_id = ce.id)
ON CONFLICT DO NOTHING;

-- Partial indexes, so that the daemon's lookups of waiting orders cost
-- what is waiting, not the history of orders: the pending-order sweep's
-- (pending orders by creation time; an abandoned checkout stays pending)
-- and the open reorg incidents' (orders still reversed). Each order enters
-- them at most while it waits.
CREATE INDEX idx_orders_pending ON orders (created_at)
    WHERE status = 'pending' AND payment_status = 'pending';
CREATE INDEX idx_orders_reversed ON orders (id) WHERE payment_status = 'reversed';
