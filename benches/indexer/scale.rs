//! Provider-scale rows (`--only providers`, or one of `--only
//! provider-coinbase`, `provider-generous`, `provider-16m`,
//! `dense-latency`, `near-head`): a first sync of a mostly empty chain of millions of
//! blocks from the simulated provider (`provider`), with the shipped
//! settings and only what a user must set (RPC URL, chain id, contract,
//! token, start block, and the plan's rate as
//! `chain.max_requests_per_second`), timed from spawn until the checkpoint
//! is the head and every order is paid; and the dense bench chain on anvil
//! behind a 50 ms proxy against the same without it; and the requests per
//! 1,000 blocks of following the head at three bloom fills.
//! `LIQPASS_BENCH_DEFENCES=off` runs the sparse rows without the
//! completeness audit and the sweep; `LIQPASS_BIN` runs another build.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use alloy::primitives::Address;

use super::support::chain::{order_ref, Chain};
use super::support::daemon::Daemon;
use super::support::db::Db;
use super::support::provider::{Paid, Profile, Provider, CHAIN_ID, USDC};
use super::support::proxy::RpcProxy;
use super::{assert_running, env_with, orders_for};

/// Payments on the sparse chains, each with its order.
pub const SPARSE_PAYMENTS: u64 = 200;
const PREMIUM: u64 = 5_000_000;

/// Coinbase's Base node as documented: 1,000-block ranges, ~50 requests/s.
pub const COINBASE: Profile = Profile {
    latency: Duration::from_millis(50),
    range_cap: 1_000,
    result_cap: None,
    per_second: 50,
    bloom_fill: 0.6,
    block_time: None,
};

/// A generous paid plan: 100,000-block ranges, 300 requests/s, and the
/// 10,000-log answer cap of Infura and dRPC.
pub const GENEROUS: Profile = Profile {
    latency: Duration::from_millis(80),
    range_cap: 100_000,
    result_cap: Some(10_000),
    per_second: 300,
    bloom_fill: 0.6,
    block_time: None,
};

/// A first sync of `blocks` sparse blocks from a provider behaving as
/// `profile`: the row's name and figures.
/// `configured`: the plan's rate set as `chain.max_requests_per_second`
/// (else unset, as a new user leaves it: the daemon learns it).
pub async fn sparse(
    what: &str,
    profile: Profile,
    blocks: u64,
    configured: bool,
) -> (String, String) {
    let contract: Address = "0xc423c34b57730ba87fb74b99180663913a345d68"
        .parse()
        .expect("address");
    let head = blocks - 1;
    let db = Db::new().await;
    // Spread over the chain, all of them final at the head.
    let payments = paid_orders(&db, 5_000_000, SPARSE_PAYMENTS, |i| {
        1 + i * (head - 100) / SPARSE_PAYMENTS
    })
    .await;
    let provider = Provider::start(profile, head, contract, payments).await;
    let rate = profile.per_second.to_string();
    let set: &[(&str, String)] = if configured {
        &[("CHAIN__MAX_REQUESTS_PER_SECOND", rate)]
    } else {
        &[]
    };
    let mut env = sim_env(&db, &provider, contract, 0, set);
    let defences = defences_on();
    if !defences {
        env.insert("LIQPASS__AUDIT__INTERVAL_MS".into(), "0".into());
        env.insert(
            "LIQPASS__RECONCILE__PENDING_SWEEP_INTERVAL_S".into(),
            "0".into(),
        );
    }
    env.insert("MALLOC_ARENA_MAX".into(), "1".into());
    // Its address, to read its own count of rate limits at the end.
    env.insert(
        "LIQPASS__LOG__LEVEL".into(),
        "warn,liqpass_indexer::app=info".into(),
    );
    let started = Instant::now();
    let mut daemon = Daemon::spawn(&env);
    synced(&mut daemon, &db, head, SPARSE_PAYMENTS).await;
    let took = started.elapsed().as_secs_f64();
    let audited = audited(&db).await;
    let counted = super::support::metric_total(
        &format!("http://{}", daemon.http_addr().await),
        "liqpass_indexer_rpc_rate_limited_total",
    )
    .await
    .expect("the daemon's metrics") as u64;
    drop(daemon);
    let s = &provider.stats;
    let requests = s.requests.load(Ordering::Relaxed);
    let refused = s.refused.load(Ordering::Relaxed);
    let limited = s.rate_limited.load(Ordering::Relaxed);
    let name =
        format!(
        "first sync, {blocks} sparse blocks, {SPARSE_PAYMENTS} paid orders, {what} (simulated){}{}",
        if configured {
            ""
        } else {
            ", max_requests_per_second unset"
        },
        if defences { "" } else { ", audit and sweep off" }
    );
    let result = format!(
        "{took:.2} s; {requests} requests ({} getLogs, {} headers), {refused} refused, \
         {limited} rate-limited ({:.2} %; the daemon counted {counted}); {:.0} requests/s; \
         audited to block {}",
        s.get_logs.load(Ordering::Relaxed),
        s.headers.load(Ordering::Relaxed),
        100.0 * (refused + limited) as f64 / requests.max(1) as f64,
        requests as f64 / took,
        audited.map_or("-".into(), |a| a.to_string()),
    );
    (name, result)
}

/// `n` payments of orders `ord_000`… (refs from `first_ref`), payment `i`
/// in block `block_of(i)`, each order inserted pending into `db`.
async fn paid_orders(
    db: &Db,
    first_ref: u64,
    n: u64,
    block_of: impl Fn(u64) -> u64,
) -> BTreeMap<u64, Vec<Paid>> {
    let mut payments: BTreeMap<u64, Vec<Paid>> = BTreeMap::new();
    for i in 0..n {
        let buyer = Address::left_padding_from(&(i + 1).to_be_bytes());
        let order = order_ref(first_ref + i);
        db.insert_order(&format!("ord_{i:03}"), order, buyer, PREMIUM as i64)
            .await;
        payments.entry(block_of(i)).or_default().push(Paid {
            order_ref: order,
            buyer,
            amount: PREMIUM,
        });
    }
    payments
}

/// The daemon's environment for the simulator: only what a user must set
/// (RPC URL, chain id, contract, token, start block), `extra`, and the
/// harness's free port and quiet logs.
fn sim_env(
    db: &Db,
    provider: &Provider,
    contract: Address,
    start: u64,
    extra: &[(&str, String)],
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let base = [
        ("DATABASE__URL", db.url()),
        ("CHAIN__RPC_URL", provider.url()),
        ("CHAIN__CHAIN_ID", CHAIN_ID.to_string()),
        ("CHAIN__CONTRACT", format!("{contract:#x}")),
        ("CHAIN__TOKEN", USDC.to_lowercase()),
        ("CHAIN__START_BLOCK", start.to_string()),
        // Harness, not tuning: a free port, quiet logs.
        ("HTTP__LISTEN", "127.0.0.1:0".into()),
        ("LOG__LEVEL", "warn".into()),
    ];
    for (k, v) in base.iter().chain(extra) {
        env.insert(format!("LIQPASS__{k}"), v.clone());
    }
    env
}

/// `LIQPASS_BENCH_DEFENCES=off`: the sparse rows without the completeness
/// audit and the pending-order sweep (the figures before/after them).
fn defences_on() -> bool {
    std::env::var("LIQPASS_BENCH_DEFENCES").map_or(true, |v| v != "off")
}

/// The completeness audit's position (`None` before the first range, or
/// on a build without it: `LIQPASS_BIN`).
async fn audited(db: &Db) -> Option<i64> {
    let pool = db.store.sqlite_pool()?;
    sqlx::query_scalar("SELECT MAX(audited_block) FROM audit_state")
        .fetch_one(pool)
        .await
        .ok()
        .flatten()
}

/// Following a moving head for `NEAR_BLOCKS` blocks (one every 50 ms on the
/// simulator, 10 of them with a payment) at a bloom `fill`: the requests
/// made per 1,000 blocks, by kind. The daemon polls twice a block, as it
/// would on Base (2 s blocks, `poll_interval_ms` 1000).
pub async fn near_head(fill: f64) -> (String, String) {
    const NEAR_BLOCKS: u64 = 1_000;
    const START: u64 = 1_000_000;
    let contract: Address = "0xc423c34b57730ba87fb74b99180663913a345d68"
        .parse()
        .expect("address");
    let profile = Profile {
        latency: Duration::from_millis(5),
        bloom_fill: fill,
        block_time: Some(Duration::from_millis(50)),
        ..COINBASE
    };
    let db = Db::new().await;
    let payments = paid_orders(&db, 7_000_000, 10, |i| {
        START + 50 + i * (NEAR_BLOCKS - 100) / 10
    })
    .await;
    let provider = Provider::start(profile, START, contract, payments).await;
    let poll = [("CHAIN__POLL_INTERVAL_MS", "25".to_owned())];
    let env = sim_env(&db, &provider, contract, START, &poll);
    let mut daemon = Daemon::spawn(&env);
    let at = |block: u64| {
        let db = &db;
        async move { db.checkpoint().await >= Some(block as i64) }
    };
    super::support::wait_for("the head", Duration::from_secs(60), || async {
        at(START + 10).await.then_some(())
    })
    .await;
    let s = &provider.stats;
    let count = || [&s.requests, &s.get_logs, &s.headers].map(|c| c.load(Ordering::Relaxed));
    let before = count();
    super::support::wait_for("1,000 blocks", Duration::from_secs(300), || {
        assert_running(&mut daemon);
        async { at(START + 10 + NEAR_BLOCKS).await.then_some(()) }
    })
    .await;
    let after = count();
    let paid = db
        .count("SELECT COUNT(*) FROM orders WHERE payment_status IN ('confirming', 'paid')")
        .await;
    assert_eq!(paid, 10, "every payment near the head seen");
    let [requests, get_logs, headers] = [0, 1, 2].map(|i| after[i] - before[i]);
    (
        format!("near the head, {NEAR_BLOCKS} new blocks (10 with a payment), bloom {:.0} % full (simulated)", fill * 100.0),
        format!(
            "per 1,000 blocks: {requests} requests ({get_logs} getLogs, {headers} headers, {} head polls)",
            requests - get_logs - headers
        ),
    )
}

/// Waits until the checkpoint is `head` and `paid` orders are paid, the
/// daemon running all along; then checks every payment is stored once.
async fn synced(daemon: &mut Daemon, db: &Db, head: u64, paid: u64) {
    let paid_sql = "SELECT COUNT(*) FROM orders WHERE status = 'paid' AND payment_status = 'paid'";
    super::support::wait_for("the first sync", Duration::from_secs(600), || {
        assert_running(daemon);
        async move {
            let at_head = db.checkpoint().await >= Some(head as i64);
            (at_head && db.count(paid_sql).await as u64 >= paid).then_some(())
        }
    })
    .await;
    let events = db.count("SELECT COUNT(*) FROM contract_events").await as u64;
    assert_eq!(events, paid, "every payment, once");
    assert_eq!(db.count(paid_sql).await as u64, paid, "every order paid");
}

/// The dense bench chain indexed from launch to every order paid, straight
/// from anvil and behind a proxy adding 50 ms to every request.
pub async fn dense_latency(chain: &Chain, payments: u64, first_ref: u64) -> (String, String) {
    // One more block, so that the last block's payments are final too
    // (confirmations 1, as in the other rows).
    chain.mine(1).await;
    let head = chain.head().await;
    let mut took = Vec::new();
    for latency in [Duration::ZERO, Duration::from_millis(50)] {
        let proxy = RpcProxy::start(&chain.rpc_url()).await;
        proxy.slow(latency);
        let db = Db::new().await;
        orders_for(&db, chain, payments, first_ref).await;
        let url = if latency.is_zero() {
            chain.rpc_url()
        } else {
            proxy.url()
        };
        let started = Instant::now();
        let mut daemon = Daemon::spawn(&env_with(
            chain,
            &db,
            &[("LIQPASS__CHAIN__RPC_URL", url.as_str())],
        ));
        synced(&mut daemon, &db, head, payments).await;
        took.push(started.elapsed().as_secs_f64());
    }
    (
        format!("dense chain ({payments} paid orders over {head} blocks): no latency vs 50 ms per request"),
        format!(
            "{:.2} s vs {:.2} s = {:.2}x",
            took[0],
            took[1],
            took[1] / took[0]
        ),
    )
}
