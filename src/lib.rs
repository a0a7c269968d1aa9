//! liqpass-indexer follows the LiqPass checkout contract, stores every
//! `PremiumPaid` log in SQLite or PostgreSQL and reconciles it with the order it pays.
//!
//! Data flow, as stages that each own their state:
//!
//! ```text
//! fetch stage (a task of its own)          writer (owns store, checkpoint)      leader-only tasks
//! ranges in flight, refusals, sizing  ──>   one transaction per part of a   ──>  completeness (indexer::audit)
//! near the head: headers, bloom,   bounded  batch: events, reconcile, reorg      verification (indexer::verify)
//! logs by block hash, decode,      channel  undo, finality, outbox,              outbox retention (indexer::retention)
//! timestamps (indexer::fetch,               checkpoint (indexer::writer,         webhooks (the outbox, signed)
//! indexer::flight, indexer::batch)          indexer::write); SQLite pacing
//!                                           behind store::write
//! ```
//!
//! `chain::source` fetches logs, in the fetch stage's own task (ranged
//! `eth_getLogs` far behind: `indexer::flight`; near the head, headers and
//! logs by block hash where a header's bloom may hold ours: `chain::bloom`,
//! `indexer::fetch`)
//! → `chain::decode` turns them into `domain::Payment`s (validated: a log no
//! `emit` can produce is kept raw as `domain::Malformed`, never paid; the
//! treasury's moves come along; `indexer::batch` is what the fetch stage
//! hands over) → the writer stage (`indexer::writer`, owning the store and
//! the checkpoint; `indexer::write`, the transaction's work) writes each part of a batch in one transaction through
//! `store` (fenced by the write lease: `ha`; spaced on SQLite by
//! `store::pace`), applying `reconcile`'s pure rules → after the commit,
//! `metrics` and `health` are updated and `http` serves them. Each change to
//! an order, and each payment that needs a person, is announced in the same
//! transaction as a row of the outbox (`store::outbox`). Beside the writer,
//! for each term of the lease, leader-only tasks: `webhooks` delivers the
//! outbox; `indexer::verify` has final payments confirmed by independent
//! endpoints (with `chain.verify_rpc_urls`, only that promotes them to
//! `paid`); `indexer::audit` asks for final ranges again and for pending
//! orders by orderId, and stores through the same write path whatever an
//! answer had left out; `indexer::retention` prunes the outbox.
//!
//! | module | job |
//! | --- | --- |
//! | `config` | typed, layered, validated settings, by one key table (`KEYS`) |
//! | `secret` | secrets and URLs printed only redacted (a leaf) |
//! | `telemetry` | tracing subscriber |
//! | `domain` | plain types |
//! | `chain` | bindings, decode, bloom check, range sizing, reorg window, RPC source over a bounded HTTP transport (`http`) |
//! | `store` | one interface over SQLite and PostgreSQL: pool, migrations, pacing (`pace`), events, orders, the checkpoint and block hashes, verification outcomes, the outbox, exceptions (`review`, `resolve`, `order`), the audit's position, malformed logs, the treasury's moves |
//! | `reconcile` | pure matching rules |
//! | `indexer` | the wiring of the stages: the fetch stage (`fetch`, `flight`), what one hands the other (`batch`), the writer (`writer`, `write`), and the leader-only tasks beside it (`audit`, `verify`, `retention`) |
//! | `http`, `metrics`, `health` | what operators see |
//! | `ha` | the write lease: one leader, standbys, the fence |
//! | `webhooks` | the outbox delivered as signed webhooks (leader only) |
//! | `retry` | the one backoff policy |
//! | `app`, `cli` | wiring and commands |
#![forbid(unsafe_code)]

pub mod app;
pub mod chain;
pub mod cli;
pub mod config;
pub mod domain;
pub mod ha;
pub mod health;
pub mod http;
pub mod indexer;
pub mod metrics;
pub mod reconcile;
pub mod retry;
pub mod secret;
pub mod store;
pub mod telemetry;
pub mod webhooks;

#[cfg(test)]
#[path = "docs_tests.rs"]
mod docs_tests;
