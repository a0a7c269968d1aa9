//! Hosted providers' getLogs limits, in their own words (a proxy in front of
//! anvil refuses as each provider does): the indexer learns each limit from
//! the refusal, never sends a refused range again, keeps later ranges
//! within a block limit it learned, and indexes every payment. Deep ranges
//! fly several at once, and one that fails holds back the ranges after it.
//! And a catch-up longer than `chain.stall_after_s` is not a stall.

use std::time::Duration;

use crate::support::chain::{order_ref, Chain};
use crate::support::daemon::{env_for, with, Daemon};
use crate::support::db::Db;
use crate::support::proxy::{Cap, RpcProxy, Wording};
use crate::support::wait_for;

const PREMIUM: u64 = 5_000_000;
const PAYMENTS: u64 = 10;
/// Empty blocks mined after each payment.
const GAP: u64 = 60;
/// A block limit (and for result limits, a log limit) the proxy enforces.
const BLOCK_CAP: u64 = 50;
const LOG_CAP: u64 = 3;
/// `chain.max_concurrent_requests` here: deep ranges in flight (few, so
/// that ranges grow into the proxy's limits on this short chain).
const WINDOW: usize = 2;

/// One case per provider wording; where a provider uses two codes (or an
/// HTTP error status) for it, both.
const WORDINGS: &[Wording] = &[
    Wording {
        provider: "Coinbase (CDP) Base node, -32005",
        status: 200,
        code: -32005,
        message: "please limit the query to at most {N} blocks",
        cap: Cap::Blocks,
    },
    Wording {
        provider: "Coinbase (CDP) Base node, -32600 / HTTP 400",
        status: 400,
        code: -32600,
        message: "please limit the query to at most {N} blocks",
        cap: Cap::Blocks,
    },
    Wording {
        provider: "QuickNode, -32614 / HTTP 413",
        status: 413,
        code: -32614,
        message: "eth_getLogs is limited to a {N,} range",
        cap: Cap::Blocks,
    },
    Wording {
        provider: "Infura, result limit",
        status: 200,
        code: -32005,
        message: "query returned more than {N} results. Try with this block range [{FROM}, {TO}].",
        cap: Cap::Logs,
    },
    Wording {
        provider: "Infura, block limit",
        status: 200,
        code: -32602,
        message: "range {LEN} exceeds limit of {N}",
        cap: Cap::Blocks,
    },
    Wording {
        provider: "Alchemy, block limit, -32600 / HTTP 400",
        status: 400,
        code: -32600,
        message: "You can make eth_getLogs requests with up to a {N} block range. Based on your parameters, this block range should work: [{FROM}, {TO}]",
        cap: Cap::Blocks,
    },
    Wording {
        provider: "Alchemy, response size, -32602",
        status: 200,
        code: -32602,
        message: "Log response size exceeded. You can make eth_getLogs requests with up to a {N} block range and no limit on the response size, or you can request any block range with a cap of 10K logs in the response. Based on your parameters, this block range should work: [{FROM}, {TO}]",
        cap: Cap::Blocks,
    },
    Wording {
        provider: "Ankr",
        status: 200,
        code: -32600,
        message: "block range is too wide",
        cap: Cap::Blocks,
    },
    Wording {
        provider: "Ankr, newer chains",
        status: 200,
        code: -32602,
        message: "maximum [from, to] blocks distance: {N}",
        cap: Cap::Blocks,
    },
    Wording {
        provider: "Chainstack",
        status: 200,
        code: -32000,
        message: "Block range limit exceeded.",
        cap: Cap::Blocks,
    },
    Wording {
        provider: "dRPC, free tier",
        status: 200,
        code: 35,
        message: "ranges over {N} blocks are not supported on freetier",
        cap: Cap::Blocks,
    },
    Wording {
        provider: "dRPC, result limit",
        status: 200,
        code: -32602,
        message: "query returned more than {N} results. Try with this block range [{FROM}, {TO}].",
        cap: Cap::Logs,
    },
    Wording {
        provider: "Base public endpoint",
        status: 200,
        code: -32000,
        message: "block range too large",
        cap: Cap::Blocks,
    },
    Wording {
        provider: "geth / BSC",
        status: 200,
        code: -32000,
        message: "exceed maximum block range: {N}",
        cap: Cap::Blocks,
    },
    Wording {
        provider: "geth, result limit",
        status: 200,
        code: -32005,
        message: "query returned more than {N} results",
        cap: Cap::Logs,
    },
    Wording {
        provider: "reth / op-reth",
        status: 200,
        code: -32602,
        message: "query exceeds max block range {N}",
        cap: Cap::Blocks,
    },
    Wording {
        provider: "reth, result limit",
        status: 200,
        code: -32602,
        message: "query exceeds max results {N}, retry with the range {from}-{to}",
        cap: Cap::Logs,
    },
];

/// Payments with `GAP` empty blocks after each, then blocks to make them
/// final; the payments' blocks.
async fn pay_sparsely(chain: &Chain) -> Vec<u64> {
    let mut blocks = Vec::new();
    for i in 0..PAYMENTS {
        let receipt = chain
            .pay(chain.buyers[i as usize % 8], order_ref(7_000 + i), PREMIUM)
            .await;
        blocks.push(receipt.block_number.expect("mined"));
        chain.mine(GAP).await;
    }
    blocks
}

/// A database holding the orders `pay_sparsely` pays, and a proxy in front
/// of the chain.
async fn orders_behind_a_proxy(chain: &Chain) -> (Db, RpcProxy) {
    let db = Db::new().await;
    db.insert_orders(&chain.buyers, 7_000, PAYMENTS, PREMIUM as i64)
        .await;
    (db, RpcProxy::start(&chain.rpc_url()).await)
}

/// What one run behind a refusing proxy saw.
struct Run {
    ranges: Vec<(u64, u64)>,
    refused: Vec<(u64, u64)>,
    /// The block limit the daemon reported as learned, if any.
    learned_cap: Option<u64>,
}

/// Indexes the chain behind a proxy that refuses as `wording` says.
async fn index_behind(chain: &Chain, wording: Wording) -> Run {
    let (db, proxy) = orders_behind_a_proxy(chain).await;
    // One range at a time under a result limit: on this short chain only
    // ranges grown one after another reach the proxy's few logs.
    let (cap, window) = match wording.cap {
        Cap::Blocks => (BLOCK_CAP, WINDOW),
        Cap::Logs => (LOG_CAP, 1),
    };
    proxy.refuse_like(wording, cap);
    let env = with(
        &env_for(chain, &db),
        &[
            ("LIQPASS__CHAIN__RPC_URL", proxy.url()),
            ("LIQPASS__CHAIN__POLL_INTERVAL_MS", "200".into()),
            (
                "LIQPASS__CHAIN__MAX_CONCURRENT_REQUESTS",
                window.to_string(),
            ),
        ],
    );
    let daemon = Daemon::spawn(&env);
    for i in 0..PAYMENTS {
        db.wait_payment_status(&format!("ord_{i:03}"), "paid").await;
    }
    assert_eq!(
        db.events().await.len() as u64,
        PAYMENTS,
        "{}: every payment, once",
        wording.provider
    );
    let base = format!("http://{}", daemon.http_addr().await);
    let metrics = get(&format!("{base}/metrics")).await;
    let learned_cap = metrics
        .lines()
        .find(|l| l.starts_with("liqpass_indexer_getlogs_range_cap_blocks{"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok());
    drop(daemon);
    Run {
        ranges: proxy.ranges(),
        refused: proxy.refused(),
        learned_cap,
    }
}

/// The body of a GET to the daemon, within 10 s.
async fn get(url: &str) -> String {
    crate::support::within(url, Duration::from_secs(10), crate::support::http_get(url))
        .await
        .1
}

fn len((from, to): (u64, u64)) -> u64 {
    to - from + 1
}

#[tokio::test]
async fn each_providers_refusal_is_learned_never_resent_and_its_block_limit_kept() {
    let chain = Chain::start().await;
    pay_sparsely(&chain).await;
    let runs = futures::future::join_all(WORDINGS.iter().map(|w| index_behind(&chain, *w))).await;
    for (wording, run) in WORDINGS.iter().zip(runs) {
        let Run {
            ranges,
            refused,
            learned_cap,
        } = run;
        let who = wording.provider;
        eprintln!("{who}: {} getLogs, refused {refused:?}", ranges.len());
        assert!(!refused.is_empty(), "{who}: the proxy never refused");
        for r in &refused {
            let sent = ranges.iter().filter(|x| *x == r).count();
            assert_eq!(
                sent, 1,
                "{who}: the refused range {r:?} was sent {sent} times"
            );
        }
        if wording.cap == Cap::Blocks {
            // Ranges already sent when the first refusal came back may be
            // refused too (at most the window's worth; the rest in flight
            // are cut to the limit before they go); every range asked for
            // after those stays within the limit learned.
            assert!(
                refused.len() <= WINDOW,
                "{who}: refused again after the limit was learned: {refused:?}"
            );
            let learned = ranges
                .iter()
                .rposition(|r| refused.contains(r))
                .expect("a refused range was asked for")
                + 1;
            let widest = ranges[learned..].iter().map(|r| len(*r)).max();
            assert!(
                widest <= Some(BLOCK_CAP),
                "{who}: after the refusal a range of {widest:?} blocks"
            );
            assert!(
                learned_cap.is_some_and(|c| c <= BLOCK_CAP),
                "{who}: reported limit {learned_cap:?}"
            );
        } else {
            assert!(refused.len() <= 2, "{who}: refused {refused:?}");
        }
    }
}

#[tokio::test]
async fn a_failing_middle_range_holds_back_the_ranges_after_it_until_it_is_retried() {
    const FAILURES: u64 = 3;
    let chain = Chain::start().await;
    let blocks = pay_sparsely(&chain).await;
    let (db, proxy) = orders_behind_a_proxy(&chain).await;
    // A round trip, so that ranges overlap; small ranges, so that many fly.
    proxy.slow(Duration::from_millis(20));
    let middle = blocks[PAYMENTS as usize / 2];
    proxy.fail_logs_covering(middle, FAILURES);
    let env = with(
        &env_for(&chain, &db),
        &[
            ("LIQPASS__CHAIN__RPC_URL", proxy.url()),
            ("LIQPASS__CHAIN__MAX_BLOCK_RANGE", "16".into()),
        ],
    );
    let _daemon = Daemon::spawn(&env);
    let head = chain.head().await as i64;
    let mut samples = 0;
    wait_for("the catch-up", Duration::from_secs(60), || {
        samples += 1;
        let (db, proxy, blocks) = (&db, &proxy, &blocks);
        async move {
            // In this order: what is read later can only be further on.
            let checkpoint = db.checkpoint().await.unwrap_or(-1);
            let stored = db.events().await.len();
            let failing = proxy.failed_covering() < FAILURES;
            let due = blocks.iter().filter(|b| **b as i64 <= checkpoint).count();
            assert!(
                stored >= due,
                "checkpoint {checkpoint} ahead of the data: {stored} of {due} payments stored"
            );
            assert!(
                !failing || checkpoint < middle as i64,
                "checkpoint {checkpoint} passed block {middle}, whose range has not come back"
            );
            (checkpoint >= head).then_some(())
        }
    })
    .await;
    for i in 0..PAYMENTS {
        db.wait_payment_status(&format!("ord_{i:03}"), "paid").await;
    }
    let events = db.events().await;
    let refs: std::collections::BTreeSet<_> = events.iter().map(|e| &e.order_ref).collect();
    assert_eq!(events.len() as u64, PAYMENTS, "every payment");
    assert_eq!(refs.len() as u64, PAYMENTS, "none twice");
    assert_eq!(proxy.failed_covering(), FAILURES);
    assert!(
        proxy.most_logs_in_flight() >= 2,
        "ranges in flight: at most {}",
        proxy.most_logs_in_flight()
    );
    // Later ranges were fetched while the middle one kept failing.
    let ranges = proxy.ranges();
    let covering: Vec<_> = (0..ranges.len())
        .filter(|&i| (ranges[i].0..=ranges[i].1).contains(&middle))
        .collect();
    let (first, last) = (covering[0], *covering.last().expect("asked for"));
    assert!(
        ranges[first..last].iter().any(|r| r.0 > middle),
        "nothing after block {middle} was asked for while its range failed: {ranges:?}"
    );
    eprintln!(
        "{} getLogs, at most {} at once, {samples} checkpoint samples",
        ranges.len(),
        proxy.most_logs_in_flight()
    );
}

#[tokio::test]
async fn a_range_that_times_out_is_shrunk_not_sent_again() {
    let chain = Chain::start().await;
    pay_sparsely(&chain).await;
    let (db, proxy) = orders_behind_a_proxy(&chain).await;
    proxy.slow_over(BLOCK_CAP, Duration::from_secs(3));
    let env = with(
        &env_for(&chain, &db),
        &[
            ("LIQPASS__CHAIN__RPC_URL", proxy.url()),
            ("LIQPASS__CHAIN__REQUEST_TIMEOUT_MS", "500".into()),
        ],
    );
    let _daemon = Daemon::spawn(&env);
    for i in 0..PAYMENTS {
        db.wait_payment_status(&format!("ord_{i:03}"), "paid").await;
    }
    let ranges = proxy.ranges();
    let slow: Vec<_> = ranges.iter().filter(|r| len(**r) > BLOCK_CAP).collect();
    assert!(!slow.is_empty(), "no range was slow");
    for r in &slow {
        let sent = ranges.iter().filter(|x| x == r).count();
        assert_eq!(sent, 1, "the slow range {r:?} was sent {sent} times");
    }
}

/// Indexes the chain behind a proxy allowing 25 requests a second, with a
/// budget of `budget` requests a second; returns the 429s it answered and
/// the rate the daemon reports for its budget.
async fn index_within(chain: &Chain, budget: u64) -> (u64, f64) {
    let (db, proxy) = orders_behind_a_proxy(chain).await;
    proxy.rate_limit(25);
    let env = with(
        &env_for(chain, &db),
        &[
            ("LIQPASS__CHAIN__RPC_URL", proxy.url()),
            (
                "LIQPASS__CHAIN__MAX_REQUESTS_PER_SECOND",
                budget.to_string(),
            ),
        ],
    );
    let daemon = Daemon::spawn(&env);
    for i in 0..PAYMENTS {
        db.wait_payment_status(&format!("ord_{i:03}"), "paid").await;
    }
    let base = format!("http://{}", daemon.http_addr().await);
    let metrics = get(&format!("{base}/metrics")).await;
    let rate: Option<f64> = metrics
        .lines()
        .find(|l| l.starts_with("liqpass_indexer_rpc_budget_requests_per_second{"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok());
    (
        proxy.too_many(),
        rate.expect("the budget's rate is reported"),
    )
}

#[tokio::test]
async fn a_request_budget_stays_under_the_plan_and_backs_off_from_429s() {
    let chain = Chain::start().await;
    pay_sparsely(&chain).await;
    let (under, over) = tokio::join!(index_within(&chain, 20), index_within(&chain, 100));
    eprintln!("429s and rate: {under:?} with a budget of 20/s, {over:?} with 100/s");
    assert_eq!(
        under,
        (0, 20.0),
        "a budget under the plan's 25/s meets no 429"
    );
    // Over the plan: the first 429s halve the rate, down under the plan's,
    // and it climbs back slowly (measured: 2-3; at a fixed 100/s, 18-21).
    assert!((1..=8).contains(&over.0), "{} 429s over the plan", over.0);
    assert!(over.1 < 100.0, "the rate was never lowered: {}", over.1);
}

#[tokio::test]
async fn a_catch_up_longer_than_stall_after_is_not_a_stall() {
    let chain = Chain::start().await;
    pay_sparsely(&chain).await;
    let (db, proxy) = orders_behind_a_proxy(&chain).await;
    proxy.slow(Duration::from_millis(40));
    let env = with(
        &env_for(&chain, &db),
        &[
            ("LIQPASS__CHAIN__RPC_URL", proxy.url()),
            ("LIQPASS__CHAIN__STALL_AFTER_S", "1".into()),
            // Pinned by the user: many small ranges one at a time, a
            // catch-up of seconds.
            ("LIQPASS__CHAIN__MAX_BLOCK_RANGE", "16".into()),
            ("LIQPASS__CHAIN__MAX_CONCURRENT_REQUESTS", "1".into()),
        ],
    );
    let daemon = Daemon::spawn(&env);
    let base = format!("http://{}", daemon.http_addr().await);
    let started = std::time::Instant::now();
    let head = chain.head().await as i64;
    // The chain goes on meanwhile, a block every 300 ms (Base: every 2 s).
    let miner = async {
        loop {
            chain.mine(1).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let watch = wait_for("the catch-up", Duration::from_secs(90), || async {
        let body = get(&format!("{base}/readyz")).await;
        assert!(
            !body.contains("stalled"),
            "readiness during catch-up: {body}"
        );
        (db.checkpoint().await >= Some(head)).then_some(())
    });
    tokio::select! {
        _ = miner => unreachable!("the miner never ends"),
        () = watch => {}
    }
    let took = started.elapsed();
    assert!(
        took > Duration::from_secs(2),
        "the catch-up took only {took:?}"
    );
    let metrics = get(&format!("{base}/metrics")).await;
    assert!(metrics.contains("liqpass_indexer_stalled 0"), "{metrics}");
    assert!(!daemon.logs().contains("stalled"), "{}", daemon.logs());
}

/// An RPC endpoint that answers with a redirect to another host (307, its
/// path carrying the API key, as a hijacked or misconfigured proxy would):
/// the indexer does not follow it, so the other host receives nothing, no
/// key and no request, and the head is reported unavailable.
#[tokio::test]
async fn an_rpc_redirect_is_not_followed_to_another_host() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    const KEY: &str = "KeY-0f-ThE-pRoViDeR";
    let serve = |app: axum::Router| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        addr
    };
    let reached = Arc::new(AtomicU64::new(0));
    let counted = reached.clone();
    let elsewhere = serve(axum::Router::new().fallback(move || {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::Relaxed);
            axum::Json(serde_json::json!({"jsonrpc": "2.0", "id": 0, "result": "0x7a69"}))
        }
    }))
    .await;
    let redirector = serve(axum::Router::new().fallback(move || async move {
        (
            axum::http::StatusCode::TEMPORARY_REDIRECT,
            [("location", format!("http://{elsewhere}/v2/{KEY}"))],
        )
    }))
    .await;

    let chain = Chain::start().await;
    let db = Db::new().await;
    let env = with(
        &env_for(&chain, &db),
        &[(
            "LIQPASS__CHAIN__RPC_URL",
            format!("http://{redirector}/v2/{KEY}"),
        )],
    );
    let out = tokio::task::spawn_blocking(move || {
        crate::support::daemon::command(&env, &["status", "--json"])
    })
    .await
    .expect("status ran");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        doc["head_block"].is_null() && doc["head_error"].is_string(),
        "the redirect is an error, not a head: {doc}"
    );
    assert_eq!(
        reached.load(Ordering::Relaxed),
        0,
        "the other host was reached through the redirect"
    );
}
