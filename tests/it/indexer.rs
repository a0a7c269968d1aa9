//! End to end against anvil and the real binary: payments become
//! `confirming` then `paid`; every mismatch gets its outcome; payments made
//! while the indexer is down are back-filled; malformed input is survived.

use std::time::Duration;

use crate::support::chain::{order_ref, Chain};
use crate::support::daemon::{command, env_for, Daemon};
use crate::support::db::{Backend, Db};
use crate::support::{caught_up, wait_for};
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;

const PREMIUM: i64 = 5_000_000;
const LONG: Duration = Duration::from_secs(60);

both_backends!(
    a_payment_turns_the_order_confirming_then_paid_after_the_confirmations,
    a_payment_turns_the_order_confirming_then_paid_after_the_confirmations_on
);
async fn a_payment_turns_the_order_confirming_then_paid_after_the_confirmations_on(
    backend: Backend,
) {
    let chain = Chain::start().await;
    let db = Db::on(backend).await;
    let buyer = chain.buyers[0];
    db.insert_order("ord_1", order_ref(1), buyer, PREMIUM).await;
    let _daemon = Daemon::spawn(&env_for(&chain, &db));
    caught_up(&chain, &db).await;

    let receipt = chain.pay(buyer, order_ref(1), PREMIUM as u64).await;
    db.wait_payment_status("ord_1", "confirming").await;
    let order = db.order("ord_1").await;
    assert_eq!(order.status, "pending", "status waits for finality");
    assert_eq!(order.paid_tx_hash, None);

    chain.mine(2).await; // confirmations = 2
    db.wait_payment_status("ord_1", "paid").await;
    let order = db.order("ord_1").await;
    assert_eq!(order.status, "paid");
    assert_eq!(
        order.paid_tx_hash,
        Some(format!("{:#x}", receipt.transaction_hash))
    );
    assert_eq!(
        order.paid_block_number,
        receipt.block_number.map(|b| b as i64)
    );
    assert_eq!(order.paid_amount_usdc, Some(PREMIUM));
    let audit = db.audit().await;
    assert_eq!(
        audit,
        vec![
            (
                "ord_1".into(),
                "payment_seen".into(),
                "pending".into(),
                "confirming".into()
            ),
            (
                "ord_1".into(),
                "payment_final".into(),
                "confirming".into(),
                "paid".into()
            ),
        ]
    );
    let events = db.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].match_status, "matched");
    assert_eq!(events[0].order_id.as_deref(), Some("ord_1"));
}

#[tokio::test]
async fn over_a_websocket_new_heads_drive_the_indexer_without_polling() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    let buyer = chain.buyers[0];
    db.insert_order("ord_ws", order_ref(1), buyer, PREMIUM)
        .await;
    let mut env = env_for(&chain, &db);
    env.insert("LIQPASS__CHAIN__RPC_URL".into(), chain.ws_url());
    // Ten minutes (the largest accepted): within this test's waits only a
    // pushed head can wake the indexer.
    env.insert("LIQPASS__CHAIN__POLL_INTERVAL_MS".into(), "600000".into());
    let daemon = Daemon::spawn(&env);
    caught_up(&chain, &db).await;
    // A block mined before the subscription exists is never announced.
    daemon.logged("subscribed to new heads", 1).await;

    chain.pay(buyer, order_ref(1), PREMIUM as u64).await;
    db.wait_payment_status("ord_ws", "confirming").await;
    chain.mine(1).await;
    chain.mine(1).await; // confirmations = 2, one announced block at a time
    db.wait_payment_status("ord_ws", "paid").await;
    assert_eq!(db.checkpoint().await, Some(chain.head().await as i64));
}

both_backends!(
    each_mismatch_gets_its_match_status_and_leaves_the_order_alone,
    each_mismatch_gets_its_match_status_and_leaves_the_order_alone_on
);
async fn each_mismatch_gets_its_match_status_and_leaves_the_order_alone_on(backend: Backend) {
    let chain = Chain::start().await;
    let db = Db::on(backend).await;
    let (alice, bob) = (chain.buyers[0], chain.buyers[1]);
    db.insert_order("ord_under", order_ref(10), alice, PREMIUM)
        .await;
    db.insert_order("ord_payer", order_ref(11), alice, PREMIUM)
        .await;
    db.insert_order("ord_over", order_ref(12), alice, PREMIUM)
        .await;
    db.insert_order_expiring(
        "ord_late",
        order_ref(13),
        alice,
        PREMIUM,
        Some("2001-01-01T00:00:00Z"),
    )
    .await;
    db.insert_order("ord_dup", order_ref(14), alice, PREMIUM)
        .await;
    let _daemon = Daemon::spawn(&env_for(&chain, &db));

    chain.pay(alice, order_ref(10), PREMIUM as u64 - 1).await;
    chain.pay(bob, order_ref(11), PREMIUM as u64).await;
    chain.pay(alice, order_ref(12), PREMIUM as u64 + 1).await;
    chain.pay(alice, order_ref(13), PREMIUM as u64).await;
    chain.pay(alice, order_ref(14), PREMIUM as u64).await;
    chain.pay(alice, order_ref(14), PREMIUM as u64).await;
    chain.pay(alice, order_ref(99), PREMIUM as u64).await;
    chain.mine(3).await;
    caught_up(&chain, &db).await;

    let status_of = |events: &[crate::support::db::EventRow], r: u64| -> Vec<String> {
        let want = format!("{:#x}", order_ref(r));
        events
            .iter()
            .filter(|e| e.order_ref == want)
            .map(|e| e.match_status.clone())
            .collect()
    };
    let events = db.events().await;
    assert_eq!(status_of(&events, 10), ["underpaid"]);
    assert_eq!(status_of(&events, 11), ["payer_mismatch"]);
    assert_eq!(status_of(&events, 12), ["overpaid"]);
    assert_eq!(status_of(&events, 13), ["late_payment"]);
    assert_eq!(status_of(&events, 14), ["matched", "duplicate_payment"]);
    assert_eq!(status_of(&events, 99), ["unknown_order"]);
    for id in ["ord_under", "ord_payer", "ord_late"] {
        let o = db.order(id).await;
        assert_eq!(
            (o.status.as_str(), o.payment_status.as_str()),
            ("pending", "pending"),
            "{id}"
        );
    }
    // Overpayment is accepted by default: the order is paid, the event says overpaid.
    db.wait_payment_status("ord_over", "paid").await;
    db.wait_payment_status("ord_dup", "paid").await;
    assert_eq!(db.count("SELECT COUNT(*) FROM order_audit WHERE order_id IN ('ord_under','ord_payer','ord_late')").await, 0);
}

#[tokio::test]
async fn a_flagged_overpayment_leaves_the_order_pending() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    let alice = chain.buyers[0];
    db.insert_order("ord_over", order_ref(1), alice, PREMIUM)
        .await;
    let mut env = env_for(&chain, &db);
    env.insert("LIQPASS__RECONCILE__OVERPAYMENT".into(), "flag".into());
    let _daemon = Daemon::spawn(&env);
    chain.pay(alice, order_ref(1), PREMIUM as u64 * 2).await;
    chain.mine(3).await;
    caught_up(&chain, &db).await;
    assert_eq!(db.events().await[0].match_status, "overpaid");
    assert_eq!(db.order("ord_over").await.payment_status, "pending");
}

both_backends!(
    payments_made_while_the_indexer_is_down_are_backfilled_and_matched_once,
    payments_made_while_the_indexer_is_down_are_backfilled_and_matched_once_on
);
async fn payments_made_while_the_indexer_is_down_are_backfilled_and_matched_once_on(
    backend: Backend,
) {
    let chain = Chain::start().await;
    let db = Db::on(backend).await;
    let env = env_for(&chain, &db);
    let buyers = chain.buyers.clone();
    for i in 0..6u64 {
        db.insert_order(
            &format!("ord_{i}"),
            order_ref(100 + i),
            buyers[i as usize % 4],
            PREMIUM,
        )
        .await;
    }
    // First run: two payments, then the indexer stops.
    let mut daemon = Daemon::spawn(&env);
    chain.pay(buyers[0], order_ref(100), PREMIUM as u64).await;
    chain.pay(buyers[1], order_ref(101), PREMIUM as u64).await;
    caught_up(&chain, &db).await;
    daemon.signal("TERM");
    assert!(daemon.wait_exit(LONG).await.success());

    // While it is down: the other four payments and some blocks.
    for i in 2..6u64 {
        chain
            .pay(buyers[i as usize % 4], order_ref(100 + i), PREMIUM as u64)
            .await;
    }
    chain.mine(5).await;

    let _daemon = Daemon::spawn(&env);
    caught_up(&chain, &db).await;
    for i in 0..6 {
        db.wait_payment_status(&format!("ord_{i}"), "paid").await;
    }
    let events = db.events().await;
    assert_eq!(events.len(), 6, "one event per payment, none twice");
    assert!(events.iter().all(|e| e.match_status == "matched"));
    assert_eq!(
        db.count("SELECT COUNT(*) FROM order_audit").await,
        12,
        "seen + final per order"
    );
}

both_backends!(
    an_order_inserted_after_its_payment_is_matched_late,
    an_order_inserted_after_its_payment_is_matched_late_on
);
async fn an_order_inserted_after_its_payment_is_matched_late_on(backend: Backend) {
    let chain = Chain::start().await;
    let db = Db::on(backend).await;
    let alice = chain.buyers[0];
    let _daemon = Daemon::spawn(&env_for(&chain, &db));
    chain.pay(alice, order_ref(7), PREMIUM as u64).await;
    caught_up(&chain, &db).await;
    assert_eq!(db.events().await[0].match_status, "unknown_order");

    db.insert_order("ord_7", order_ref(7), alice, PREMIUM).await;
    chain.mine(3).await;
    db.wait_payment_status("ord_7", "paid").await;
    let events = db.events().await;
    assert_eq!(
        (
            events[0].match_status.as_str(),
            events[0].order_id.as_deref()
        ),
        ("matched", Some("ord_7"))
    );
}

both_backends!(
    an_order_its_trigger_missed_is_matched_after_the_pending_order_sweep,
    an_order_its_trigger_missed_is_matched_after_the_pending_order_sweep_on
);
/// On PostgreSQL an order committed while its payment's transaction ran is
/// seen by neither: the payment is stored as paying no order and the
/// order's trigger finds no event to queue. Here the same state is made by
/// hand (the queue emptied after the order's insert, the daemon down);
/// the pending-order sweep queues the payment and the next batch matches it.
async fn an_order_its_trigger_missed_is_matched_after_the_pending_order_sweep_on(backend: Backend) {
    let chain = Chain::start().await;
    let db = Db::on(backend).await;
    let alice = chain.buyers[0];
    let mut env = env_for(&chain, &db);
    let mut daemon = Daemon::spawn(&env);
    chain.pay(alice, order_ref(8), PREMIUM as u64).await;
    caught_up(&chain, &db).await;
    daemon.signal("TERM");
    assert!(daemon.wait_exit(LONG).await.success());
    db.insert_order("ord_8", order_ref(8), alice, PREMIUM).await;
    assert_eq!(
        db.count("SELECT COUNT(*) FROM late_matches").await,
        1,
        "queued by the trigger"
    );
    db.execute("DELETE FROM late_matches").await;

    env.insert(
        "LIQPASS__RECONCILE__PENDING_SWEEP_INTERVAL_S".into(),
        "1".into(),
    );
    env.insert(
        "LIQPASS__RECONCILE__PENDING_SWEEP_GRACE_S".into(),
        "1".into(),
    );
    let daemon = Daemon::spawn(&env);
    wait_for("ord_8 paid after the sweep", LONG, || async {
        chain.mine(1).await;
        (db.order("ord_8").await.payment_status == "paid").then_some(())
    })
    .await;
    assert_eq!(db.events().await[0].match_status, "matched");
    assert!(daemon.logs().contains("queued for late matching"));
    assert_eq!(
        db.count("SELECT COUNT(*) FROM late_matches").await,
        0,
        "dequeued"
    );
}

#[tokio::test]
async fn malformed_and_hostile_input_gets_clear_outcomes_and_the_daemon_keeps_running() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    let alice = chain.buyers[0];
    db.insert_order("ord_zero", order_ref(1), alice, PREMIUM)
        .await;
    db.insert_order("ord_huge", order_ref(2), alice, PREMIUM)
        .await;
    db.insert_order("ord_paid", order_ref(3), alice, PREMIUM)
        .await;
    db.insert_order("ord_after", order_ref(4), alice, PREMIUM)
        .await;
    let mut daemon = Daemon::spawn(&env_for(&chain, &db));

    chain.emit_other(alice).await; // unknown topic0 from the contract
    chain.emit_raw(alice, order_ref(1), U256::ZERO).await;
    let huge = U256::from(u64::MAX) * U256::from(1_000u64);
    chain.emit_raw(alice, order_ref(2), huge).await;
    chain.pay(alice, order_ref(3), PREMIUM as u64).await;
    chain.pay(alice, order_ref(3), PREMIUM as u64).await; // another tx for a paid order
    chain.pay(alice, order_ref(4), PREMIUM as u64).await; // still indexed afterwards
    chain.mine(3).await;
    db.wait_payment_status("ord_after", "paid").await;

    let events = db.events().await;
    let by_ref = |r: u64| {
        let want = format!("{:#x}", order_ref(r));
        events
            .iter()
            .filter(|e| e.order_ref == want)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(by_ref(1)[0].match_status, "underpaid");
    assert_eq!(by_ref(2)[0].match_status, "overpaid");
    assert_eq!(by_ref(2)[0].amount_raw, huge.to_string(), "stored exactly");
    assert_eq!(
        db.count("SELECT COUNT(*) FROM contract_events WHERE amount_overflow = 1 AND amount_usdc IS NULL").await,
        1
    );
    let statuses: Vec<_> = by_ref(3).iter().map(|e| e.match_status.clone()).collect();
    assert_eq!(statuses, ["matched", "duplicate_payment"]);
    assert_eq!(
        events.len(),
        5,
        "five payments; the unrelated event is not stored"
    );
    assert_eq!(db.order("ord_huge").await.payment_status, "pending");
    assert!(
        daemon.child.try_wait().expect("try_wait").is_none(),
        "daemon still running"
    );
}

#[tokio::test]
async fn v2_events_are_checked_against_the_configured_destination() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    let alice = chain.buyers[0];
    for (id, n) in [("ord_ok", 1), ("ord_chain", 2), ("ord_treasury", 3)] {
        db.insert_order(id, order_ref(n), alice, PREMIUM).await;
    }
    let mut env = env_for(&chain, &db);
    env.insert(
        "LIQPASS__CHAIN__CONTRACT".into(),
        format!("{:#x}", chain.checkout_v2),
    );
    let _daemon = Daemon::spawn(&env);
    chain.pay_v2(alice, order_ref(1), PREMIUM as u64).await;
    chain
        .emit_raw_v2(alice, order_ref(2), PREMIUM as u64, chain.treasury, 1)
        .await;
    chain
        .emit_raw_v2(
            alice,
            order_ref(3),
            PREMIUM as u64,
            Address::repeat_byte(9),
            31337,
        )
        .await;
    chain.mine(3).await;
    db.wait_payment_status("ord_ok", "paid").await;
    caught_up(&chain, &db).await;
    let statuses: Vec<_> = db
        .events()
        .await
        .into_iter()
        .map(|e| e.match_status)
        .collect();
    assert_eq!(
        statuses,
        ["matched", "wrong_destination", "wrong_destination"]
    );
    assert_eq!(db.order("ord_chain").await.payment_status, "pending");
}

both_backends!(
    backfill_of_a_range_twice_changes_nothing_the_second_time,
    backfill_of_a_range_twice_changes_nothing_the_second_time_on
);
async fn backfill_of_a_range_twice_changes_nothing_the_second_time_on(backend: Backend) {
    let chain = Chain::start().await;
    let db = Db::on(backend).await;
    let alice = chain.buyers[0];
    db.insert_order("ord_1", order_ref(1), alice, PREMIUM).await;
    db.insert_order("ord_2", order_ref(2), alice, PREMIUM).await;
    chain.pay(alice, order_ref(1), PREMIUM as u64).await;
    chain.pay(alice, order_ref(2), PREMIUM as u64).await;
    chain.mine(3).await;
    let head = chain.head().await.to_string();
    let env = env_for(&chain, &db);
    let first = command(&env, &["backfill", "--from", "0", "--to", &head]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let (events, orders, audit) = (db.events().await, db.orders().await, db.audit().await);
    assert_eq!(events.len(), 2);
    assert!(orders.iter().all(|o| o.status == "paid"));
    let second = command(&env, &["backfill", "--from", "0", "--to", &head]);
    assert!(second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stdout).contains(" 0 new event"),
        "{}",
        String::from_utf8_lossy(&second.stdout)
    );
    assert_eq!(
        (db.events().await, db.orders().await, db.audit().await),
        (events, orders, audit)
    );
}

both_backends!(
    status_shows_checkpoint_head_lag_and_counts,
    status_shows_checkpoint_head_lag_and_counts_on
);
async fn status_shows_checkpoint_head_lag_and_counts_on(backend: Backend) {
    let chain = Chain::start().await;
    let db = Db::on(backend).await;
    let alice = chain.buyers[0];
    db.insert_order("ord_1", order_ref(1), alice, PREMIUM).await;
    chain.pay(alice, order_ref(1), PREMIUM as u64).await;
    chain.pay(alice, order_ref(2), PREMIUM as u64).await;
    let env = env_for(&chain, &db);
    let head = chain.head().await;
    assert!(command(
        &env,
        &["backfill", "--from", "0", "--to", &head.to_string()]
    )
    .status
    .success());
    chain.mine(4).await;
    let out = command(&env, &["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("status --json is JSON");
    assert_eq!(doc["store"]["checkpoint_block"], head);
    assert_eq!(doc["head_block"], head + 4);
    assert_eq!(doc["lag_blocks"], 4);
    let synced = (1000.0 * (head + 1) as f64 / (head + 5) as f64).round() / 10.0;
    assert_eq!(
        doc["synced_percent"], synced,
        "blocks 0..=checkpoint of 0..=head"
    );
    let counts = doc["store"]["events_by_match_status"].to_string();
    assert!(
        counts.contains("matched") && counts.contains("unknown_order"),
        "{counts}"
    );
    let table = String::from_utf8(command(&env, &["status"]).stdout).expect("utf-8");
    assert!(
        table.contains("checkpoint") && table.contains("lag          4 blocks"),
        "{table}"
    );
}

#[tokio::test]
async fn with_finality_finalized_an_order_is_paid_only_once_its_block_is_finalized() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    let buyer = chain.buyers[0];
    db.insert_order("ord_1", order_ref(1), buyer, PREMIUM).await;
    let mut env = env_for(&chain, &db);
    env.insert("LIQPASS__CHAIN__FINALITY".into(), "finalized".into());
    let _daemon = Daemon::spawn(&env);
    let receipt = chain.pay(buyer, order_ref(1), PREMIUM as u64).await;
    let paid_in = receipt.block_number.expect("mined");
    chain.mine(3).await; // deeper than chain.confirmations, not yet finalized
    caught_up(&chain, &db).await;
    assert_eq!(db.order("ord_1").await.payment_status, "confirming");
    // Mine until the node's finalized block passes the payment's block.
    let finalized = |chain: &Chain| {
        let p = chain.provider.clone();
        async move {
            p.get_block_by_number(alloy::eips::BlockNumberOrTag::Finalized)
                .await
                .expect("finalized tag")
                .map_or(0, |b| b.header.number)
        }
    };
    while finalized(&chain).await < paid_in {
        chain.mine(8).await;
    }
    chain.mine(1).await;
    db.wait_payment_status("ord_1", "paid").await;
}

/// `(from, to)` of every write transaction the daemon logged, in order.
fn transactions(logs: &str) -> Vec<(u64, u64)> {
    let field = |line: &str, name: &str| -> u64 {
        let at = line.find(&format!(" {name}=")).expect("field") + name.len() + 2;
        line[at..]
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .expect("a number")
    };
    logs.lines()
        .filter(|l| l.contains("transaction committed"))
        .map(|l| (field(l, "from"), field(l, "to")))
        .collect()
}

#[tokio::test]
async fn a_small_write_budget_commits_whole_blocks_in_many_transactions_to_the_same_database() {
    let chain = Chain::start().await;
    let buyer = chain.buyers[0];
    // 50 blocks of 20 matched payments, then 40 without an order.
    for b in 0..50u64 {
        chain
            .emit_many(buyer, order_ref(10_000 + b * 20), 20, PREMIUM as u64)
            .await;
    }
    chain
        .emit_many(buyer, order_ref(90_000), 40, PREMIUM as u64)
        .await;
    chain.mine(3).await;
    let (small, large) = (Db::new().await, Db::new().await);
    for db in [&small, &large] {
        db.insert_orders(&[buyer], 10_000, 1_000, PREMIUM).await;
    }
    let budget = |db: &Db, ms: &str| {
        let mut env = env_for(&chain, db);
        env.insert("LIQPASS__DATABASE__MAX_WRITE_MS".into(), ms.into());
        env.insert("LIQPASS__DATABASE__WRITE_GAP_MS".into(), "0".into());
        // The budget all along: never the larger one of writing alone.
        env.insert("LIQPASS__DATABASE__ALONE_AFTER_S".into(), "0".into());
        // Deep ranges: the whole chain in a few getLogs.
        env.insert("LIQPASS__CHAIN__REORG_WINDOW".into(), "4".into());
        Daemon::spawn(&env)
    };
    let (tight, loose) = (budget(&small, "1"), budget(&large, "60000"));
    caught_up(&chain, &small).await;
    caught_up(&chain, &large).await;
    for db in [&small, &large] {
        db.wait_payment_status("ord_999", "paid").await;
    }

    assert_eq!(small.events().await, large.events().await, "same events");
    assert_eq!(small.orders().await, large.orders().await, "same orders");
    assert_eq!(small.audit().await, large.audit().await, "same audit rows");
    assert_eq!(small.checkpoint().await, large.checkpoint().await);
    let (many, few) = (transactions(&tight.logs()), transactions(&loose.logs()));
    let batches = tight.logs().matches("batch committed").count();
    eprintln!(
        "{} transactions for {batches} fetched ranges with a 1 ms budget; {} with 60 s",
        many.len(),
        few.len()
    );
    assert!(
        many.len() >= 2 * batches && many.len() >= 2 * few.len(),
        "ranges cut into transactions: {} for {batches} ranges ({} with 60 s)",
        many.len(),
        few.len()
    );
    // Contiguous block ranges, each ending where the next begins: every
    // block (and so every block's events) is in exactly one transaction.
    for pair in many.windows(2) {
        assert_eq!(pair[1].0, pair[0].1 + 1, "{many:?}");
    }
}

#[tokio::test]
async fn a_writer_holding_the_lock_delays_the_catch_up_but_loses_nothing() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    let buyer = chain.buyers[0];
    db.insert_orders(&[buyer], 10_000, 100, PREMIUM).await;
    let mut env = env_for(&chain, &db);
    env.insert("LIQPASS__DATABASE__BUSY_TIMEOUT_MS".into(), "100".into());
    let daemon = Daemon::spawn(&env);
    let base = format!("http://{}", daemon.http_addr().await);
    caught_up(&chain, &db).await;

    // The order API holds a write transaction open, with a new order in it.
    let mut api = db.hold_write_lock().await;
    sqlx::query(
        "INSERT INTO orders (id, order_ref, wallet_address, premium_usdc)
         VALUES ('ord_api', ?, ?, 7)",
    )
    .bind(format!("{:#x}", order_ref(777)))
    .bind(format!("{:#x}", buyer))
    .execute(&mut *api)
    .await
    .expect("the API's insert");
    for b in 0..5u64 {
        chain
            .emit_many(buyer, order_ref(10_000 + b * 20), 20, PREMIUM as u64)
            .await;
    }
    let busy = r#"liqpass_indexer_db_write_failures_total{cause="lock_wait"}"#;
    wait_for("the indexer to wait on the lock", LONG, || async {
        (crate::support::metric(&base, busy).await? >= 2.0).then_some(())
    })
    .await;
    assert!(db.events().await.is_empty(), "nothing written while locked");
    api.commit().await.expect("the API commits");

    chain.mine(3).await;
    caught_up(&chain, &db).await;
    db.wait_payment_status("ord_099", "paid").await;
    assert_eq!(db.events().await.len(), 100, "every payment, once");
    let api_order = db.order("ord_api").await;
    assert_eq!(
        (api_order.status.as_str(), api_order.payment_status.as_str()),
        ("pending", "pending"),
        "the API's row is intact"
    );
}
