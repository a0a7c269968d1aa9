//! The PostgreSQL server itself fails under a running pair of replicas,
//! mid-stream: restarted (`pg_ctl restart -m fast`: every connection
//! closed) or crashed (`kill -9` of the postmaster, then crash recovery).
//! Both replicas reconnect by themselves, exactly one leads, both are ready
//! again without help, and every payment is counted once; and a crash
//! that loses acknowledged commits is caught at the next commit. Each on a
//! cluster of its own, since it takes the server down.

use std::time::Duration;

use crate::support::chain::{order_ref, Chain};
use crate::support::daemon::{env_for, with, Daemon};
use crate::support::db::Db;
use crate::support::pg::{private_cluster, private_cluster_losing_commits, Cluster};
use crate::support::{caught_up, metric, wait_for};

const PREMIUM: u64 = 5_000_000;
/// Payments of the stream, one block each; the outage begins after a third.
const PAYMENTS: u64 = 12;
/// The stream's pace: about four payments a second.
const PACE: Duration = Duration::from_millis(250);

/// How the server goes down.
#[derive(Debug, Clone, Copy)]
enum Outage {
    Restart,
    Crash,
}

impl Outage {
    fn apply(self, cluster: &Cluster) {
        match self {
            Self::Restart => cluster.restart(),
            Self::Crash => cluster.crash_and_recover(),
        }
    }
}

async fn leaders(urls: &[String]) -> Option<f64> {
    let mut sum = 0.0;
    for url in urls {
        sum += metric(url, "liqpass_indexer_leader").await?;
    }
    Some(sum)
}

#[tokio::test]
async fn a_restart_of_the_server_mid_stream_loses_nothing_and_readiness_returns_by_itself() {
    server_outage_mid_stream(Outage::Restart).await;
}

#[tokio::test]
async fn a_crash_of_the_server_mid_stream_loses_nothing_and_readiness_returns_by_itself() {
    server_outage_mid_stream(Outage::Crash).await;
}

async fn server_outage_mid_stream(outage: Outage) {
    let chain = Chain::start().await;
    let cluster = private_cluster();
    let db = Db::on_cluster(cluster).await;
    db.insert_orders(&chain.buyers, 300, PAYMENTS, PREMIUM as i64)
        .await;
    let env = env_for(&chain, &db);
    let (first, second) = Daemon::leader_and_standby(&env).await;
    let urls = [
        format!("http://{}", first.http_addr().await),
        format!("http://{}", second.http_addr().await),
    ];
    let mut down = None;
    for i in 0..PAYMENTS {
        if i == PAYMENTS / 3 {
            // The server goes down (and comes back) while payments go on.
            down = Some(tokio::task::spawn_blocking(move || outage.apply(cluster)));
        }
        let buyer = chain.buyers[i as usize % chain.buyers.len()];
        chain.pay(buyer, order_ref(300 + i), PREMIUM).await;
        chain.mine(1).await;
        tokio::time::sleep(PACE).await;
    }
    down.expect("the outage began")
        .await
        .expect("the outage ran");
    chain.mine(3).await;
    for i in 0..PAYMENTS {
        db.wait_payment_status(&format!("ord_{i:03}"), "paid").await;
    }
    wait_for("exactly one leader", Duration::from_secs(30), || async {
        (leaders(&urls).await == Some(1.0)).then_some(())
    })
    .await;
    caught_up(&chain, &db).await;
    wait_for(
        "both replicas ready again, by themselves",
        Duration::from_secs(30),
        || async {
            for url in &urls {
                let status = reqwest::get(format!("{url}/readyz")).await.ok()?.status();
                if status != 200 {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    assert_eq!(leaders(&urls).await, Some(1.0), "still one leader");
    let events = db.events().await;
    assert_eq!(
        events.len() as u64,
        PAYMENTS,
        "{outage:?}: every payment once: {events:?}"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM order_audit").await as u64,
        2 * PAYMENTS,
        "payment_seen + payment_final per order, once"
    );
    let mut seen = false;
    for (name, d) in [("first", &first), ("second", &second)] {
        let logs = d.logs();
        assert!(!logs.contains("panicked"), "{name} panicked:\n{logs}");
        // The server lost no commit it acknowledged: the indexer's own path
        // stored every payment, the completeness audit found none missing.
        assert!(
            !logs.contains("found and stored (completeness)"),
            "{outage:?}: {name} skipped a payment the audit had to recover:\n{logs}"
        );
        seen |= [
            "batch not committed",
            "cannot renew",
            "stepping down",
            "reading the database failed",
        ]
        .iter()
        .any(|sign| logs.contains(sign));
    }
    assert!(seen, "{outage:?}: no replica saw the server go down");
}

/// A server that loses commits it acknowledged (here a crash with
/// `synchronous_commit = off`; in production a failover to a replica that
/// was behind): the leader's next commit finds the stored checkpoint behind
/// the one it left, rolls back, and the term ends; the next term resumes
/// from the stored checkpoint and indexes the lost blocks again. Every
/// payment is stored once, by the indexer's own path, none left to the
/// completeness audit.
#[tokio::test]
async fn commits_the_server_lost_are_indexed_again_from_the_stored_checkpoint() {
    let chain = Chain::start().await;
    let cluster = private_cluster_losing_commits();
    let db = Db::on_cluster(cluster).await;
    db.insert_orders(&chain.buyers, 400, 6, PREMIUM as i64)
        .await;
    // A lease that outlives the crash: the term goes on through it (a
    // step-down would start a new term from the stored checkpoint anyway),
    // and only its next commit can find out what was lost.
    let daemon = Daemon::spawn(&with(
        &env_for(&chain, &db),
        &[
            ("LIQPASS__HA__LEASE_TTL_MS", "30000".into()),
            ("LIQPASS__HA__RENEW_INTERVAL_MS", "2000".into()),
        ],
    ));
    let base = format!("http://{}", daemon.http_addr().await);
    let pay = |i: u64| {
        let buyer = chain.buyers[i as usize % chain.buyers.len()];
        chain.pay(buyer, order_ref(400 + i), PREMIUM)
    };
    for i in 0..3 {
        pay(i).await;
    }
    chain.mine(3).await;
    for i in 0..3 {
        db.wait_payment_status(&format!("ord_{i:03}"), "paid").await;
    }
    // Durable up to here; the next commits stay in the server's memory.
    db.execute("CHECKPOINT").await;
    for i in 3..6 {
        pay(i).await;
    }
    chain.mine(3).await;
    for i in 3..6 {
        db.wait_payment_status(&format!("ord_{i:03}"), "paid").await;
    }
    let before = db.checkpoint().await;

    cluster.crash_and_recover();
    let after = db.checkpoint().await;
    assert!(
        after < before,
        "the crash lost the last commits (checkpoint {before:?}, now {after:?})"
    );
    chain.mine(1).await;
    for i in 0..6 {
        db.wait_payment_status(&format!("ord_{i:03}"), "paid").await;
    }
    caught_up(&chain, &db).await;
    daemon
        .logged(
            "ending the term: the next resumes from the stored checkpoint",
            1,
        )
        .await;
    assert_eq!(db.events().await.len(), 6, "every payment once");
    assert_eq!(
        db.count("SELECT COUNT(*) FROM order_audit").await,
        12,
        "payment_seen + payment_final per order, once"
    );
    let logs = daemon.logs();
    assert!(
        !logs.contains("found and stored (completeness)"),
        "the audit had to recover what the term skipped:\n{logs}"
    );
    crate::support::until_ready(&base).await;
}
