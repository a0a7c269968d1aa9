//! Shared test harness: a real anvil node with the test contracts deployed,
//! a temporary SQLite database holding orders as the order API writes them,
//! and the real `liqpass-indexer` binary run against both.
#![allow(dead_code)]

pub mod chain;
pub mod daemon;
#[macro_use]
pub mod db;
pub mod disk;
pub mod history;
pub mod omit;
pub mod pg;
pub mod provider;
pub mod proxy;
pub mod receiver;
pub mod wording;

/// One test body, run once per backend: `both_backends!(name, body)`
/// makes `name::sqlite` and `name::postgres`, each calling
/// `body(Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$body($crate::support::db::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$body($crate::support::db::Postgres).await
            }
        }
    };
}

use std::future::Future;
use std::time::{Duration, Instant};

/// Waits until `check` returns `Some`, polling every 20 ms, or panics with
/// `what` after `timeout`. Tests wait for conditions, never for time.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `fut` with a timeout, panicking with `what` if it does not finish.
pub async fn within<T>(
    what: &str,
    timeout: Duration,
    fut: impl std::future::IntoFuture<Output = T>,
) -> T {
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {timeout:?}: {what}"))
}

/// Indexes `chain` once more, without faults, into a fresh database on
/// `backend` holding `payments` orders `ord_000`… (refs `first_ref`…, of
/// `premium`, wallets from `buyers` in turn) until every one is paid, and
/// asserts that `db` holds the same events (none lost or doubled), order
/// states and audit rows.
pub async fn equals_a_clean_run(
    chain: &chain::Chain,
    db: &db::Db,
    backend: db::Backend,
    buyers: &[alloy::primitives::Address],
    (first_ref, payments, premium): (u64, u64, i64),
) {
    let clean = db::Db::on(backend).await;
    clean
        .insert_orders(buyers, first_ref, payments, premium)
        .await;
    let _reference = daemon::Daemon::spawn(&daemon::env_for(chain, &clean));
    caught_up(chain, &clean).await;
    clean.wait_paid_orders(payments).await;
    assert_eq!(
        db.events().await,
        clean.events().await,
        "same events, none lost or doubled"
    );
    assert_eq!(db.orders().await, clean.orders().await, "same order states");
    assert_eq!(db.audit().await, clean.audit().await, "same audit rows");
    // The same outbox: each change announced once, with the same event id
    // and payload, whatever interrupted the run.
    let sorted = |mut v: Vec<db::Notice>| {
        v.sort_by(|a, b| a.event_id.cmp(&b.event_id));
        v
    };
    assert_eq!(
        sorted(db.notifications().await),
        sorted(clean.notifications().await),
        "same outbox"
    );
}

/// Waits until the indexer's checkpoint reaches the chain's current head.
pub async fn caught_up(chain: &chain::Chain, db: &db::Db) {
    let head = chain.head().await as i64;
    wait_for(
        "the indexer to reach the head",
        Duration::from_secs(90),
        || async { (db.checkpoint().await >= Some(head)).then_some(()) },
    )
    .await;
}

/// Waits until `/readyz` at `base` answers 200.
pub async fn until_ready(base: &str) {
    wait_for("readiness", Duration::from_secs(90), || async {
        let status = reqwest::get(format!("{base}/readyz"))
            .await
            .ok()?
            .status()
            .as_u16();
        (status == 200).then_some(())
    })
    .await;
}

/// GET `url`: the status and the body. Panics when nothing answers.
pub async fn http_get(url: &str) -> (u16, String) {
    let resp = reqwest::get(url).await.expect("http request");
    (resp.status().as_u16(), resp.text().await.expect("body"))
}

/// The `/metrics` text at `base`, if it answers.
async fn scrape(base: &str) -> Option<String> {
    reqwest::get(format!("{base}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// The value of the first `/metrics` sample at `base` whose name and labels
/// are `series` (e.g. `liqpass_indexer_stalled` or
/// `liqpass_indexer_db_write_failures_total{cause="disk_full"}`).
pub async fn metric(base: &str, series: &str) -> Option<f64> {
    let text = scrape(base).await?;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The sum of every `/metrics` sample at `base` of the family `name`,
/// whatever its labels (e.g. `liqpass_indexer_rpc_rate_limited_total`
/// over all endpoints).
pub async fn metric_total(base: &str, name: &str) -> Option<f64> {
    let text = scrape(base).await?;
    let labelled = format!("{name}{{");
    Some(
        text.lines()
            .filter(|l| l.starts_with(&labelled) || l.starts_with(&format!("{name} ")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

/// The body of `/readyz` at `base`, if it answers.
pub async fn readyz(base: &str) -> Option<String> {
    reqwest::get(format!("{base}/readyz"))
        .await
        .ok()?
        .text()
        .await
        .ok()
}
