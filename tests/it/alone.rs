//! SQLite's write pacing when nobody else writes (`store::pace`'s alone
//! rule): after `database.alone_after_s` without another connection's
//! commit the indexer's transactions grow; one commit of another connection
//! makes them short again at once, and after a quiet spell they grow again;
//! and the database ends as a run that never went alone.

use std::time::Duration;

use crate::support::chain::{order_ref, Chain};
use crate::support::daemon::{env_for, with, Daemon};
use crate::support::db::{Backend, Db};
use crate::support::proxy::RpcProxy;
use crate::support::{equals_a_clean_run, metric, wait_for};

const PREMIUM: i64 = 5_000_000;
const ALONE: &str = "liqpass_indexer_db_writes_alone";

/// Waits until the alone gauge reads `want` (1 or 0).
async fn alone_is(base: &str, want: f64, what: &str) {
    wait_for(what, Duration::from_secs(30), || async {
        (metric(base, ALONE).await == Some(want)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn another_connections_commit_shortens_the_writes_until_a_quiet_spell_has_passed() {
    let chain = Chain::start().await;
    let buyer = chain.buyers[0];
    // 50 blocks of 20 payments, then empty blocks: a catch-up of one block
    // per getLogs behind a slow proxy lasts long enough to watch.
    for b in 0..50u64 {
        chain
            .emit_many(buyer, order_ref(10_000 + b * 20), 20, PREMIUM as u64)
            .await;
    }
    chain.mine(1_500).await;
    let db = Db::new().await;
    db.insert_orders(&[buyer], 10_000, 1_000, PREMIUM).await;
    let proxy = RpcProxy::start(&chain.rpc_url()).await;
    proxy.slow(Duration::from_millis(20));
    let env = with(
        &env_for(&chain, &db),
        &[
            ("LIQPASS__CHAIN__RPC_URL", proxy.url()),
            ("LIQPASS__CHAIN__REORG_WINDOW", "4".into()),
            ("LIQPASS__CHAIN__MAX_BLOCK_RANGE", "1".into()),
            ("LIQPASS__CHAIN__MAX_CONCURRENT_REQUESTS", "1".into()),
            ("LIQPASS__DATABASE__ALONE_AFTER_S", "1".into()),
        ],
    );
    let daemon = Daemon::spawn(&env);
    let base = format!("http://{}", daemon.http_addr().await);

    alone_is(&base, 1.0, "the writes to go alone after a quiet second").await;
    // Another connection (the test's, as the order API's would) commits.
    db.execute("CREATE TABLE order_api_scratch (x INTEGER)")
        .await;
    db.execute("INSERT INTO order_api_scratch VALUES (1)").await;
    alone_is(&base, 0.0, "another connection's commit to end it").await;
    alone_is(
        &base,
        1.0,
        "the writes to go alone again after a quiet second",
    )
    .await;
    let head = chain.head().await as i64;
    assert!(
        db.checkpoint().await < Some(head),
        "all this happened during the catch-up"
    );

    equals_a_clean_run(
        &chain,
        &db,
        Backend::Sqlite,
        &[buyer],
        (10_000, 1_000, PREMIUM),
    )
    .await;
    drop(daemon);
}
