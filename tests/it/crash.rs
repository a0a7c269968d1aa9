//! Crashes and connection faults never lose or double a payment: `kill -9`
//! at seeded random moments (near the head, and with deep ranges in
//! flight), a getLogs range the provider refuses, a websocket cut
//! mid-stream.

use std::time::Duration;

use crate::support::chain::{order_ref, Chain};
use crate::support::daemon::{env_for, Daemon};
use crate::support::db::{Backend, Db};
use crate::support::proxy::{RpcProxy, TcpProxy};
use crate::support::{caught_up, equals_a_clean_run};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const PREMIUM: u64 = 5_000_000;

/// The seed of the kill schedule; change it to explore other schedules.
const KILL_SEED: u64 = 0x11_9a55;

both_backends!(
    kill_9_at_random_moments_ends_in_the_same_database_as_a_run_without_kills,
    kill_9_at_random_moments_ends_in_the_same_database_as_a_run_without_kills_on
);
async fn kill_9_at_random_moments_ends_in_the_same_database_as_a_run_without_kills_on(
    backend: Backend,
) {
    const PAYMENTS: u64 = 60;
    const KILLS: usize = 20;
    let chain = Chain::start().await;
    let killed = Db::on(backend).await;
    killed
        .insert_orders(&chain.buyers, 1_000, PAYMENTS, PREMIUM as i64)
        .await;
    let env = env_for(&chain, &killed);
    let mut rng = ChaCha8Rng::seed_from_u64(KILL_SEED);

    let mut daemon = Some(Daemon::spawn(&env));
    let mut kills = 0;
    for i in 0..PAYMENTS {
        chain
            .pay(chain.buyers[i as usize % 8], order_ref(1_000 + i), PREMIUM)
            .await;
        if i % 5 == 4 {
            // Some payments duplicated, some blocks mined, to vary batch shapes.
            chain.mine(rng.random_range(0..3)).await;
        }
        if kills < KILLS && rng.random_bool(0.4) {
            // Let the daemon get somewhere first (a random short while, with
            // a bounded wait for its first commit so kills land mid-work).
            let pause = Duration::from_millis(rng.random_range(0..40));
            tokio::time::sleep(pause).await;
            daemon.take().expect("running").kill9();
            kills += 1;
            daemon = Some(Daemon::spawn(&env));
        }
    }
    while kills < KILLS {
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..40))).await;
        daemon.take().expect("running").kill9();
        kills += 1;
        daemon = Some(Daemon::spawn(&env));
    }
    chain.mine(3).await;
    caught_up(&chain, &killed).await;
    for i in 0..PAYMENTS {
        killed
            .wait_payment_status(&format!("ord_{i:03}"), "paid")
            .await;
    }
    drop(daemon);

    assert_eq!(kills, KILLS);
    assert_eq!(killed.events().await.len() as u64, PAYMENTS);
    // The reference: a fresh database indexed once, without kills.
    let shape = (1_000, PAYMENTS, PREMIUM as i64);
    equals_a_clean_run(&chain, &killed, backend, &chain.buyers, shape).await;
    assert_eq!(
        killed.notifications().await.len() as u64,
        2 * PAYMENTS,
        "confirming and paid, each announced once"
    );
}

#[tokio::test]
async fn kill_9_with_deep_ranges_in_flight_ends_in_the_same_database_as_a_clean_run() {
    const PAYMENTS: u64 = 30;
    const KILLS: usize = 10;
    let chain = Chain::start().await;
    // Sparse payments over ~2,000 blocks, all made before the daemon starts:
    // the catch-up is deep ranges, many in flight behind a slow proxy.
    for i in 0..PAYMENTS {
        chain
            .pay(chain.buyers[i as usize % 8], order_ref(3_000 + i), PREMIUM)
            .await;
        chain.mine(60).await;
    }
    let proxy = RpcProxy::start(&chain.rpc_url()).await;
    proxy.slow(Duration::from_millis(60));
    let killed = Db::new().await;
    killed
        .insert_orders(&chain.buyers, 3_000, PAYMENTS, PREMIUM as i64)
        .await;
    let mut env = env_for(&chain, &killed);
    env.insert("LIQPASS__CHAIN__RPC_URL".into(), proxy.url());
    env.insert("LIQPASS__CHAIN__MAX_BLOCK_RANGE".into(), "4".into());
    let mut rng = ChaCha8Rng::seed_from_u64(KILL_SEED);
    let head = chain.head().await as i64;
    let mut checkpoints = Vec::new();
    for _ in 0..KILLS {
        let daemon = Daemon::spawn(&env);
        daemon.logged("took the write lease", 1).await;
        // Commits come every second at most: some kills land before the
        // first, most between two, with ranges in flight.
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..900))).await;
        daemon.kill9();
        let checkpoint = killed.checkpoint().await.unwrap_or(-1);
        checkpoints.push(checkpoint);
        if checkpoint >= head - 64 {
            break; // past the deep phase
        }
    }
    let mid_catch_up = checkpoints.iter().filter(|c| (0..head - 64).contains(*c));
    assert!(
        mid_catch_up.count() >= 3,
        "kills should land mid-catch-up: {checkpoints:?} of {head}"
    );
    let _last = Daemon::spawn(&env);
    caught_up(&chain, &killed).await;
    for i in 0..PAYMENTS {
        killed
            .wait_payment_status(&format!("ord_{i:03}"), "paid")
            .await;
    }
    assert!(proxy.most_logs_in_flight() >= 2, "ranges were in flight");

    eprintln!("checkpoints at the kills: {checkpoints:?} (head {head})");
    assert_eq!(killed.events().await.len() as u64, PAYMENTS);
    let shape = (3_000, PAYMENTS, PREMIUM as i64);
    equals_a_clean_run(&chain, &killed, Backend::Sqlite, &chain.buyers, shape).await;
}

#[tokio::test]
async fn a_range_holding_more_logs_than_the_provider_allows_is_split() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    let alice = chain.buyers[0];
    // 300 payments over ~30 blocks, 10 per transaction.
    for block in 0..30u64 {
        chain
            .emit_many(alice, order_ref(10_000 + block * 10), 10, PREMIUM)
            .await;
    }
    chain.mine(3).await;
    let proxy = RpcProxy::start(&chain.rpc_url()).await;
    proxy.refuse_ranges_over(4);
    let mut env = env_for(&chain, &db);
    env.insert("LIQPASS__CHAIN__RPC_URL".into(), proxy.url());
    env.insert("LIQPASS__CHAIN__MAX_BLOCK_RANGE".into(), "1000".into());
    env.insert("LIQPASS__CHAIN__REORG_WINDOW".into(), "3".into());
    env.insert("LIQPASS__CHAIN__CONFIRMATIONS".into(), "1".into());
    let _daemon = Daemon::spawn(&env);
    caught_up(&chain, &db).await;
    assert_eq!(db.events().await.len(), 300, "every log, once");
    assert!(proxy.refused_ranges() > 0, "the proxy refused some ranges");
}

#[tokio::test]
async fn a_websocket_cut_mid_stream_loses_and_doubles_nothing() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    let proxy = TcpProxy::start(chain.socket_addr()).await;
    db.insert_orders(&chain.buyers, 1_000, 20, PREMIUM as i64)
        .await;
    let mut env = env_for(&chain, &db);
    env.insert("LIQPASS__CHAIN__RPC_URL".into(), proxy.url("ws"));
    let daemon = Daemon::spawn(&env);
    caught_up(&chain, &db).await;
    for i in 0..20u64 {
        chain
            .pay(chain.buyers[i as usize % 8], order_ref(1_000 + i), PREMIUM)
            .await;
        if i % 5 == 2 {
            proxy.cut();
        }
    }
    chain.mine(3).await;
    caught_up(&chain, &db).await;
    for i in 0..20 {
        db.wait_payment_status(&format!("ord_{i:03}"), "paid").await;
    }
    assert_eq!(db.events().await.len(), 20);
    assert!(
        proxy.connections.load(std::sync::atomic::Ordering::Relaxed) > 1,
        "it reconnected"
    );
    drop(daemon);
}
