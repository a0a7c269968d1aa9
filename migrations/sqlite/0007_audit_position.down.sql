-- Drops the audit's position: a build before 0007 does not audit.
DROP TABLE audit_state;
