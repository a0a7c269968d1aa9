-- `order_cancelled` and `order_expired` (see migrations/sqlite/0009).
ALTER TABLE contract_events DROP CONSTRAINT contract_events_match_status_check;
ALTER TABLE contract_events ADD CONSTRAINT contract_events_match_status_check
    CHECK (match_status IN ('matched', 'unknown_order', 'duplicate_payment',
                            'payer_mismatch', 'underpaid', 'overpaid',
                            'late_payment', 'wrong_destination',
                            'order_cancelled', 'order_expired'));
