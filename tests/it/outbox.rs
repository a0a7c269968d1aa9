//! The outbox (`payment_notifications`): every change the order API may act
//! on is announced exactly once, in the transaction that made it, and kept
//! as long as the retention says. The commands of people handling
//! exceptions are in `resolve.rs`.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::support::caught_up;
use crate::support::chain::{order_ref, Chain};
use crate::support::daemon::{command, env_for, Daemon};
use crate::support::db::{Backend, Db, Notice};

const PREMIUM: i64 = 5_000_000;

/// The types announced about each order (`-` for none), sorted.
async fn types_by_order(db: &Db) -> BTreeMap<String, Vec<String>> {
    let mut by = BTreeMap::<String, Vec<String>>::new();
    for n in db.notifications().await {
        by.entry(n.order_id.unwrap_or_else(|| "-".into()))
            .or_default()
            .push(n.kind);
    }
    for v in by.values_mut() {
        v.sort();
    }
    by
}

pub(crate) fn assert_unique(notices: &[Notice]) {
    let ids: HashSet<_> = notices.iter().map(|n| &n.event_id).collect();
    assert_eq!(
        ids.len(),
        notices.len(),
        "event ids are unique: {notices:#?}"
    );
}

/// One payment of each outcome, indexed; returns the chain, the database,
/// the daemon's environment and the daemon.
pub(crate) async fn every_outcome(
    backend: Backend,
) -> (Chain, Db, BTreeMap<String, String>, Daemon) {
    let chain = Chain::start().await;
    let db = Db::on(backend).await;
    let (alice, bob) = (chain.buyers[0], chain.buyers[1]);
    db.insert_order("ord_ok", order_ref(1), alice, PREMIUM)
        .await;
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
    let mut env = env_for(&chain, &db);
    env.insert("LIQPASS__CHAIN__CONFIRMATIONS".into(), "2".into());
    let daemon = Daemon::spawn(&env);
    chain.pay(alice, order_ref(1), PREMIUM as u64).await;
    chain.pay(alice, order_ref(10), PREMIUM as u64 - 1).await;
    chain.pay(bob, order_ref(11), PREMIUM as u64).await;
    chain.pay(alice, order_ref(12), PREMIUM as u64 + 1).await;
    chain.pay(alice, order_ref(13), PREMIUM as u64).await;
    chain.pay(alice, order_ref(99), PREMIUM as u64).await;
    db.wait_payment_status("ord_ok", "paid").await;
    chain.pay(alice, order_ref(1), PREMIUM as u64).await; // a duplicate
    chain.mine(3).await;
    caught_up(&chain, &db).await;
    db.wait_payment_status("ord_ok", "paid").await;
    (chain, db, env, daemon)
}

both_backends!(
    every_outcome_is_announced_exactly_once_and_a_replay_adds_nothing,
    every_outcome_is_announced_exactly_once_and_a_replay_adds_nothing_on
);
async fn every_outcome_is_announced_exactly_once_and_a_replay_adds_nothing_on(backend: Backend) {
    let (chain, db, env, mut daemon) = every_outcome(backend).await;
    let notices = db.notifications().await;
    assert_unique(&notices);
    let want: BTreeMap<String, Vec<String>> = [
        (
            "ord_ok",
            &[
                "order.confirming",
                "order.paid",
                "payment.duplicate_payment",
            ][..],
        ),
        ("ord_under", &["payment.underpaid"]),
        ("ord_payer", &["payment.payer_mismatch"]),
        // Accepted (the default policy), and still flagged.
        (
            "ord_over",
            &["order.confirming", "order.paid", "payment.overpaid"],
        ),
        ("ord_late", &["payment.late_payment"]),
        ("-", &["payment.unknown_order"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.iter().map(|s| s.to_string()).collect()))
    .collect();
    assert_eq!(types_by_order(&db).await, want);

    // The payload names the payment: amounts, tx, log, block, reason.
    let under = notices
        .iter()
        .find(|n| n.kind == "payment.underpaid")
        .expect("underpaid announced");
    let event = db
        .events()
        .await
        .into_iter()
        .find(|e| e.match_status == "underpaid")
        .expect("underpaid stored");
    let p = &under.payload;
    assert_eq!(p["reason"], "underpaid");
    assert_eq!(p["order_id"], "ord_under");
    assert_eq!(p["amount_usdc"], PREMIUM - 1);
    assert_eq!(p["premium_usdc"], PREMIUM);
    assert_eq!(p["tx_hash"], event.tx_hash.as_str());
    assert_eq!(p["log_index"], event.log_index);
    assert_eq!(p["block_number"], event.block_number);
    let paid = notices
        .iter()
        .find(|n| n.kind == "order.paid")
        .expect("paid announced");
    assert_eq!(
        (
            &paid.payload["from_payment_status"],
            &paid.payload["to_payment_status"]
        ),
        (&"confirming".into(), &"paid".into())
    );

    // A re-scan of everything, and a restart, announce nothing again.
    daemon.signal("TERM");
    assert!(daemon.wait_exit(Duration::from_secs(30)).await.success());
    let head = chain.head().await.to_string();
    let out = command(&env, &["backfill", "--from", "0", "--to", &head]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        db.notifications().await,
        notices,
        "the replay added nothing"
    );
    // Nor once retention has deleted the rows: a replay stores no event, so
    // it announces none again.
    db.execute("DELETE FROM payment_notifications").await;
    let out = command(&env, &["backfill", "--from", "0", "--to", &head]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(db.notifications().await, [], "nothing announced twice");
}

both_backends!(
    a_wrong_destination_and_a_late_outcome_are_each_announced_once,
    a_wrong_destination_and_a_late_outcome_are_each_announced_once_on
);
async fn a_wrong_destination_and_a_late_outcome_are_each_announced_once_on(backend: Backend) {
    let chain = Chain::start().await;
    let db = Db::on(backend).await;
    let alice = chain.buyers[0];
    db.insert_order("ord_dest", order_ref(2), alice, PREMIUM)
        .await;
    let mut env = env_for(&chain, &db);
    env.insert(
        "LIQPASS__CHAIN__CONTRACT".into(),
        format!("{:#x}", chain.checkout_v2),
    );
    let _daemon = Daemon::spawn(&env);
    chain
        .emit_raw_v2(alice, order_ref(2), PREMIUM as u64, chain.treasury, 1)
        .await;
    // No order yet: unknown, then underpaid once its order appears.
    chain.pay_v2(alice, order_ref(3), PREMIUM as u64).await;
    chain.mine(1).await;
    caught_up(&chain, &db).await;
    assert_eq!(
        db.notice_types("ord_dest").await,
        ["payment.wrong_destination"]
    );
    db.insert_order("ord_later", order_ref(3), alice, PREMIUM + 1)
        .await;
    chain.mine(1).await;
    crate::support::wait_for("the late outcome", Duration::from_secs(30), || async {
        let types = db.notice_types("ord_later").await;
        (!types.is_empty()).then_some(types)
    })
    .await;
    chain.mine(2).await;
    caught_up(&chain, &db).await;
    assert_eq!(db.notice_types("ord_later").await, ["payment.underpaid"]);
    let kinds: Vec<_> = db
        .notifications()
        .await
        .into_iter()
        .map(|n| n.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "payment.wrong_destination",
            "payment.unknown_order",
            "payment.underpaid"
        ]
    );
}

both_backends!(
    retention_deletes_only_rows_older_than_the_retention,
    retention_deletes_only_rows_older_than_the_retention_on
);
async fn retention_deletes_only_rows_older_than_the_retention_on(backend: Backend) {
    use liqpass_indexer::store::outbox;
    let db = &Db::on(backend).await;
    let past = |days: u32| match backend {
        Backend::Sqlite => format!("strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-{days} days')"),
        Backend::Postgres => format!("now() - interval '{days} days'"),
    };
    for (id, created, delivered) in [
        ("old-delivered", past(40), past(39)),
        ("old-undelivered", past(40), "NULL".into()),
        ("recent", past(2), past(1)),
    ] {
        db.execute(&format!(
            "INSERT INTO payment_notifications (event_id, type, payload, created_at, delivered_at)
             VALUES ('{id}', 'order.paid', '{{}}', {created}, {delivered})"
        ))
        .await;
    }
    let prune = |undelivered_too| async move {
        let mut tx = db.store.begin().await.expect("begin");
        let n = outbox::prune(&mut tx.conn(), 30, undelivered_too)
            .await
            .expect("prune");
        tx.commit().await.expect("commit");
        n
    };
    // With a dispatcher, an undelivered row stays however old it is.
    assert_eq!(prune(false).await, 1);
    assert_eq!(event_ids(db).await, ["old-undelivered", "recent"]);
    // Without one (no webhooks.url), age alone decides.
    assert_eq!(prune(true).await, 1);
    assert_eq!(event_ids(db).await, ["recent"]);
}

async fn event_ids(db: &Db) -> Vec<String> {
    let mut ids: Vec<_> = db
        .notifications()
        .await
        .into_iter()
        .map(|n| n.event_id)
        .collect();
    ids.sort();
    ids
}
