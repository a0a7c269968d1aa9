//! Prints a `/metrics` scrape taken while the indexer indexes payments on a
//! local anvil, for `promtool check metrics` (`make check-deploy`).

#[path = "../tests/support/mod.rs"]
mod support;

use support::chain::{order_ref, Chain};
use support::daemon::{env_for, Daemon};
use support::db::Db;

#[tokio::main]
async fn main() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    for i in 0..5u64 {
        db.insert_order(
            &format!("ord_{i}"),
            order_ref(i),
            chain.buyers[0],
            1_000_000,
        )
        .await;
    }
    let daemon = Daemon::spawn(&env_for(&chain, &db));
    let base = format!("http://{}", daemon.http_addr().await);
    for i in 0..5u64 {
        chain
            .pay(chain.buyers[(i % 2) as usize], order_ref(i), 1_000_000)
            .await;
    }
    db.wait_events(5).await;
    let scrape = support::http_get(&format!("{base}/metrics")).await.1;
    print!("{scrape}");
}
