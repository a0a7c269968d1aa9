//! liqpass-indexer follows the LiqPass checkout contract, stores every
//! `PremiumPaid` log in SQLite or PostgreSQL and reconciles it with the order it pays.
//!
//! Data flow: `chain::source` fetches logs (ranged `eth_getLogs` when far
//! behind; near the head, headers, and logs by block hash where a header's
//! bloom may hold ours: `chain::bloom`) → `chain::decode` turns them into
//! `domain::Payment`s (validated: a log no `emit` can produce is kept raw
//! as `domain::Malformed`, never paid; the contract's treasury moves come
//! along) → `indexer` writes each batch in one transaction
//! through `store` (one write lease: `ha`), applying `reconcile`'s pure rules → after the
//! commit, `metrics` and `health` are updated and `http` serves them. Each
//! change to an order, and each payment that needs a person, is announced in
//! the same transaction as a row of the outbox (`store::outbox`), which
//! `webhooks` delivers, signed, when a receiver is configured. With
//! `chain.verify_rpc_urls` set, a final payment counts (`paid`) only after
//! `indexer::verify` has had its log confirmed by independent endpoints.
//! Beside it, the leader's completeness task (`indexer::audit`) asks for
//! final ranges again, and for pending orders by orderId, and stores
//! through the same write path whatever an answer had left out.
//!
//! | module | job |
//! | --- | --- |
//! | `config` | typed, layered, validated settings |
//! | `telemetry` | tracing subscriber |
//! | `domain` | plain types |
//! | `chain` | bindings, decode, bloom check, range sizing, reorg window, RPC source |
//! | `store` | pool, migrations, events, orders, sync state, verification outcomes, the outbox, exceptions (`review`, `resolve`, `order`), the audit's position, malformed logs, the treasury's moves |
//! | `reconcile` | pure matching rules |
//! | `indexer` | the loop that knows every stage (and the verification step), and the completeness task beside it (`audit`) |
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
