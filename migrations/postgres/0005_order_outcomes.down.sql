-- Back to the outcomes before 0005 (see migrations/sqlite/0009's down).
UPDATE contract_events SET match_status = CASE match_status
    WHEN 'order_cancelled' THEN 'duplicate_payment'
    WHEN 'order_expired' THEN 'late_payment'
    ELSE match_status END
WHERE match_status IN ('order_cancelled', 'order_expired');
ALTER TABLE contract_events DROP CONSTRAINT contract_events_match_status_check;
ALTER TABLE contract_events ADD CONSTRAINT contract_events_match_status_check
    CHECK (match_status IN ('matched', 'unknown_order', 'duplicate_payment',
                            'payer_mismatch', 'underpaid', 'overpaid',
                            'late_payment', 'wrong_destination'));
