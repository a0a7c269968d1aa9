//! A second opinion before money counts (`chain.verify_rpc_urls`): a primary
//! endpoint that lies (a fabricated log, an altered amount) cannot make an
//! order `paid` while an honest verifier disagrees; honest endpoints still get
//! payments paid, at about one extra getLogs per committed range; a verifier
//! that is down delays payments and disputes nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::chain::{order_ref, Chain};
use crate::support::daemon::{command, env_for, Daemon};
use crate::support::db::Db;
use crate::support::proxy::RpcProxy;
use crate::support::{caught_up, http_get, wait_for};

const PREMIUM: u64 = 5_000_000;
const LONG: Duration = Duration::from_secs(60);
const PRIMARY_SECRET: &str = "PRIMARYKEY8d2f";
const VERIFIER_SECRET: &str = "VERIFIERKEY41c9";

fn with(env: &BTreeMap<String, String>, pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    let mut env = env.clone();
    for (k, v) in pairs {
        env.insert((*k).to_owned(), v.clone());
    }
    env
}

fn hex32(n: u64) -> String {
    format!("{:#x}", order_ref(n))
}

/// The stored verification outcome and detail of the event paying `order`.
async fn verification(db: &Db, order_ref_hex: &str) -> (Option<String>, Option<String>) {
    let row: (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT verification, verification_detail FROM contract_events WHERE order_ref = ?",
    )
    .bind(order_ref_hex)
    .fetch_one(db.store.sqlite_pool().expect("an SQLite store"))
    .await
    .expect("one event for the order");
    row
}

/// A metric's value in a scrape (the first series of that name and labels).
fn metric(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn a_lying_primary_cannot_mark_an_order_paid_with_a_fabricated_or_altered_log() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    let (buyer, other) = (chain.buyers[0], chain.buyers[1]);
    db.insert_order("ord_real", order_ref(8_000), buyer, PREMIUM as i64)
        .await;
    db.insert_order("ord_fake", order_ref(8_001), buyer, PREMIUM as i64)
        .await;
    // The primary lies about what anvil holds. With the real payment of
    // ord_real it returns a log paying ord_fake that no transaction emitted;
    // it reports the underpayment of ord_low as the full premium, and with it
    // a fabricated payment of ord_late (an order the API inserts later).
    let primary = RpcProxy::start(&chain.rpc_url()).await;
    let full = format!("0x{PREMIUM:064x}");
    primary.rewrite_logs(move |logs| {
        let mut fabricated = Vec::new();
        for log in logs.iter_mut() {
            let fake = if log["topics"][1] == hex32(8_000).as_str() {
                (hex32(8_001), "de")
            } else if log["topics"][1] == hex32(8_002).as_str() {
                log["data"] = full.clone().into();
                (hex32(8_003), "df")
            } else {
                continue;
            };
            let mut f = log.clone();
            f["topics"][1] = fake.0.into();
            f["transactionHash"] = format!("0x{}", fake.1.repeat(32)).into();
            fabricated.push(f);
        }
        logs.extend(fabricated);
    });
    // ord_real (and the lie about ord_fake) are final when first seen: the
    // paid-at-once path.
    chain.pay(buyer, order_ref(8_000), PREMIUM).await;
    chain.mine(5).await;
    let primary_url = format!("{}/v2/{PRIMARY_SECRET}", primary.url());
    let verifier_url = format!("{}/?key={VERIFIER_SECRET}", chain.rpc_url());
    let env = with(
        &env_for(&chain, &db),
        &[
            ("LIQPASS__CHAIN__RPC_URL", primary_url),
            ("LIQPASS__CHAIN__VERIFY_RPC_URLS", verifier_url),
        ],
    );
    let daemon = Daemon::spawn(&env);
    let addr = daemon.http_addr().await;
    caught_up(&chain, &db).await;
    // ord_low is paid live (confirming, then the promote path) and ord_late
    // is matched late, once its order exists.
    db.insert_order("ord_low", order_ref(8_002), other, PREMIUM as i64)
        .await;
    chain.pay(other, order_ref(8_002), 1_000_000).await;
    wait_for("the lie about ord_late stored, unmatched", LONG, || async {
        let n = db
            .count("SELECT COUNT(*) FROM contract_events WHERE match_status = 'unknown_order'")
            .await;
        (n == 1).then_some(())
    })
    .await;
    db.insert_order("ord_late", order_ref(8_003), other, PREMIUM as i64)
        .await;
    chain.mine(5).await;

    // The honest payment is verified and paid: verification rounds ran.
    db.wait_payment_status("ord_real", "paid").await;
    wait_for("each lie disputed (or paid)", LONG, || async {
        let n = db
            .count(
                "SELECT COUNT(*) FROM orders o JOIN contract_events ce ON ce.order_id = o.id
                 WHERE o.id IN ('ord_fake', 'ord_low', 'ord_late')
                   AND (ce.verification = 'disputed' OR o.payment_status = 'paid')",
            )
            .await;
        (n == 3).then_some(())
    })
    .await;
    // Well past finality (confirmations = 2), the lies have still paid nothing.
    chain.mine(10).await;
    caught_up(&chain, &db).await;
    let lies = ["ord_fake", "ord_low", "ord_late"];
    for id in lies {
        let order = db.order(id).await;
        assert_eq!(
            (order.status.as_str(), order.payment_status.as_str()),
            ("pending", "confirming"),
            "{id}: {order:?}"
        );
        assert_eq!(order.paid_tx_hash, None, "{id}");
    }
    assert_eq!(db.order("ord_real").await.status, "paid");

    let verifier_shown = format!("{}/<redacted>", chain.rpc_url());
    let primary_shown = format!("{}/<redacted>", primary.url());
    let (state, detail) = verification(&db, &hex32(8_000)).await;
    assert_eq!(state.as_deref(), Some("verified"), "{detail:?}");
    for (order, why) in [
        (8_001, "no log"),
        (8_002, "different data"),
        (8_003, "no log"),
    ] {
        let (state, detail) = verification(&db, &hex32(order)).await;
        let detail = detail.expect("a dispute says why");
        assert_eq!(state.as_deref(), Some("disputed"));
        for needle in [why, verifier_shown.as_str(), primary_shown.as_str()] {
            assert!(detail.contains(needle), "{needle:?} not in {detail}");
        }
        assert!(!detail.contains(PRIMARY_SECRET) && !detail.contains(VERIFIER_SECRET));
    }
    let audit = db.audit().await;
    for id in lies {
        let row = (
            id.to_owned(),
            "verification_disputed".to_owned(),
            "confirming".to_owned(),
            "confirming".to_owned(),
        );
        assert!(audit.contains(&row), "no dispute audit for {id}: {audit:?}");
    }
    let (_, scrape) = http_get(&format!("http://{addr}/metrics")).await;
    assert_eq!(
        metric(&scrape, "liqpass_indexer_disputed_payments"),
        Some(3.0)
    );
    assert_eq!(
        metric(
            &scrape,
            "liqpass_indexer_payment_verifications_total{outcome=\"disputed\"}"
        ),
        Some(3.0)
    );
    let status = command(&env, &["status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    let line = status
        .lines()
        .find(|l| l.trim_start().starts_with("disputed"));
    assert_eq!(
        line.and_then(|l| l.split_whitespace().nth(1)),
        Some("3"),
        "{status}"
    );
    let logs = daemon.logs();
    let disputed: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("payment disputed"))
        .collect();
    assert_eq!(disputed.len(), 3, "{logs}");
    for line in disputed {
        assert!(
            line.contains(&verifier_shown) && line.contains(&primary_shown),
            "{line}"
        );
    }
    assert!(
        !logs.contains(PRIMARY_SECRET) && !logs.contains(VERIFIER_SECRET),
        "a secret leaked into the logs"
    );

    // Verification turned off afterwards: a disputed event still never pays.
    drop(daemon);
    let mut unverified = env.clone();
    unverified.remove("LIQPASS__CHAIN__VERIFY_RPC_URLS");
    let _daemon = Daemon::spawn(&unverified);
    chain.mine(5).await;
    caught_up(&chain, &db).await; // each batch promotes what is final
    for id in lies {
        assert_eq!(db.order(id).await.payment_status, "confirming", "{id}");
    }
}

#[tokio::test]
async fn with_honest_endpoints_payments_become_paid_at_about_one_extra_get_logs_per_committed_range(
) {
    const BEFORE: u64 = 20;
    const LIVE: u64 = 3;
    let chain = Chain::start().await;
    let db = Db::new().await;
    db.insert_orders(&chain.buyers, 9_000, BEFORE + LIVE, PREMIUM as i64)
        .await;
    for i in 0..BEFORE {
        let buyer = chain.buyers[i as usize % chain.buyers.len()];
        chain.pay(buyer, order_ref(9_000 + i), PREMIUM).await;
    }
    chain.mine(5).await;
    let verifier = RpcProxy::start(&chain.rpc_url()).await;
    let env = with(
        &env_for(&chain, &db),
        &[("LIQPASS__CHAIN__VERIFY_RPC_URLS", verifier.url())],
    );
    let _daemon = Daemon::spawn(&env);
    for i in 0..BEFORE {
        db.wait_payment_status(&format!("ord_{i:03}"), "paid").await;
    }
    // Twenty payments final in one committed range: one getLogs.
    assert_eq!(
        verifier.calls("eth_getLogs"),
        1,
        "{:?}",
        verifier.all_calls()
    );
    for i in BEFORE..BEFORE + LIVE {
        let buyer = chain.buyers[i as usize % chain.buyers.len()];
        chain.pay(buyer, order_ref(9_000 + i), PREMIUM).await;
        chain.mine(3).await;
        db.wait_payment_status(&format!("ord_{i:03}"), "paid").await;
    }
    let calls = verifier.all_calls();
    assert!(calls["eth_getLogs"] <= 1 + LIVE, "{calls:?}");
    assert_eq!(calls.get("eth_chainId"), Some(&1), "{calls:?}");
    assert_eq!(
        calls.keys().collect::<Vec<_>>(),
        ["eth_chainId", "eth_getLogs"],
        "no head requests while every log is confirmed: {calls:?}"
    );
    assert_eq!(
        db.count(
            "SELECT COUNT(*) FROM contract_events
             WHERE verification = 'verified' AND verification_detail LIKE 'confirmed by 1 of 1%'"
        )
        .await,
        (BEFORE + LIVE) as i64
    );
}

#[tokio::test]
async fn a_verifier_that_is_down_delays_payments_and_disputes_nothing() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    db.insert_order("ord_a", order_ref(9_500), chain.buyers[0], PREMIUM as i64)
        .await;
    let verifier = RpcProxy::start(&chain.rpc_url()).await;
    verifier.kill(true);
    let env = with(
        &env_for(&chain, &db),
        &[
            ("LIQPASS__CHAIN__VERIFY_RPC_URLS", verifier.url()),
            ("LIQPASS__CHAIN__REQUEST_TIMEOUT_MS", "500".into()),
        ],
    );
    let _daemon = Daemon::spawn(&env);
    let receipt = chain.pay(chain.buyers[0], order_ref(9_500), PREMIUM).await;
    chain.mine(5).await;
    caught_up(&chain, &db).await;
    let block = receipt.block_number.expect("mined") as i64;
    assert!(db.checkpoint().await >= Some(block + 2), "final by depth");
    wait_for("the verifier to be asked again", LONG, || async {
        (verifier.calls("eth_chainId") >= 3).then_some(())
    })
    .await;
    let order = db.order("ord_a").await;
    assert_eq!(order.payment_status, "confirming", "{order:?}");
    assert_eq!(verification(&db, &hex32(9_500)).await.0, None, "no dispute");
    verifier.kill(false);
    db.wait_payment_status("ord_a", "paid").await;
    assert_eq!(
        verification(&db, &hex32(9_500)).await.0.as_deref(),
        Some("verified")
    );
}

#[tokio::test]
async fn a_verified_payment_moved_by_a_deep_reorg_is_verified_again_on_its_new_block() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    let buyer = chain.buyers[0];
    db.insert_order("ord_1", order_ref(9_700), buyer, PREMIUM as i64)
        .await;
    let verifier = RpcProxy::start(&chain.rpc_url()).await;
    let env = with(
        &env_for(&chain, &db),
        &[("LIQPASS__CHAIN__VERIFY_RPC_URLS", verifier.url())],
    );
    let _daemon = Daemon::spawn(&env);
    caught_up(&chain, &db).await;
    let receipt = chain.pay(buyer, order_ref(9_700), PREMIUM).await;
    let block = receipt.block_number.expect("mined") as i64;
    let raw = chain.raw_tx(receipt.transaction_hash).await;
    chain.mine(3).await;
    db.wait_payment_status("ord_1", "paid").await;
    caught_up(&chain, &db).await;
    let asked = verifier.calls("eth_getLogs");

    // The payment's block and the three above it replaced, the same
    // transaction re-included a block later: deeper than the confirmations.
    chain.reorg(4, vec![(raw, 1)]).await;
    chain.mine(4).await;
    wait_for("the order paid again on its new block", LONG, || async {
        let o = db.order("ord_1").await;
        (o.payment_status == "paid" && o.paid_block_number == Some(block + 1)).then_some(())
    })
    .await;
    assert!(
        verifier.calls("eth_getLogs") > asked,
        "asked again about the new block: {:?}",
        verifier.all_calls()
    );
    let (state, detail) = verification(&db, &hex32(9_700)).await;
    assert_eq!(state.as_deref(), Some("verified"), "{detail:?}");
    let stored: String = sqlx::query_scalar("SELECT block_hash FROM contract_events")
        .fetch_one(db.store.sqlite_pool().expect("an SQLite store"))
        .await
        .expect("the event");
    assert_eq!(
        stored,
        format!("{:#x}", chain.block_hash(block as u64 + 1).await)
    );
    let reasons: Vec<_> = db.audit().await.into_iter().map(|a| a.1).collect();
    assert_eq!(
        reasons,
        [
            "payment_seen",
            "payment_final",
            "deep_reorg",
            "payment_seen",
            "payment_final"
        ]
    );
}

#[tokio::test]
async fn a_verifier_on_another_chain_stops_the_daemon_at_start_with_exit_64() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    let other = alloy::node_bindings::Anvil::at(crate::support::chain::anvil_path())
        .chain_id(5)
        .try_spawn()
        .expect("a second anvil");
    let env = with(
        &env_for(&chain, &db),
        &[("LIQPASS__CHAIN__VERIFY_RPC_URLS", other.endpoint())],
    );
    let mut daemon = Daemon::spawn(&env);
    let status = daemon.wait_exit(LONG).await;
    assert_eq!(status.code(), Some(64), "{}", daemon.logs());
    assert!(
        daemon.logs().contains("serves chain id 5"),
        "{}",
        daemon.logs()
    );
}

#[tokio::test]
async fn with_a_quorum_of_two_one_verifier_down_holds_the_payment_until_both_confirm() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    db.insert_order("ord_q", order_ref(9_900), chain.buyers[0], PREMIUM as i64)
        .await;
    let down = RpcProxy::start(&chain.rpc_url()).await;
    down.kill(true);
    let env = with(
        &env_for(&chain, &db),
        &[
            (
                "LIQPASS__CHAIN__VERIFY_RPC_URLS",
                format!("{}/?key=q,{}", chain.rpc_url(), down.url()),
            ),
            ("LIQPASS__CHAIN__VERIFY_QUORUM", "2".into()),
            ("LIQPASS__CHAIN__REQUEST_TIMEOUT_MS", "500".into()),
        ],
    );
    let _daemon = Daemon::spawn(&env);
    caught_up(&chain, &db).await;
    chain.pay(chain.buyers[0], order_ref(9_900), PREMIUM).await;
    chain.mine(5).await;
    caught_up(&chain, &db).await;
    wait_for("the down verifier to be asked twice more", LONG, || async {
        (down.calls("eth_chainId") >= 3).then_some(())
    })
    .await;
    assert_eq!(db.order("ord_q").await.payment_status, "confirming");
    assert_eq!(verification(&db, &hex32(9_900)).await.0, None);
    down.kill(false);
    db.wait_payment_status("ord_q", "paid").await;
    let (state, detail) = verification(&db, &hex32(9_900)).await;
    assert_eq!(state.as_deref(), Some("verified"));
    let detail = detail.expect("who confirmed");
    assert!(detail.starts_with("confirmed by 2 of 2"), "{detail}");
}
