-- The completeness audit's durable position (README, "Completeness"): per
-- (chain, contract), every block up to `audited_block` was asked for again
-- once final, and every log missing from `contract_events` was stored. No
-- row: nothing audited yet (the audit starts at chain.start_block). Written
-- by the leader only, in fenced transactions; a reorg rolled back below it
-- lowers it, so that the new branch is audited too.
CREATE TABLE audit_state (
    chain_id         INTEGER NOT NULL CHECK (chain_id > 0),
    contract_address TEXT NOT NULL CHECK (length(contract_address) = 42),
    audited_block    INTEGER NOT NULL CHECK (audited_block >= 0),
    updated_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
                     CHECK (julianday(updated_at) IS NOT NULL),
    PRIMARY KEY (chain_id, contract_address)
);
