//! A PostgreSQL server restarted under a running pair of replicas: both
//! reconnect, exactly one leads, and every payment is counted once. On a
//! cluster of its own, because the restart cuts every connection to it.

use std::time::Duration;

use crate::support::chain::{order_ref, Chain};
use crate::support::daemon::{env_for, Daemon};
use crate::support::db::Db;
use crate::support::{caught_up, metric, wait_for};

const PREMIUM: u64 = 5_000_000;

async fn leaders(urls: &[String]) -> Option<f64> {
    let mut sum = 0.0;
    for url in urls {
        sum += metric(url, "liqpass_indexer_leader").await?;
    }
    Some(sum)
}

#[tokio::test]
async fn a_restarted_postgres_server_leaves_one_leader_and_loses_nothing() {
    let chain = Chain::start().await;
    let cluster = crate::support::pg::private_cluster();
    let db = Db::on_cluster(cluster).await;
    db.insert_orders(&chain.buyers, 300, 4, PREMIUM as i64)
        .await;
    let env = env_for(&chain, &db);
    let (first, second) = Daemon::leader_and_standby(&env).await;
    let urls = [
        format!("http://{}", first.http_addr().await),
        format!("http://{}", second.http_addr().await),
    ];
    chain.pay(chain.buyers[0], order_ref(300), PREMIUM).await;
    chain.mine(3).await;
    db.wait_payment_status("ord_000", "paid").await;

    cluster.restart();

    // Paid while (or just after) the server was down: indexed once it is back.
    chain.pay(chain.buyers[1], order_ref(301), PREMIUM).await;
    chain.mine(3).await;
    db.wait_payment_status("ord_001", "paid").await;
    wait_for("exactly one leader", Duration::from_secs(30), || async {
        (leaders(&urls).await == Some(1.0)).then_some(())
    })
    .await;
    chain.pay(chain.buyers[2], order_ref(302), PREMIUM).await;
    chain.mine(3).await;
    db.wait_payment_status("ord_002", "paid").await;
    caught_up(&chain, &db).await;
    assert_eq!(leaders(&urls).await, Some(1.0), "still one leader");
    let events = db.events().await;
    assert_eq!(events.len(), 3, "every payment once: {events:?}");
    assert_eq!(
        db.count("SELECT COUNT(*) FROM order_audit").await,
        6,
        "payment_seen + payment_final per order, once"
    );
    for (name, d) in [("first", &first), ("second", &second)] {
        let logs = d.logs();
        assert!(!logs.contains("panicked"), "{name} panicked:\n{logs}");
    }
}
