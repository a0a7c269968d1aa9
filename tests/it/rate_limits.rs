//! Rate limits counted and learned, against the provider simulator
//! (`support::provider`: a virtual sparse chain over HTTP JSON-RPC that
//! answers HTTP 429 with Retry-After beyond its requests per second). Every
//! 429 is counted by the daemon where it happens, below alloy's retries, so
//! its count equals the simulator's; left unset, the request budget learns
//! the provider's rate from the first rate limits and keeps the share of
//! 429s small; set, it is never rate-limited.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use alloy::primitives::Address;

use crate::support::chain::order_ref;
use crate::support::daemon::{command, Daemon};
use crate::support::db::Db;
use crate::support::provider::{Paid, Profile, Provider, CHAIN_ID, USDC};
use crate::support::{metric_total, wait_for};

const PREMIUM: u64 = 5_000_000;
const PAYMENTS: u64 = 20;

/// Coinbase's Base node as documented (docs/performance.md): 1,000-block
/// ranges, 50 requests a second; a shorter latency, for a shorter test.
const PROVIDER: Profile = Profile {
    latency: Duration::from_millis(20),
    range_cap: 1_000,
    result_cap: None,
    per_second: 50,
    bloom_fill: 0.6,
    block_time: None,
};

/// What one first sync showed.
struct Sync {
    requests: u64,
    /// 429s the simulator answered.
    limited: u64,
    /// Rate-limit answers the daemon counted, all endpoints.
    counted: u64,
    logs: String,
    status: String,
}

/// A first sync of `blocks` sparse blocks from the simulator, with
/// `chain.max_requests_per_second` = `rate` (`None`: unset, as a new user
/// leaves it), until every order is paid at the head.
async fn first_sync(rate: Option<u64>, blocks: u64) -> Sync {
    let contract: Address = "0xc423c34b57730ba87fb74b99180663913a345d68"
        .parse()
        .expect("address");
    let head = blocks - 1;
    let db = Db::new().await;
    let mut payments: BTreeMap<u64, Vec<Paid>> = BTreeMap::new();
    for i in 0..PAYMENTS {
        let buyer = Address::left_padding_from(&(i + 1).to_be_bytes());
        db.insert_order(&format!("ord_{i:03}"), order_ref(i), buyer, PREMIUM as i64)
            .await;
        let block = 1 + i * (head - 100) / PAYMENTS;
        payments.entry(block).or_default().push(Paid {
            order_ref: order_ref(i),
            buyer,
            amount: PREMIUM,
        });
    }
    let provider = Provider::start(PROVIDER, head, contract, payments).await;
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        env.insert(format!("LIQPASS__{k}"), v);
    };
    set("DATABASE__URL", db.url());
    set("CHAIN__RPC_URL", provider.url());
    set("CHAIN__CHAIN_ID", CHAIN_ID.to_string());
    set("CHAIN__CONTRACT", format!("{contract:#x}"));
    set("CHAIN__TOKEN", USDC.to_lowercase());
    set("CHAIN__START_BLOCK", "0".into());
    set("HTTP__LISTEN", "127.0.0.1:0".into());
    set("LOG__LEVEL", "info".into());
    set("LOG__PROGRESS_INTERVAL_MS", "1000".into());
    if let Some(rate) = rate {
        set("CHAIN__MAX_REQUESTS_PER_SECOND", rate.to_string());
    }
    let daemon = Daemon::spawn(&env);
    let addr = daemon.http_addr().await;
    wait_for("the first sync", Duration::from_secs(120), || async {
        let paid = db
            .count("SELECT COUNT(*) FROM orders WHERE status = 'paid'")
            .await;
        (db.checkpoint().await >= Some(head as i64) && paid == PAYMENTS as i64).then_some(())
    })
    .await;
    let counted = metric_total(
        &format!("http://{addr}"),
        "liqpass_indexer_rpc_rate_limited_total",
    )
    .await
    .expect("the daemon's metrics") as u64;
    let mut at_daemon = env.clone();
    at_daemon.insert("LIQPASS__HTTP__LISTEN".into(), addr.to_string());
    let status = command(&at_daemon, &["status"]);
    assert!(status.status.success(), "status: {status:?}");
    let s = &provider.stats;
    Sync {
        requests: s.requests.load(Ordering::Relaxed),
        limited: s.rate_limited.load(Ordering::Relaxed),
        counted,
        logs: daemon.logs(),
        status: String::from_utf8_lossy(&status.stdout).into_owned(),
    }
}

/// Unset, the first requests go out unbounded and the provider answers
/// 429s; from them the budget learns its rate: over a 300,000-block first
/// sync at most 3 % of the requests are rate-limited, every one of them is
/// counted (the metric equals the simulator's count), and the progress
/// line and `status` show them.
#[tokio::test]
async fn left_unset_the_rate_is_learned_and_every_rate_limit_is_counted() {
    let run = first_sync(None, 300_000).await;
    assert!(
        run.limited > 0,
        "the provider never rate-limited the unbounded start: nothing was learned"
    );
    assert_eq!(
        run.counted, run.limited,
        "the daemon counts every 429 the provider answered"
    );
    assert!(
        run.limited * 100 <= run.requests * 3,
        "{} of {} requests rate-limited",
        run.limited,
        run.requests
    );
    let progress: Vec<&str> = run
        .logs
        .lines()
        .filter(|l| l.contains("catching up"))
        .collect();
    assert!(
        progress.iter().any(|l| !l.contains("rate_limited=0 ")),
        "a progress line shows the rate limits:\n{}",
        progress.join("\n")
    );
    assert!(
        progress.last().is_some_and(|l| l.contains("learned")),
        "the progress line shows the learned rate:\n{}",
        progress.join("\n")
    );
    assert!(
        run.status
            .contains(&format!("rate limits  {} answered 429", run.limited)),
        "status shows them:\n{}",
        run.status
    );
}

/// Set to the provider's rate, the budget keeps under it: not one 429.
#[tokio::test]
async fn set_to_the_providers_rate_nothing_is_rate_limited() {
    let run = first_sync(Some(PROVIDER.per_second), 100_000).await;
    assert_eq!((run.limited, run.counted), (0, 0));
    assert!(
        run.status.contains("rate limits  0 answered 429"),
        "{}",
        run.status
    );
}
