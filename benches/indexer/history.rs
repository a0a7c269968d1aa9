//! The history rows (`--only history`): the same catch-up and live blocks
//! on an empty database and on one holding a history of `HISTORY` payments
//! (a tenth of them `unknown_order`; `support::history`), on each backend,
//! while the order API creates orders. The write path's lock hold per
//! transaction (from the daemon's `write lock held` lines) and
//! the order API's INSERT latency must match the empty database's within
//! 20 %: no statement's cost grows with the history.
//! `LIQPASS_BENCH_SQL_LOG=DIR` keeps each daemon's log with every statement
//! and its time (sqlx's debug lines), to see where the time goes.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::order_api::{api_writes, ApiConn};
use super::support::chain::order_ref;
use super::support::daemon::Daemon;
use super::support::db::{Backend, Db};
use super::support::history;
use super::{chain_after, checkpoint_at_least, env_with, orders_for, pct, sorted};

/// Payments already stored in the history run, and how many a block: the
/// history's blocks end below `HISTORY_BLOCKS`, where the catch-up's begin.
const HISTORY: u64 = 1_000_000;
const HISTORY_PER_BLOCK: u64 = 1_000;
const HISTORY_BLOCKS: u64 = 10 + HISTORY / HISTORY_PER_BLOCK + 10;
/// Payments of the catch-up (cached chain), and their blocks.
const CATCHUP: u64 = 20_000;
const CATCHUP_BLOCKS: u64 = 2_000;
const FIRST_REF: u64 = 50_000_000;
/// Live blocks after the catch-up, one payment each.
const LIVE: u64 = 300;

/// What one run measured.
struct Run {
    catchup_rate: f64,
    /// Lock hold per write transaction (ms), sorted.
    held: Vec<f64>,
    /// The order API's INSERTs (ms), sorted.
    inserts: Vec<f64>,
}

impl Run {
    fn row(&self) -> String {
        format!(
            "catch-up {:.0} events/s; lock hold p50 {:.2} ms p99 {:.2} ms ({} transactions); \
             order API INSERT p99 {:.2} ms max {:.1} ms ({} orders)",
            self.catchup_rate,
            pct(&self.held, 0.5),
            pct(&self.held, 0.99),
            self.held.len(),
            pct(&self.inserts, 0.99),
            self.inserts.last().copied().unwrap_or(0.0),
            self.inserts.len(),
        )
    }
}

pub async fn rows(
    table: &mut Vec<(String, String)>,
    out: &mut serde_json::Map<String, serde_json::Value>,
) {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let name = format!("{backend:?}");
        let empty = run(backend, 0).await;
        table.push((format!("history: {name}, empty database"), empty.row()));
        let full = run(backend, HISTORY).await;
        table.push((
            format!("history: {name}, {HISTORY} payments stored"),
            full.row(),
        ));
        let ratio = |f: fn(&Run) -> f64| f(&full) / f(&empty);
        let ratios = [
            ("lock hold p50", ratio(|r| pct(&r.held, 0.5))),
            ("lock hold p99", ratio(|r| pct(&r.held, 0.99))),
            ("INSERT p99", ratio(|r| pct(&r.inserts, 0.99))),
            (
                "INSERT max",
                ratio(|r| r.inserts.last().copied().unwrap_or(0.0)),
            ),
        ];
        let within = ratios.iter().all(|(_, r)| *r <= 1.2);
        table.push((
            format!("history: {name}, stored / empty (target <= 1.20 each)"),
            format!(
                "{}: {}",
                ratios
                    .iter()
                    .map(|(k, r)| format!("{k} {r:.2}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if within { "within" } else { "NOT within" }
            ),
        ));
        for (k, r) in ratios {
            out.insert(
                format!("history_{}_{}", name.to_lowercase(), k.replace(' ', "_")),
                json!(r),
            );
        }
    }
}

/// One run: `stored` payments of history, then the catch-up of the cached
/// chain and `LIVE` live blocks, the order API creating orders throughout.
async fn run(backend: Backend, stored: u64) -> Run {
    let chain = chain_after(HISTORY_BLOCKS, CATCHUP, CATCHUP_BLOCKS, FIRST_REF).await;
    let db = Db::on(backend).await;
    if stored > 0 {
        let started = Instant::now();
        eprintln!("bench: history of {stored} payments on {backend:?}");
        history::load(&db, &chain, stored, HISTORY_PER_BLOCK).await;
        if backend == Backend::Postgres {
            // As a database that has held its history for a while: vacuumed
            // and analyzed (else autovacuum starts on the fresh million rows
            // in the middle of the run and holds ANALYZE's lock).
            db.execute("VACUUM ANALYZE").await;
        }
        eprintln!(
            "bench: history loaded in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    orders_for(&db, &chain, CATCHUP, FIRST_REF).await;
    let head = chain.head().await;
    // LIQPASS_BENCH_SQL_LOG=DIR: every statement with its time, in
    // DIR/history-<backend>-<stored>.log (where the time goes).
    let sql_log = std::env::var("LIQPASS_BENCH_SQL_LOG").ok();
    let filter = if sql_log.is_some() {
        "warn,liqpass_indexer::indexer::writer=debug,sqlx::query=debug"
    } else {
        "warn,liqpass_indexer::indexer::writer=debug"
    };
    let env = env_with(
        &chain,
        &db,
        &[("LIQPASS__LOG__FORMAT", "json"), ("RUST_LOG", filter)],
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let writes = tokio::spawn(api_writes(ApiConn::open(&db).await, stop.clone()));
    let started = Instant::now();
    let mut daemon = Daemon::spawn(&env);
    checkpoint_at_least(&mut daemon, &db, head, Duration::from_secs(1800)).await;
    let catchup_rate = CATCHUP as f64 / started.elapsed().as_secs_f64();

    let buyer = chain.buyers[0];
    for k in 0..LIVE {
        let id = format!("live_{k}");
        db.insert_order(&id, order_ref(FIRST_REF + CATCHUP + k), buyer, 5_000_000)
            .await;
        chain
            .pay(buyer, order_ref(FIRST_REF + CATCHUP + k), 5_000_000)
            .await;
    }
    chain.mine(2).await;
    checkpoint_at_least(
        &mut daemon,
        &db,
        chain.head().await,
        Duration::from_secs(300),
    )
    .await;
    stop.cancel();
    let (inserts, _) = writes.await.expect("the order API");
    daemon.signal("TERM");
    daemon.wait_exit(Duration::from_secs(60)).await;
    if let Some(dir) = sql_log {
        let path = format!("{dir}/history-{backend:?}-{stored}.log");
        std::fs::write(&path, daemon.logs()).expect("LIQPASS_BENCH_SQL_LOG: a writable directory");
    }
    let held = daemon
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "write lock held")
        .filter_map(|v| v["held_ms"].as_f64())
        .collect();
    Run {
        catchup_rate,
        held: sorted(held),
        inserts: sorted(inserts),
    }
}
