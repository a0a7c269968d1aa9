-- Drops the whole contract, children first.
DROP TABLE indexer_lease;
DROP TABLE reorg_incidents;
DROP TABLE order_audit;
DROP TABLE block_hashes;
DROP TABLE sync_state;
DROP TABLE contract_events;
DROP TABLE orders;
