-- Drops the late-match queue and its trigger (see 0007's up).
DROP TRIGGER orders_late_match ON orders;
DROP FUNCTION liqpass_queue_late_match();
DROP TABLE late_matches;
