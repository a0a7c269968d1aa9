//! Reorgs made by anvil (`anvil_reorg`, `evm_snapshot`/`evm_revert`): the
//! database always ends true to the canonical chain.

use std::time::Duration;

use crate::support::chain::{order_ref, Chain};
use crate::support::daemon::{env_for, Daemon};
use crate::support::db::{Backend, Db};
use crate::support::wait_for;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const PREMIUM: u64 = 5_000_000;
const LONG: Duration = Duration::from_secs(60);
/// The seed of the kill-during-rollback schedule.
const KILL_SEED: u64 = 0x5eed_4e06;

/// Waits until the stored checkpoint hash is the node's hash at the head.
async fn synced(chain: &Chain, db: &Db) {
    let head = chain.head().await;
    let hash = format!("{:#x}", chain.block_hash(head).await);
    wait_for(
        "the indexer to sync to the canonical head",
        LONG,
        || async {
            let stored = db.checkpoint_ref().await;
            (stored == Some((head as i64, hash.clone()))).then_some(())
        },
    )
    .await;
}

/// A deep confirmation depth, so that these reorgs never touch paid orders.
fn env(chain: &Chain, db: &Db) -> std::collections::BTreeMap<String, String> {
    let mut env = env_for(chain, db);
    env.insert("LIQPASS__CHAIN__CONFIRMATIONS".into(), "40".into());
    env.insert("LIQPASS__CHAIN__REORG_WINDOW".into(), "64".into());
    env
}

both_backends!(
    reorgs_of_depth_1_2_5_and_20_remove_the_orphaned_payment,
    reorgs_of_depth_1_2_5_and_20_remove_the_orphaned_payment_on
);
async fn reorgs_of_depth_1_2_5_and_20_remove_the_orphaned_payment_on(backend: Backend) {
    for depth in [1u64, 2, 5, 20] {
        let chain = Chain::start().await;
        let db = Db::on(backend).await;
        let buyer = chain.buyers[0];
        db.insert_order("ord_1", order_ref(1), buyer, PREMIUM as i64)
            .await;
        let _daemon = Daemon::spawn(&env(&chain, &db));
        chain.pay(buyer, order_ref(1), PREMIUM).await;
        chain.mine(depth - 1).await; // the payment's block is now `depth` deep
        db.wait_payment_status("ord_1", "confirming").await;
        synced(&chain, &db).await;

        chain.reorg(depth, vec![]).await;
        chain.mine(1).await;
        synced(&chain, &db).await;
        db.wait_payment_status("ord_1", "pending").await;
        let events = db.events().await;
        assert_eq!(
            events.len(),
            1,
            "depth {depth}: the row stays, soft-deleted"
        );
        assert!(events[0].removed, "depth {depth}");
        let reasons: Vec<_> = db.audit().await.into_iter().map(|a| a.1).collect();
        assert_eq!(reasons, ["payment_seen", "reorg"], "depth {depth}");
        assert_eq!(
            db.count("SELECT COUNT(*) FROM orders WHERE payment_status = 'pending'")
                .await,
            1
        );
    }
}

both_backends!(
    a_payment_re_included_by_the_reorg_is_matched_exactly_once,
    a_payment_re_included_by_the_reorg_is_matched_exactly_once_on
);
async fn a_payment_re_included_by_the_reorg_is_matched_exactly_once_on(backend: Backend) {
    let chain = Chain::start().await;
    let db = Db::on(backend).await;
    let buyer = chain.buyers[0];
    db.insert_order("ord_1", order_ref(1), buyer, PREMIUM as i64)
        .await;
    let mut env = env(&chain, &db);
    env.insert("LIQPASS__CHAIN__CONFIRMATIONS".into(), "3".into());
    let _daemon = Daemon::spawn(&env);
    let receipt = chain.pay(buyer, order_ref(1), PREMIUM).await;
    let raw = chain.raw_tx(receipt.transaction_hash).await;
    chain.mine(1).await;
    db.wait_payment_status("ord_1", "confirming").await;
    synced(&chain, &db).await;

    // Same transaction, moved one block later on the new branch.
    chain.reorg(2, vec![(raw, 1)]).await;
    chain.mine(4).await;
    db.wait_payment_status("ord_1", "paid").await;
    let order = db.order("ord_1").await;
    let events = db.events().await;
    assert_eq!(events.len(), 1, "one row for the one log");
    assert!(!events[0].removed);
    assert_eq!(order.paid_block_number, Some(events[0].block_number));
    assert_eq!(
        order.paid_block_number,
        Some(receipt.block_number.expect("mined") as i64 + 1),
        "moved a block"
    );
    let reasons: Vec<_> = db.audit().await.into_iter().map(|a| a.1).collect();
    assert_eq!(
        reasons,
        ["payment_seen", "reorg", "payment_seen", "payment_final"]
    );
}

#[tokio::test]
async fn a_snapshot_revert_and_remine_orphans_the_payment() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    let buyer = chain.buyers[0];
    db.insert_order("ord_1", order_ref(1), buyer, PREMIUM as i64)
        .await;
    let _daemon = Daemon::spawn(&env(&chain, &db));
    synced(&chain, &db).await;
    let snapshot = chain.snapshot().await;
    chain.pay(buyer, order_ref(1), PREMIUM).await;
    chain.mine(2).await;
    db.wait_payment_status("ord_1", "confirming").await;
    synced(&chain, &db).await;

    chain.revert(snapshot).await;
    chain.mine(5).await; // a longer branch without the payment
    synced(&chain, &db).await;
    db.wait_payment_status("ord_1", "pending").await;
    assert!(db.events().await[0].removed);
}

both_backends!(
    a_reorg_deeper_than_the_confirmations_reverses_a_paid_order_loudly,
    a_reorg_deeper_than_the_confirmations_reverses_a_paid_order_loudly_on
);
async fn a_reorg_deeper_than_the_confirmations_reverses_a_paid_order_loudly_on(backend: Backend) {
    let chain = Chain::start().await;
    let db = Db::on(backend).await;
    let buyer = chain.buyers[0];
    db.insert_order("ord_1", order_ref(1), buyer, PREMIUM as i64)
        .await;
    let mut env = env(&chain, &db);
    env.insert("LIQPASS__CHAIN__CONFIRMATIONS".into(), "2".into());
    let daemon = Daemon::spawn(&env);
    let base = format!("http://{}", daemon.http_addr().await);
    chain.pay(buyer, order_ref(1), PREMIUM).await;
    chain.mine(3).await;
    db.wait_payment_status("ord_1", "paid").await;
    synced(&chain, &db).await;

    chain.reorg(6, vec![]).await;
    chain.mine(1).await;
    db.wait_payment_status("ord_1", "reversed").await;
    let order = db.order("ord_1").await;
    assert_eq!(
        (order.status.as_str(), order.paid_tx_hash),
        ("pending", None)
    );
    assert_eq!(
        crate::support::http_get(&format!("{base}/readyz")).await.0,
        503
    );
    let metrics = crate::support::http_get(&format!("{base}/metrics")).await.1;
    assert!(
        metrics.contains("liqpass_indexer_deep_reorgs_total 1"),
        "{metrics}"
    );
    assert!(daemon.logs().contains("deep reorg"), "logged as an error");
    assert_eq!(
        db.count("SELECT COUNT(*) FROM reorg_incidents WHERE acknowledged_at IS NULL")
            .await,
        1
    );

    // Paying again on the new branch settles it: readiness comes back.
    chain.pay(buyer, order_ref(1), PREMIUM).await;
    chain.mine(3).await;
    db.wait_payment_status("ord_1", "paid").await;
    crate::support::until_ready(&base).await;
}

#[tokio::test]
async fn kill_9_around_a_reorg_rollback_converges_to_the_same_state() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    let env = env(&chain, &db);
    db.insert_orders(&chain.buyers, 500, 30, PREMIUM as i64)
        .await;
    let mut rng = ChaCha8Rng::seed_from_u64(KILL_SEED);
    let mut daemon = Daemon::spawn(&env);
    for round in 0..5u64 {
        for i in 0..6u64 {
            let n = round * 6 + i;
            chain
                .pay(chain.buyers[n as usize % 8], order_ref(500 + n), PREMIUM)
                .await;
        }
        synced(&chain, &db).await;
        // Orphan the last few payments, then kill the daemon while it rolls back.
        chain.reorg(rng.random_range(2..5), vec![]).await;
        chain.mine(1).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..30))).await;
        daemon.kill9();
        daemon = Daemon::spawn(&env);
    }
    chain.mine(2).await;
    synced(&chain, &db).await;

    let clean = Db::new().await;
    clean
        .insert_orders(&chain.buyers, 500, 30, PREMIUM as i64)
        .await;
    let _reference = Daemon::spawn(&env_for_db(&env, &clean));
    synced(&chain, &clean).await;
    let live = |events: Vec<crate::support::db::EventRow>| {
        events
            .into_iter()
            .filter(|e| !e.removed)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        live(db.events().await),
        live(clean.events().await),
        "same canonical events"
    );
    let states = |orders: Vec<crate::support::db::OrderRow>| {
        orders
            .into_iter()
            .map(|o| (o.id, o.status, o.payment_status))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        states(db.orders().await),
        states(clean.orders().await),
        "same order states"
    );
}

fn env_for_db(
    env: &std::collections::BTreeMap<String, String>,
    db: &Db,
) -> std::collections::BTreeMap<String, String> {
    let mut env = env.clone();
    env.insert("LIQPASS__DATABASE__URL".into(), db.url());
    env
}

/// The fetch stage fetches the next near-head run while the writer commits
/// one, and checks it against the last block it handed over, not against the
/// checkpoint the phase began at: a reorg of blocks already handed over is
/// rolled back. The proxy holds the header of the second run's first block
/// until anvil has replaced the payment's block; a fetch stage that checked
/// the second run against the phase's starting checkpoint would see nothing
/// amiss and commit the new branch on top of the orphaned payment.
#[tokio::test]
async fn a_reorg_between_two_near_head_runs_of_one_phase_is_rolled_back() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    let buyer = chain.buyers[0];
    db.insert_order("ord_1", order_ref(1), buyer, PREMIUM as i64)
        .await;
    let proxy = crate::support::proxy::RpcProxy::start(&chain.rpc_url()).await;
    let env = crate::support::daemon::with(
        &env_for(&chain, &db),
        &[
            ("LIQPASS__CHAIN__RPC_URL", proxy.url()),
            // Nothing final: the orphaned payment goes back to pending.
            ("LIQPASS__CHAIN__CONFIRMATIONS", "100".into()),
            ("LIQPASS__CHAIN__REORG_WINDOW", "128".into()),
        ],
    );
    let mut daemon = Daemon::spawn(&env);
    crate::support::caught_up(&chain, &db).await;
    daemon.signal("TERM");
    assert!(daemon.wait_exit(LONG).await.success());

    // 100 new blocks, within the reorg window: one near-head phase of two
    // runs (64 headers a run), the payment in the first.
    let start = chain.head().await;
    chain.mine(59).await;
    let receipt = chain.pay(buyer, order_ref(1), PREMIUM).await;
    assert_eq!(receipt.block_number, Some(start + 60));
    chain.mine(40).await;
    assert_eq!(chain.head().await, start + 100);
    proxy.hold_header(start + 65);
    let _daemon = Daemon::spawn(&env);
    wait_for("the second run's first header asked for", LONG, || async {
        (proxy.held() > 0).then_some(())
    })
    .await;
    chain.reorg(50, vec![]).await;
    proxy.release();
    synced(&chain, &db).await;
    db.wait_payment_status("ord_1", "pending").await;
    let events = db.events().await;
    assert_eq!(events.len(), 1, "the row stays, soft-deleted");
    assert!(events[0].removed, "orphaned by the reorg");
    let reasons: Vec<_> = db.audit().await.into_iter().map(|a| a.1).collect();
    assert_eq!(reasons, ["payment_seen", "reorg"]);
}
