//! Failover: two replicas on one database at the shipped lease settings
//! (`ha.lease_ttl_ms` 10 s, `ha.renew_interval_ms` 2 s); the leader is
//! killed with SIGKILL while payments arrive, and the time until the standby's
//! first commit is measured, `ROUNDS` times (each round's standby leads the
//! next, against a fresh standby), on a fresh anvil chain.

use std::time::{Duration, Instant};

use super::support::chain::{order_ref, Chain};
use super::support::daemon::Daemon;
use super::support::db::{Backend, Db};
use serde_json::json;

use super::support::db::{Postgres, Sqlite};
use super::{env_with, pct, sorted};

/// Kills measured; the median is reported.
pub const ROUNDS: usize = 5;

/// Seconds from each `kill -9` of the leader to the standby's first commit
/// (seen as the checkpoint reaching the block of a payment mined after the
/// kill), sorted.
pub async fn failover(backend: Backend) -> Vec<f64> {
    // A chain of its own: the leader is at the head within a second.
    let chain = &Chain::start().await;
    let db = Db::on(backend).await;
    let first_ref = 900_000_000u64;
    db.insert_orders(&chain.buyers, first_ref, ROUNDS as u64, 5_000_000)
        .await;
    let env = env_with(chain, &db, &[("LIQPASS__LOG__LEVEL", "info")]);
    let mut leader = Daemon::spawn(&env);
    leader.logged("took the write lease", 1).await;
    let mut times = Vec::new();
    for round in 0..ROUNDS {
        let standby = Daemon::spawn(&env);
        standby
            .logged("standby: another replica holds the write lease", 1)
            .await;
        super::checkpoint_at_least(
            &mut leader,
            &db,
            chain.head().await,
            Duration::from_secs(60),
        )
        .await;
        leader.kill9();
        let killed = Instant::now();
        // A payment while nobody leads: the standby's first batch commits it.
        let receipt = chain
            .pay(
                chain.buyers[round % chain.buyers.len()],
                order_ref(first_ref + round as u64),
                5_000_000,
            )
            .await;
        let block = receipt.block_number.expect("mined") as i64;
        super::support::wait_for(
            "the standby's first commit",
            Duration::from_secs(60),
            || async { (db.checkpoint().await >= Some(block)).then_some(()) },
        )
        .await;
        times.push(killed.elapsed().as_secs_f64());
        leader = standby;
    }
    sorted(times)
}

/// The table row for `times`.
pub fn row(times: &[f64]) -> String {
    format!(
        "median {:.2} s, max {:.2} s over {} kills (lease TTL 10 s, renew 2 s; target <= 12 s)",
        pct(times, 0.5),
        times.last().copied().unwrap_or(f64::NAN),
        times.len()
    )
}

/// The failover rows, on each backend.
pub async fn rows(
    table: &mut Vec<(String, String)>,
    out: &mut serde_json::Map<String, serde_json::Value>,
) {
    for (backend, name) in [(Sqlite, "SQLite"), (Postgres, "PostgreSQL")] {
        let times = failover(backend).await;
        table.push((
            format!("failover: leader kill -9 -> standby's first commit ({name})"),
            row(&times),
        ));
        out.insert(
            format!("failover_{}_median_s", name.to_lowercase()),
            json!(pct(&times, 0.5)),
        );
    }
}
