-- Drops the late-match queue, its trigger and the partial indexes of
-- waiting orders (see 0007's up).
DROP INDEX idx_orders_reversed;
DROP INDEX idx_orders_pending;
DROP TRIGGER orders_late_match ON orders;
DROP FUNCTION liqpass_queue_late_match();
DROP TABLE late_matches;
