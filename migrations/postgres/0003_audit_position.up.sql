-- The completeness audit's durable position (see migrations/sqlite/0007):
-- the same columns and meanings; times are timestamptz.
CREATE TABLE audit_state (
    chain_id         BIGINT NOT NULL CHECK (chain_id > 0),
    contract_address TEXT NOT NULL CHECK (length(contract_address) = 42),
    audited_block    BIGINT NOT NULL CHECK (audited_block >= 0),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (chain_id, contract_address)
);
