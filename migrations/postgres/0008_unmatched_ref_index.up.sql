-- A cheaper write per matched payment: the index on contract_events.order_ref
-- keeps only the events that did not pay their order (match_status other
-- than 'matched'): the ones a person looks up by order_ref (`resolve`,
-- `order`). A matched event is found by its order_id, which it always has
-- (idx_contract_events_order_id): one random-key index fewer written per
-- matched payment. The late-match trigger reads idx_contract_events_unknown.
DROP INDEX idx_contract_events_order_ref;
CREATE INDEX idx_contract_events_unmatched_ref ON contract_events (order_ref)
    WHERE match_status <> 'matched';
