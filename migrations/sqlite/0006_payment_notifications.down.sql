-- Drops the outbox and the resolution note: a build before 0006 neither
-- writes nor reads them.
DROP TABLE payment_resolutions;
DROP INDEX idx_order_audit_event;
ALTER TABLE order_audit DROP COLUMN note;
DROP TABLE payment_notifications;
