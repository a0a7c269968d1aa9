-- Drops the late-match queue, its triggers and the partial indexes of
-- waiting orders (see 0011's up): a build before it scans every
-- unknown_order event for an order instead.
DROP INDEX idx_orders_reversed;
DROP INDEX idx_orders_pending;
DROP TRIGGER orders_late_match_update;
DROP TRIGGER orders_late_match_insert;
DROP TABLE late_matches;
