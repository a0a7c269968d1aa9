//! The catch-up row: a restarted daemon indexing a gap of empty blocks
//! holding one payment, timed from launch. The gap's chain and database are
//! made once and cached (`cache_dir`).

use std::time::{Duration, Instant};

use alloy::providers::ext::AnvilApi;

use super::support::chain::{order_ref, Chain};
use super::support::daemon::Daemon;
use super::support::db::Db;
use super::{cache_dir, checkpoint_at_least, env_with, load, save};

/// Seconds from launch until a restarted daemon has indexed a gap of `gap`
/// blocks holding one payment, and the events it stored.
pub async fn catch_up(gap: u64) -> (f64, i64) {
    // History pruned, as in `chain_with`.
    let args = ["--prune-history"];
    let state = cache_dir().join(format!("gap-{gap}.json.gz"));
    let saved_db = cache_dir().join(format!("gap-{gap}.db"));
    if !(state.exists() && saved_db.exists()) {
        make_gap(gap, &args, &state, &saved_db).await;
    }
    let chain = load(&state, &args).await;
    let db = Db::copy_of(&saved_db).await;
    let target = chain.head().await;
    let mut daemon = Daemon::spawn(&env_with(&chain, &db, &[]));
    let started = Instant::now();
    checkpoint_at_least(&mut daemon, &db, target, Duration::from_secs(600)).await;
    let took = started.elapsed().as_secs_f64();
    drop(daemon);
    (took, db.count("SELECT COUNT(*) FROM contract_events").await)
}

/// The gap's chain and the database of a daemon killed before it: the daemon
/// indexes a fresh chain to its head and is killed; then one payment and
/// `gap` - 1 empty blocks are mined. anvil mines empty blocks slowly and
/// ever more slowly (10k in 53 s, the next 10k in 88 s), so both are cached.
async fn make_gap(gap: u64, args: &[&str], state: &std::path::Path, saved_db: &std::path::Path) {
    let chain = Chain::start_with(args).await;
    let db = Db::new().await;
    let mut daemon = Daemon::spawn(&env_with(&chain, &db, &[]));
    checkpoint_at_least(
        &mut daemon,
        &db,
        chain.head().await,
        Duration::from_secs(60),
    )
    .await;
    drop(daemon);
    db.save_to(saved_db).await;
    chain.pay(chain.buyers[1], order_ref(1), 5_000_000).await;
    let mining = Instant::now();
    let mut left = gap.saturating_sub(1);
    while left > 0 {
        let n = left.min(10_000);
        chain
            .provider
            .anvil_mine(Some(n), None)
            .await
            .expect("anvil_mine");
        left -= n;
        eprintln!(
            "bench: gap {}/{gap} blocks mined ({:.0} s)",
            gap - left,
            mining.elapsed().as_secs_f64()
        );
    }
    save(&chain, state).await;
}
