//! Trust nothing in a log: a contract of our own at `chain.contract` emits
//! logs carrying our `PremiumPaid` topic0s in shapes no `emit` can produce
//! (inline assembly `log1`–`log4`). None moves an order; each is kept raw in
//! `malformed_logs`, listed by `review`, announced in the outbox; the good
//! payment after them is paid and the checkpoint passes them, back-filled
//! and live, on both backends. A payment on a cancelled or an expired order
//! says so. And the v2 contract's treasury moves are followed: a payment to
//! the treasury in force is matched, a move undone by a reorg is undone.

use std::time::Duration;

use crate::support::chain::{order_ref, Chain};
use crate::support::daemon::{command, env_for, with, Daemon};
use crate::support::db::{Backend, Db};
use crate::support::{caught_up, wait_for};
use alloy::primitives::{Address, B256, U256};
use alloy::sol_types::SolEvent;
use liqpass_indexer::chain::bindings::{CheckoutV1, CheckoutV2};

const PREMIUM: u64 = 5_000_000;
const LONG: Duration = Duration::from_secs(60);

fn word(n: u64) -> Vec<u8> {
    U256::from(n).to_be_bytes::<32>().to_vec()
}

fn buyer_topic(buyer: Address) -> B256 {
    B256::left_padding_from(buyer.as_slice())
}

/// The shapes, each for order `first + i`: what a careless or upgraded
/// contract could emit with our topic0s. The first two would pay their
/// order if decoding did not validate.
fn shapes(buyer: Address, first: u64) -> Vec<(&'static str, Vec<B256>, Vec<u8>)> {
    let v1 = CheckoutV1::PremiumPaid::SIGNATURE_HASH;
    let v2 = CheckoutV2::PremiumPaid::SIGNATURE_HASH;
    let r = |i: u64| order_ref(first + i);
    let clean = buyer_topic(buyer);
    let mut dirty = clean;
    dirty.0[0] = 0xff;
    let amount = word(PREMIUM);
    let extra = [amount.clone(), word(7)].concat();
    let cut_v2 = [
        amount.clone(),
        B256::left_padding_from(&[0xcc; 20]).to_vec(),
    ]
    .concat();
    vec![
        (
            "v1, an extra data word",
            vec![v1, r(0), clean, B256::ZERO],
            extra,
        ),
        (
            "v1, a dirty buyer topic",
            vec![v1, r(1), dirty, B256::ZERO],
            amount.clone(),
        ),
        ("v1, 2 topics", vec![v1, r(2)], amount.clone()),
        (
            "v1, empty data",
            vec![v1, r(3), clean, B256::ZERO],
            Vec::new(),
        ),
        (
            "v1, 31 bytes",
            vec![v1, r(4), clean, B256::ZERO],
            amount[..31].to_vec(),
        ),
        (
            "v2, data cut after token",
            vec![v2, r(5), clean, B256::ZERO],
            cut_v2,
        ),
    ]
}

both_backends!(
    logs_no_emit_can_produce_are_kept_and_never_pay_an_order,
    malformed_logs
);

async fn malformed_logs(backend: Backend) {
    let chain = Chain::start().await;
    let db = Db::on(backend).await;
    let buyer = chain.buyers[0];
    // Orders the bad logs name (each for exactly the amount, from the
    // buyer), and the good payment after each round.
    for n in (100..106).chain(200..206) {
        db.insert_order(&format!("bad_{n}"), order_ref(n), buyer, PREMIUM as i64)
            .await;
    }
    db.insert_order("good_old", order_ref(150), buyer, PREMIUM as i64)
        .await;
    db.insert_order("good_live", order_ref(250), buyer, PREMIUM as i64)
        .await;
    // Back-filled: older than the reorg window when the daemon starts.
    for (_, topics, data) in shapes(buyer, 100) {
        chain.emit_log(buyer, topics, data).await;
    }
    chain.pay(buyer, order_ref(150), PREMIUM).await;
    chain.mine(80).await;
    let env = env_for(&chain, &db);
    let daemon = Daemon::spawn(&env);
    caught_up(&chain, &db).await;
    // Live.
    for (_, topics, data) in shapes(buyer, 200) {
        chain.emit_log(buyer, topics, data).await;
    }
    chain.pay(buyer, order_ref(250), PREMIUM).await;
    chain.mine(3).await;
    db.wait_payment_status("good_live", "paid").await;
    caught_up(&chain, &db).await;
    assert_eq!(db.order("good_old").await.payment_status, "paid");

    let untouched = db
        .count(
            "SELECT COUNT(*) FROM orders WHERE id LIKE 'bad_%'
               AND status = 'pending' AND payment_status = 'pending' AND paid_tx_hash IS NULL",
        )
        .await;
    assert_eq!(untouched, 12, "no malformed log moved an order");
    assert_eq!(
        db.count("SELECT COUNT(*) FROM contract_events").await,
        2,
        "only the two good payments are payments"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM malformed_logs WHERE removed = 0")
            .await,
        12,
        "every malformed log kept"
    );
    // Kept raw: the extra word's data, whole.
    let extra = format!(
        "0x{}",
        alloy::primitives::hex::encode([word(PREMIUM), word(7)].concat())
    );
    assert_eq!(
        db.count(&format!(
            "SELECT COUNT(*) FROM malformed_logs WHERE data = '{extra}' AND order_ref = '{:#x}'",
            order_ref(100)
        ))
        .await,
        1
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM payment_notifications WHERE type = 'payment.malformed'")
            .await,
        12
    );
    let out = command(&env, &["review", "--json"]);
    assert!(out.status.success());
    let review: serde_json::Value = serde_json::from_slice(&out.stdout).expect("review JSON");
    let malformed = review
        .as_array()
        .expect("a list")
        .iter()
        .filter(|r| r["reason"] == "malformed")
        .count();
    assert_eq!(malformed, 12, "review lists every malformed log");
    let status = command(&env, &["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("malformed logs             12"));
    let metric = crate::support::metric(
        &format!("http://{}", daemon.http_addr().await),
        "liqpass_indexer_malformed_logs_total",
    )
    .await;
    assert_eq!(metric, Some(12.0));
}

both_backends!(
    a_payment_on_a_cancelled_or_expired_order_says_so,
    settled_orders
);

async fn settled_orders(backend: Backend) {
    let chain = Chain::start().await;
    let db = Db::on(backend).await;
    let buyer = chain.buyers[0];
    db.insert_order("ord_cancelled", order_ref(1), buyer, PREMIUM as i64)
        .await;
    db.insert_order("ord_expired", order_ref(2), buyer, PREMIUM as i64)
        .await;
    db.execute("UPDATE orders SET status = 'cancelled', payment_status = 'failed' WHERE id = 'ord_cancelled'")
        .await;
    db.execute("UPDATE orders SET status = 'expired' WHERE id = 'ord_expired'")
        .await;
    chain.pay(buyer, order_ref(1), PREMIUM).await;
    chain.pay(buyer, order_ref(2), PREMIUM).await;
    chain.mine(3).await;
    let _daemon = Daemon::spawn(&env_for(&chain, &db));
    caught_up(&chain, &db).await;
    let statuses: Vec<String> = db
        .events()
        .await
        .into_iter()
        .map(|e| e.match_status)
        .collect();
    assert_eq!(statuses, ["order_cancelled", "order_expired"]);
    assert_eq!(
        db.notice_types("ord_cancelled").await,
        ["payment.order_cancelled"]
    );
    assert_eq!(db.order("ord_expired").await.status, "expired");
}

/// The v2 checkout moves its treasury: back-filled, live, and across a
/// reorg that orphans a move.
#[tokio::test]
async fn the_contracts_treasury_moves_are_followed() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    let buyer = chain.buyers[0];
    let (first, second, third) = (
        Address::repeat_byte(0x71),
        Address::repeat_byte(0x72),
        Address::repeat_byte(0x73),
    );
    for (id, n) in [("a", 1), ("b", 2), ("c", 3), ("d", 4), ("e", 5)] {
        db.insert_order(id, order_ref(n), buyer, PREMIUM as i64)
            .await;
    }
    // Back-filled: paid to the configured treasury, then moved, then paid
    // (the contract sends to, and names, the new one), then a log naming
    // the old one.
    chain.pay_v2(buyer, order_ref(1), PREMIUM).await;
    chain.update_treasury(first).await;
    chain.pay_v2(buyer, order_ref(2), PREMIUM).await;
    chain
        .emit_raw_v2(buyer, order_ref(3), PREMIUM, chain.treasury, 31337)
        .await;
    chain.mine(80).await;
    let env = with(
        &env_for(&chain, &db),
        &[(
            "LIQPASS__CHAIN__CONTRACT",
            format!("{:#x}", chain.checkout_v2),
        )],
    );
    let daemon = Daemon::spawn(&env);
    caught_up(&chain, &db).await;
    let outcome = |n: u64| {
        let db = &db;
        async move {
            db.events()
                .await
                .into_iter()
                .find(|e| e.order_ref == format!("{:#x}", order_ref(n)) && !e.removed)
                .map(|e| e.match_status)
        }
    };
    assert_eq!(outcome(1).await.as_deref(), Some("matched"));
    assert_eq!(
        outcome(2).await.as_deref(),
        Some("matched"),
        "the new treasury"
    );
    assert_eq!(
        outcome(3).await.as_deref(),
        Some("wrong_destination"),
        "the old treasury, after the move"
    );
    // Live.
    chain.update_treasury(second).await;
    chain.pay_v2(buyer, order_ref(4), PREMIUM).await;
    chain.mine(3).await;
    db.wait_payment_status("d", "paid").await;
    // A move, and a payment naming it, orphaned by a reorg that keeps the
    // payment only: the move is undone, so the payment no longer matches.
    chain.update_treasury(third).await;
    let moved_to_third = chain
        .emit_raw_v2(buyer, order_ref(5), PREMIUM, third, 31337)
        .await;
    wait_for("e seen", LONG, || async {
        (db.order("e").await.payment_status == "confirming").then_some(())
    })
    .await;
    let raw = chain.raw_tx(moved_to_third.transaction_hash).await;
    chain.reorg(2, vec![(raw, 0)]).await;
    chain.mine(3).await;
    wait_for("e's payment judged again", LONG, || async {
        (outcome(5).await.as_deref() == Some("wrong_destination")).then_some(())
    })
    .await;
    assert_eq!(db.order("e").await.payment_status, "pending");
    assert_eq!(
        db.count("SELECT COUNT(*) FROM treasury_changes WHERE removed = 0")
            .await,
        2,
        "the orphaned move is removed"
    );
    assert!(daemon.logs().contains("the contract moved its treasury"));
}
