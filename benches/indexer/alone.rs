//! The alone row (`--only alone`): a backfill of the bench chain with a
//! matched order for every payment and no other writer on the database, at
//! the shipped settings (SQLite's writes alone from the start:
//! `store::pace`), always paced (`database.alone_after_s = 0`, the write
//! budget of 2 ms and gap of 3 ms all along) and unbounded (`60000/0`);
//! and at each `database.alone_max_write_ms` of `LIQPASS_BENCH_ALONE_MS`
//! (comma-separated), when set. `LIQPASS_BENCH_NO_ORDERS=1`: the same
//! without orders (every payment `unknown_order`).

use super::order_api::{api_writes_at, ApiConn, Cadence};
use super::support::chain::Chain;
use super::support::db::{Db, Sqlite};
use super::{
    env_with, orders_for, orders_with, pct, sorted, timed_backfill, Refs, PACED, UNBOUNDED,
};

pub async fn rows(
    chain: &Chain,
    head: u64,
    first_ref: u64,
    payments: u64,
    refs: Refs,
    table: &mut Vec<(String, String)>,
) {
    let runs: [(&str, &[(&str, &str)]); 3] = [
        ("backfill, nobody else writing: shipped (alone)", &[]),
        ("the same, always paced (alone_after_s = 0)", PACED),
        (
            "the same, unbounded (60000/0, alone_after_s = 0)",
            UNBOUNDED,
        ),
    ];
    let budgets: Vec<String> = std::env::var("LIQPASS_BENCH_ALONE_MS")
        .unwrap_or_default()
        .split(',')
        .filter(|b| !b.is_empty())
        .map(str::to_owned)
        .collect();
    let swept: Vec<(String, [(&str, &str); 1])> = budgets
        .iter()
        .map(|b| {
            (
                format!("the same, alone at alone_max_write_ms = {b}"),
                [("LIQPASS__DATABASE__ALONE_MAX_WRITE_MS", b.as_str())],
            )
        })
        .collect();
    let runs = runs
        .iter()
        .map(|(l, e)| (l.to_string(), *e))
        .chain(swept.iter().map(|(l, e)| (l.clone(), &e[..])));
    let orders = std::env::var_os("LIQPASS_BENCH_NO_ORDERS").is_none();
    for (label, extra) in runs {
        let label = match (orders, refs) {
            (true, Refs::Counted) => label,
            (false, Refs::Counted) => format!("{label}, no orders"),
            (true, Refs::Hashed) => format!("shop chain: {label}"),
            (false, Refs::Hashed) => format!("shop chain: {label}, no orders"),
        };
        eprintln!("bench: {label}");
        let db = Db::on(Sqlite).await;
        if orders {
            orders_with(&db, chain, payments, first_ref, refs).await;
        }
        let env = env_with(chain, &db, extra);
        let (output, seconds) = timed_backfill(env, head).await;
        assert!(
            output.status.success(),
            "backfill failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stored = db.count("SELECT COUNT(*) FROM contract_events").await;
        table.push((
            label,
            format!(
                "{:.0} events/s ({stored} events in {seconds:.2} s, from launch)",
                stored as f64 / seconds
            ),
        ));
    }
}

/// Runs of the shipped backfill while an order API creates an order (and
/// reads it back) after random pauses of 0.1–3 s: what a writer that comes
/// unannounced waits for the lock, and what the backfill keeps of its rate.
/// `LIQPASS_BENCH_ALONE_AFTER` sets `database.alone_after_s` for it.
pub async fn sporadic_row(
    chain: &Chain,
    head: u64,
    first_ref: u64,
    payments: u64,
    table: &mut Vec<(String, String)>,
) {
    use rand::SeedableRng as _;
    const RUNS: u64 = 3;
    let (mut inserts, mut rates) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        eprintln!("bench: backfill with a sporadic order API, run {}", run + 1);
        let db = Db::on(Sqlite).await;
        orders_for(&db, chain, payments, first_ref).await;
        let after = std::env::var("LIQPASS_BENCH_ALONE_AFTER").ok();
        let extra: Vec<(&str, &str)> = after
            .iter()
            .map(|s| ("LIQPASS__DATABASE__ALONE_AFTER_S", s.as_str()))
            .collect();
        let env = env_with(chain, &db, &extra);
        let stop = tokio_util::sync::CancellationToken::new();
        let rng = rand_chacha::ChaCha8Rng::seed_from_u64(24 + run);
        let writes = tokio::spawn(api_writes_at(
            ApiConn::open(&db).await,
            stop.clone(),
            Cadence::Sporadic(Box::new(rng)),
        ));
        let (output, seconds) = timed_backfill(env, head).await;
        stop.cancel();
        let (w, _) = writes.await.expect("order API");
        assert!(output.status.success(), "backfill failed");
        let stored = db.count("SELECT COUNT(*) FROM contract_events").await;
        rates.push(stored as f64 / seconds);
        inserts.extend(w);
    }
    let w = sorted(inserts);
    let rates: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
    table.push((
        format!(
            "backfill with an order API inserting every 0.1–3 s ({}, 3 runs)",
            std::env::var("LIQPASS_BENCH_ALONE_AFTER")
                .map_or("shipped".into(), |s| format!("alone_after_s = {s}"))
        ),
        format!(
            "INSERT p50 {:.2} ms p99 {:.2} ms max {:.1} ms ({} inserts); backfill {} events/s",
            pct(&w, 0.5),
            pct(&w, 0.99),
            w.last().copied().unwrap_or(0.0),
            w.len(),
            rates.join(", ")
        ),
    ));
}
