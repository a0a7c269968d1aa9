-- Drops the outbox and the resolution note (see migrations/sqlite/0006).
ALTER TABLE order_audit DROP COLUMN note;
DROP TABLE payment_notifications;
