//! The outbox (`payment_notifications`): every change the order API may act
//! on is announced exactly once, in the transaction that made it; and the
//! commands of people handling exceptions (`review`, `resolve`, `order`).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use alloy::primitives::B256;

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

/// `liqpass-indexer resolve ARGS…`.
fn resolve(env: &BTreeMap<String, String>, args: &[&str]) -> std::process::Output {
    command(env, &[&["resolve"][..], args].concat())
}

fn assert_unique(notices: &[Notice]) {
    let ids: HashSet<_> = notices.iter().map(|n| &n.event_id).collect();
    assert_eq!(
        ids.len(),
        notices.len(),
        "event ids are unique: {notices:#?}"
    );
}

/// One payment of each outcome, indexed; returns the chain, the database,
/// the daemon's environment and the daemon.
async fn every_outcome(backend: Backend) -> (Chain, Db, BTreeMap<String, String>, Daemon) {
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
    reorgs_announce_pending_and_reversed_once_and_a_resolution_is_audited,
    reorgs_announce_pending_and_reversed_once_and_a_resolution_is_audited_on
);
async fn reorgs_announce_pending_and_reversed_once_and_a_resolution_is_audited_on(
    backend: Backend,
) {
    let chain = Chain::start().await;
    let db = Db::on(backend).await;
    let buyer = chain.buyers[0];
    db.insert_order("ord_shallow", order_ref(1), buyer, PREMIUM)
        .await;
    db.insert_order("ord_deep", order_ref(2), buyer, PREMIUM)
        .await;
    let mut env = env_for(&chain, &db);
    env.insert("LIQPASS__CHAIN__CONFIRMATIONS".into(), "2".into());
    env.insert("LIQPASS__CHAIN__REORG_WINDOW".into(), "64".into());
    let _daemon = Daemon::spawn(&env);

    // Shallow: orphaned while confirming, back to pending.
    chain.pay(buyer, order_ref(1), PREMIUM as u64).await;
    db.wait_payment_status("ord_shallow", "confirming").await;
    chain.reorg(1, vec![]).await;
    chain.mine(1).await;
    db.wait_payment_status("ord_shallow", "pending").await;
    assert_eq!(
        db.notice_types("ord_shallow").await,
        ["order.confirming", "order.pending"]
    );

    // Deep: orphaned once paid, reversed.
    chain.pay(buyer, order_ref(2), PREMIUM as u64).await;
    chain.mine(3).await;
    db.wait_payment_status("ord_deep", "paid").await;
    caught_up(&chain, &db).await;
    chain.reorg(6, vec![]).await;
    chain.mine(1).await;
    db.wait_payment_status("ord_deep", "reversed").await;
    caught_up(&chain, &db).await;
    assert_eq!(
        db.notice_types("ord_deep").await,
        ["order.confirming", "order.paid", "order.reversed"]
    );
    let notices = db.notifications().await;
    assert_unique(&notices);
    assert_eq!(notices.len(), 5, "{notices:#?}");

    // Pending without a problem: refused, nothing written.
    let audit = db.audit().await;
    let out = resolve(
        &env,
        &[
            "ord_shallow",
            "--as",
            "paid",
            "--reason",
            "x",
            "--actor",
            "ops",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused") && err.contains("pending/pending"),
        "{err}"
    );
    assert_eq!(db.audit().await, audit, "no audit row");
    assert_eq!(db.notifications().await, notices, "no notification");

    // Reversed: resolved, audited, announced, once.
    let out = resolve(
        &env,
        &[
            "ord_deep",
            "--as",
            "refunded",
            "--reason",
            "refunded on chain",
            "--actor",
            "alice",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let order = db.order("ord_deep").await;
    assert_eq!(
        (order.status.as_str(), order.payment_status.as_str()),
        ("refunded", "refunded")
    );
    let last = db
        .audit()
        .await
        .into_iter()
        .rfind(|a| a.0 == "ord_deep")
        .expect("an audit row");
    assert_eq!(
        last,
        (
            "ord_deep".into(),
            "manual".into(),
            "reversed".into(),
            "refunded".into()
        )
    );
    let resolved = db.notifications().await;
    assert_eq!(resolved.len(), notices.len() + 1);
    let n = resolved.last().expect("the resolution");
    assert_eq!(n.kind, "order.resolved");
    assert_eq!(n.payload["actor"], "alice");
    assert_eq!(n.payload["note"], "refunded on chain");
    // No longer an exception: a second resolution is refused.
    let again = resolve(
        &env,
        &[
            "ord_deep", "--as", "paid", "--reason", "x", "--actor", "bob",
        ],
    );
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert_eq!(db.notifications().await, resolved);
}

both_backends!(
    review_lists_what_needs_a_person_and_order_prints_the_timeline,
    review_lists_what_needs_a_person_and_order_prints_the_timeline_on
);
async fn review_lists_what_needs_a_person_and_order_prints_the_timeline_on(backend: Backend) {
    let (_chain, db, env, _daemon) = every_outcome(backend).await;
    let out = command(&env, &["review", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    let mut reasons: Vec<_> = rows
        .iter()
        .map(|r| r["reason"].as_str().expect("a reason").to_owned())
        .collect();
    let since: Vec<_> = rows.iter().map(|r| r["since"].as_str()).collect();
    let mut sorted = since.clone();
    sorted.sort();
    assert_eq!(since, sorted, "oldest first");
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "duplicate_payment",
            "late_payment",
            "overpaid",
            "payer_mismatch",
            "underpaid",
            "unknown_order"
        ]
    );
    let table = command(&env, &["review"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("underpaid") && text.contains("6 payment(s) need a person"),
        "{text}"
    );

    // Resolved through its event: it leaves the review list.
    let payer = rows
        .iter()
        .find(|r| r["reason"] == "payer_mismatch")
        .expect("listed");
    let event = format!(
        "{}:{}:{}",
        payer["chain_id"],
        payer["tx_hash"].as_str().expect("tx"),
        payer["log_index"]
    );
    let out = resolve(
        &env,
        &[
            "--event",
            &event,
            "--as",
            "void",
            "--reason",
            "wrong wallet",
            "--actor",
            "ops",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        db.notice_types("ord_payer").await,
        ["payment.payer_mismatch", "order.resolved"]
    );
    let out = command(&env, &["review", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(rows.len(), 5, "{rows:#?}");
    assert!(rows.iter().all(|r| r["reason"] != "payer_mismatch"));

    // The timeline: both events, both audit rows, all three notifications.
    let out = command(&env, &["order", "ord_ok", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let t: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(t["order"]["payment_status"], "paid");
    let kinds: Vec<_> = t["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .map(|e| e["kind"].as_str().expect("a kind"))
        .collect();
    let count = |k: &str| kinds.iter().filter(|x| **x == k).count();
    assert_eq!(
        (count("event"), count("audit"), count("notification")),
        (2, 2, 3),
        "{t:#}"
    );
    let at: Vec<_> = t["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .map(|e| e["at"].as_str().expect("a time").to_owned())
        .collect();
    let mut sorted = at.clone();
    sorted.sort();
    assert_eq!(at, sorted, "in time order");
    let text = command(&env, &["order", "ord_ok"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("order.paid") && text.contains("payment_final"),
        "{text}"
    );
    let missing = command(&env, &["order", "ord_nope"]);
    assert_eq!(missing.status.code(), Some(1));
    // Usage errors are 64 and write nothing.
    let before = db.notifications().await;
    let (reason, actor) = (["--reason", "x"], ["--actor", "ops"]);
    let bad_event = ["--event", "31337:0x12:0", "--as", "paid"];
    let good_event = format!("31337:0x{}:0", "ab".repeat(32));
    for args in [
        [&["ord_under"][..], &reason, &actor].concat(), // no --as
        [&bad_event[..], &reason, &actor].concat(),     // not a tx hash
        [
            &["ord_under", "--event", &good_event, "--as", "paid"][..],
            &reason,
            &actor,
        ]
        .concat(), // both
    ] {
        let out = resolve(&env, &args);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {out:?}");
    }
    assert_eq!(db.notifications().await, before);
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

/// `CHAIN:TX:LOG_INDEX` of each live event with `status`, in chain order.
async fn events_with(db: &Db, status: &str) -> Vec<String> {
    db.events()
        .await
        .into_iter()
        .filter(|e| e.match_status == status && !e.removed)
        .map(|e| format!("31337:{}:{}", e.tx_hash, e.log_index))
        .collect()
}

fn settle(env: &BTreeMap<String, String>, target: &[&str], to: &str) -> std::process::Output {
    let args = [
        target,
        &["--as", to, "--reason", "checked", "--actor", "ops"],
    ]
    .concat();
    resolve(env, &args)
}

both_backends!(
    a_resolution_settles_one_payment_and_changes_only_an_order_it_could_pay,
    a_resolution_settles_one_payment_and_changes_only_an_order_it_could_pay_on
);
async fn a_resolution_settles_one_payment_and_changes_only_an_order_it_could_pay_on(
    backend: Backend,
) {
    let (chain, db, env, _daemon) = every_outcome(backend).await;
    // A second payment by the wrong wallet: ord_payer has two exceptions.
    chain
        .pay(chain.buyers[1], order_ref(11), PREMIUM as u64)
        .await;
    chain.mine(3).await;
    caught_up(&chain, &db).await;
    let mismatched = events_with(&db, "payer_mismatch").await;
    assert_eq!(mismatched.len(), 2);

    // Named by order, two open exceptions: refused, nothing written.
    let (audit, notices) = (db.audit().await, db.notifications().await);
    let out = settle(&env, &["ord_payer"], "void");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("2 open exceptions") && err.contains(&mismatched[1]),
        "{err}"
    );
    assert_eq!(
        (db.audit().await, db.notifications().await),
        (audit, notices)
    );

    // One settled: the other stays open, in review and to resolve.
    let out = settle(&env, &["--event", &mismatched[0]], "refunded");
    assert!(out.status.success(), "{out:?}");
    let order = db.order("ord_payer").await;
    assert_eq!(
        (order.status.as_str(), order.payment_status.as_str()),
        ("refunded", "refunded")
    );
    let review = command(&env, &["review", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&review.stdout).expect("JSON");
    let open: Vec<_> = rows
        .iter()
        .filter(|r| r["reason"] == "payer_mismatch")
        .collect();
    assert_eq!(
        open.len(),
        1,
        "the second payment still needs a person: {rows:#?}"
    );
    let again = settle(&env, &["--event", &mismatched[0]], "void");
    assert_eq!(again.status.code(), Some(1), "settled once: {again:?}");
    let out = settle(&env, &["ord_payer"], "void");
    assert!(out.status.success(), "the one left, by order: {out:?}");

    // A duplicate beside the order's own payment: settled, the order kept.
    let before = db.order("ord_ok").await;
    let duplicate = events_with(&db, "duplicate_payment").await;
    let out = settle(&env, &["--event", &duplicate[0]], "refunded");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        db.order("ord_ok").await,
        before,
        "ord_ok stays paid by its own payment"
    );
    let last = db
        .audit()
        .await
        .into_iter()
        .rfind(|a| a.0 == "ord_ok")
        .expect("audited");
    assert_eq!(
        last,
        (
            "ord_ok".into(),
            "manual".into(),
            "paid".into(),
            "paid".into()
        )
    );

    // Underpaid, accepted: paid by that payment, its amount recorded.
    let out = settle(&env, &["ord_under"], "paid");
    assert!(out.status.success(), "{out:?}");
    let order = db.order("ord_under").await;
    assert_eq!(
        (order.status.as_str(), order.payment_status.as_str()),
        ("paid", "paid")
    );
    assert_eq!(order.paid_amount_usdc, Some(PREMIUM - 1));
    let under = events_with(&db, "underpaid").await;
    assert!(under[0].contains(order.paid_tx_hash.as_deref().expect("paid_tx_hash")));

    // A payment of no order: not to be accepted (there is no order), but
    // refunded or void, once.
    let unknown = events_with(&db, "unknown_order").await;
    let notices = db.notifications().await;
    let resolved = notices
        .iter()
        .filter(|n| n.kind == "order.resolved")
        .count();
    assert_eq!(resolved, 4, "one notification per resolution");
    let out = settle(&env, &["--event", &unknown[0]], "paid");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("which no order has") && err.contains("--as refunded"),
        "{err}"
    );
    assert_eq!(db.notifications().await, notices, "nothing written");
    let out = settle(&env, &["--event", &unknown[0]], "refunded");
    assert!(out.status.success(), "{out:?}");
    let after = db.notifications().await;
    assert_eq!(after.len(), notices.len() + 1);
    let n = after.last().expect("the resolution");
    assert_eq!(
        (n.kind.as_str(), n.order_id.as_deref()),
        ("payment.resolved", None)
    );
    assert_eq!(
        (
            n.payload["resolution"].as_str(),
            n.payload["actor"].as_str()
        ),
        (Some("refunded"), Some("ops"))
    );
    let review = command(&env, &["review", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&review.stdout).expect("JSON");
    assert!(
        rows.iter().all(|r| r["reason"] != "unknown_order"),
        "{rows:#?}"
    );
    let again = settle(&env, &["--event", &unknown[0]], "void");
    assert_eq!(again.status.code(), Some(1), "settled once: {again:?}");
    assert_eq!(db.notifications().await, after);

    // Its order arriving after the refund: the settled payment pays nothing.
    let settled = db
        .events()
        .await
        .into_iter()
        .find(|e| e.match_status == "unknown_order")
        .expect("the settled payment");
    let order_ref: B256 = settled.order_ref.parse().expect("order_ref");
    db.insert_order("ord_after_refund", order_ref, chain.buyers[0], PREMIUM)
        .await;
    chain.mine(3).await;
    caught_up(&chain, &db).await;
    let order = db.order("ord_after_refund").await;
    assert_eq!(
        order.payment_status, "pending",
        "not paid by a refunded payment"
    );
    let event = db
        .events()
        .await
        .into_iter()
        .find(|e| e.tx_hash == settled.tx_hash)
        .expect("stored");
    assert_eq!(event.match_status, "unknown_order");
    assert_eq!(db.notifications().await, after, "nothing announced");
    assert_eq!(
        db.count("SELECT COUNT(*) FROM late_matches").await,
        0,
        "dequeued"
    );
}
