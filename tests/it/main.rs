//! The integration tests, one binary (it links alloy once): a module per
//! area, all on the shared harness in `tests/support` (a real anvil, a
//! temporary SQLite database or a database of the one throwaway PostgreSQL
//! cluster this binary starts, the real `liqpass-indexer` binary). Run one
//! area with `cargo test --test it <area>::`.

#[path = "../support/mod.rs"]
#[macro_use]
mod support;

mod alone;
mod cli;
mod completeness;
mod crash;
mod faults;
mod fences;
mod ha;
mod hostile;
mod indexer;
mod ops;
mod outbox;
mod plans;
mod postgres;
mod providers;
mod rate_limits;
mod reorg;
mod resolve;
mod store;
mod trust;
mod verify;
mod webhooks;
