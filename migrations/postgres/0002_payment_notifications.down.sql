-- Drops the outbox and the resolution note (see migrations/sqlite/0006).
DROP TABLE payment_resolutions;
DROP INDEX idx_order_audit_event;
ALTER TABLE order_audit DROP COLUMN note;
DROP TABLE payment_notifications;
