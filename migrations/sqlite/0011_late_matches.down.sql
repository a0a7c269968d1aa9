-- Drops the late-match queue and its triggers (see 0011's up): a build
-- before it scans every unknown_order event for an order instead.
DROP TRIGGER orders_late_match_update;
DROP TRIGGER orders_late_match_insert;
DROP TABLE late_matches;
