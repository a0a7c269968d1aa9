//! The commands of people handling exceptions: `review` lists what needs
//! a person, `order` prints an order's timeline, and `resolve` settles one
//! exception in one transaction (an audit row and a notification), or
//! refuses and writes nothing: from a state that needs no person, as paid
//! with no payment, or from an anonymous or reserved actor; `--dry-run`
//! says what would change and writes nothing.

use std::collections::BTreeMap;

use alloy::primitives::B256;

use crate::outbox::{assert_unique, every_outcome};
use crate::support::caught_up;
use crate::support::chain::{order_ref, Chain};
use crate::support::daemon::{command, env_for, Daemon};
use crate::support::db::{Backend, Db};

const PREMIUM: i64 = 5_000_000;

/// `liqpass-indexer resolve ARGS…`.
fn resolve(env: &BTreeMap<String, String>, args: &[&str]) -> std::process::Output {
    command(env, &[&["resolve"][..], args].concat())
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

    // Reversed: refused as paid with no payment named, and from an empty
    // or reserved identity; a dry run prints the change. Nothing written.
    for (args, says) in [
        (
            [
                "ord_deep", "--as", "paid", "--reason", "x", "--actor", "ops",
            ],
            "no payment behind it",
        ),
        (
            [
                "ord_deep", "--as", "refunded", "--reason", "x", "--actor", " ",
            ],
            "--actor is empty",
        ),
        (
            [
                "ord_deep", "--as", "refunded", "--reason", "", "--actor", "ops",
            ],
            "--reason is empty",
        ),
        (
            [
                "ord_deep", "--as", "refunded", "--reason", "x", "--actor", "Indexer",
            ],
            "the indexer's own name",
        ),
    ] {
        let out = resolve(&env, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(says) && err.contains("nothing written"),
            "{args:?}: {err}"
        );
    }
    let out = resolve(
        &env,
        &[
            "ord_deep",
            "--as",
            "refunded",
            "--reason",
            "x",
            "--actor",
            "ops",
            "--dry-run",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "dry run: would resolve order ord_deep: order ord_deep pending/reversed -> \
         refunded/refunded by ops; nothing written"
    );
    assert_eq!(db.order("ord_deep").await.payment_status, "reversed");
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

both_backends!(
    paid_is_refused_from_a_payment_whose_amount_is_unknown,
    paid_is_refused_from_a_payment_whose_amount_is_unknown_on
);
/// A payment of more than any column holds (its amount overflowed: stored
/// raw, `amount_usdc` NULL) cannot make its order paid: the order would
/// have no payment recorded. Refunded, it settles.
async fn paid_is_refused_from_a_payment_whose_amount_is_unknown_on(backend: Backend) {
    use alloy::primitives::U256;
    let chain = Chain::start().await;
    let db = Db::on(backend).await;
    let alice = chain.buyers[0];
    db.insert_order("ord_huge", order_ref(2), alice, PREMIUM)
        .await;
    let env = env_for(&chain, &db);
    let _daemon = Daemon::spawn(&env);
    let huge = U256::from(u64::MAX) * U256::from(1_000u64);
    chain.emit_raw(alice, order_ref(2), huge).await;
    chain.mine(3).await;
    caught_up(&chain, &db).await;
    let overpaid = events_with(&db, "overpaid").await;
    assert_eq!(overpaid.len(), 1, "{:?}", db.events().await);
    let (audit, notices) = (db.audit().await, db.notifications().await);
    for target in [vec!["ord_huge"], vec!["--event", &overpaid[0]]] {
        let out = settle(&env, &target, "paid");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{target:?}: {err}");
        assert!(err.contains("no payment behind it"), "{err}");
    }
    assert_eq!(db.audit().await, audit, "nothing written");
    assert_eq!(db.notifications().await, notices, "nothing written");
    assert_eq!(db.order("ord_huge").await.payment_status, "pending");
    let out = settle(&env, &["ord_huge"], "refunded");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(db.order("ord_huge").await.payment_status, "refunded");
}
