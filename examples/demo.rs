//! `make demo`: a local anvil devnet, the checkout contracts deployed, a few
//! orders inserted as the order API would, the indexer running, good and bad
//! payments sent, and the orders shown turning `confirming` then `paid` while
//! mismatches are flagged. Stops everything it started.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::Row;
use support::chain::{order_ref, Chain};
use support::daemon::{command, Daemon};
use support::db::Db;

const PREMIUM: u64 = 25_000_000; // 25 USDC

#[tokio::main]
async fn main() {
    println!("== starting anvil (pinned, from npm) and deploying MockUSDC + CheckoutV1");
    let chain = Chain::start().await;
    println!(
        "   rpc {}  checkout {:#x}  usdc {:#x}",
        chain.rpc_url(),
        chain.checkout,
        chain.usdc
    );
    let db = Db::new().await;
    println!("   database {}", db.path().display());

    // The indexer reads config/local.toml; only the node's port and the
    // temporary database differ.
    let env: BTreeMap<String, String> = [
        ("LIQPASS_ENV", "local".to_owned()),
        ("LIQPASS__CHAIN__RPC_URL", chain.ws_url()),
        ("LIQPASS__DATABASE__URL", db.url()),
        ("LIQPASS__HTTP__LISTEN", "127.0.0.1:0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let contract = String::from_utf8_lossy(&command(&env, &["check-config"]).stdout).to_string();
    assert!(
        contract.contains(&format!("{:#x}", chain.checkout)),
        "config/local.toml must name the deployed checkout"
    );

    let (alice, bob, carol, dave) = (
        chain.buyers[0],
        chain.buyers[1],
        chain.buyers[2],
        chain.buyers[3],
    );
    println!("\n== the order API creates four orders of 25 USDC");
    for (id, n, wallet) in [
        ("ord_alice", 1, alice),
        ("ord_bob", 2, bob),
        ("ord_carol", 3, carol),
        ("ord_dave", 4, dave),
    ] {
        db.insert_order(id, order_ref(n), wallet, PREMIUM as i64)
            .await;
    }
    show(&db).await;

    println!("\n== liqpass-indexer run (websocket, 2 confirmations)");
    let daemon = Daemon::spawn(&env);
    let addr = daemon.http_addr().await;
    println!("   metrics and health on http://{addr}");

    println!("\n== alice pays her order: seen at once, not final yet");
    chain.pay(alice, order_ref(1), PREMIUM).await;
    db.wait_payment_status("ord_alice", "confirming").await;
    show(&db).await;

    println!("\n== bob underpays, carol pays dave's order from her wallet, bob pays an order nobody created");
    chain.pay(bob, order_ref(2), PREMIUM - 1_000_000).await;
    chain.pay(carol, order_ref(4), PREMIUM).await;
    chain.pay(bob, order_ref(99), PREMIUM).await;
    db.wait_events(4).await;
    db.wait_payment_status("ord_alice", "paid").await;
    show(&db).await;

    println!("\n== carol pays her order twice: the first payment counts, the second is flagged");
    chain.pay(carol, order_ref(3), PREMIUM).await;
    chain.pay(carol, order_ref(3), PREMIUM).await;
    db.wait_events(6).await;
    db.wait_payment_status("ord_carol", "confirming").await;
    show(&db).await;

    println!("\n== two more blocks: carol's payment is final");
    chain.mine(2).await;
    db.wait_payment_status("ord_carol", "paid").await;
    show(&db).await;

    println!("\n== liqpass-indexer status");
    print!(
        "{}",
        String::from_utf8_lossy(&command(&env, &["status"]).stdout)
    );

    println!("\n== stopping the indexer (SIGTERM) and anvil");
    let mut daemon = daemon;
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(30)).await;
    println!("   indexer exited with {status}");
}

async fn show(db: &Db) {
    println!("   order      status   payment     events (match_status)");
    for o in db.orders().await {
        let events: Vec<String> = sqlx::query(
            "SELECT ce.match_status FROM contract_events ce JOIN orders o ON o.order_ref = ce.order_ref
             WHERE o.id = ? ORDER BY ce.block_number, ce.log_index",
        )
        .bind(&o.id)
        .fetch_all(db.store.sqlite_pool().expect("the demo runs on SQLite"))
        .await
        .expect("events")
        .iter()
        .map(|r| r.get(0))
        .collect();
        println!(
            "   {:<10} {:<8} {:<11} {}",
            o.id,
            o.status,
            o.payment_status,
            events.join(", ")
        );
    }
    let unknown = db
        .count("SELECT COUNT(*) FROM contract_events WHERE match_status = 'unknown_order'")
        .await;
    if unknown > 0 {
        println!("   (+ {unknown} payment(s) for no known order: unknown_order)");
    }
}
