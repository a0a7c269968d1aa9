DROP INDEX idx_contract_events_unmatched_ref;
CREATE INDEX idx_contract_events_order_ref ON contract_events (order_ref);
