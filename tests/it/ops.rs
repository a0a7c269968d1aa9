//! What operators see: `/healthz`, `/readyz` (in each state), `/metrics`,
//! read-only routing, no secret in any body, and graceful shutdown.

use std::time::{Duration, Instant};

use crate::support::chain::{order_ref, Chain};
use crate::support::daemon::{command, env_for, Daemon};
use crate::support::db::Db;
use crate::support::proxy::RpcProxy;
use crate::support::{http_get as get, wait_for};

const SECRET: &str = "KEYKEYSECRET";
const LONG: Duration = Duration::from_secs(60);

/// Waits until `path` answers `status`; returns the body.
async fn until_status(base: &str, path: &str, status: u16) -> String {
    until_body(base, path, status, "").await
}

/// Waits until `path` answers `status` with a body containing `text`.
async fn until_body(base: &str, path: &str, status: u16, text: &str) -> String {
    wait_for(
        &format!("{path} to answer {status} with {text:?}"),
        LONG,
        || async {
            let (s, body) = get(&format!("{base}{path}")).await;
            (s == status && body.contains(text)).then_some(body)
        },
    )
    .await
}

/// A proxy in front of anvil whose URL carries a fake API key.
async fn proxied(chain: &Chain, db: &Db) -> (RpcProxy, std::collections::BTreeMap<String, String>) {
    let proxy = RpcProxy::start(&chain.rpc_url()).await;
    let mut env = env_for(chain, db);
    env.insert(
        "LIQPASS__CHAIN__RPC_URL".into(),
        format!("{}/v2/{SECRET}", proxy.url()),
    );
    env.insert("LIQPASS__CHAIN__REQUEST_TIMEOUT_MS".into(), "500".into());
    (proxy, env)
}

#[tokio::test]
async fn readiness_follows_the_indexer_through_each_state() {
    let chain = Chain::start().await;
    chain.mine(50).await;
    let db = Db::new().await;
    let (proxy, mut env) = proxied(&chain, &db).await;
    env.insert("LIQPASS__HTTP__MAX_READY_LAG_BLOCKS".into(), "5".into());
    proxy.refuse_ranges_over(0); // nothing can be fetched: not caught up
    let daemon = Daemon::spawn(&env);
    let base = format!("http://{}", daemon.http_addr().await);
    let mut bodies = Vec::new();

    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
    let body = until_status(&base, "/readyz", 503).await;
    assert!(
        body.contains("\"ready\":false") && body.contains("reason"),
        "{body}"
    );
    bodies.push(body);

    proxy.refuse_ranges_over(1_000_000); // caught up
    let body = until_status(&base, "/readyz", 200).await;
    assert!(body.contains("\"ready\":true"), "{body}");

    proxy.kill(true); // RPC gone
    let body = until_body(&base, "/readyz", 503, "RPC").await;
    bodies.push(body);
    assert_eq!(
        get(&format!("{base}/healthz")).await.0,
        200,
        "alive while the RPC is down"
    );
    proxy.kill(false);
    until_status(&base, "/readyz", 200).await;

    for path in ["/healthz", "/readyz", "/metrics", "/nope"] {
        bodies.push(get(&format!("{base}{path}")).await.1);
    }
    for body in &bodies {
        assert!(!body.contains(SECRET), "secret in a response: {body}");
    }
    let client = reqwest::Client::new();
    for path in ["/healthz", "/readyz", "/metrics"] {
        let status = client
            .post(format!("{base}{path}"))
            .send()
            .await
            .expect("post")
            .status();
        assert_eq!(status.as_u16(), 405, "POST {path}");
    }
    assert_eq!(get(&format!("{base}/admin")).await.0, 404);
}

#[tokio::test]
async fn readiness_is_false_when_the_database_is_unreachable() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    let env = env_for(&chain, &db);
    let daemon = Daemon::spawn(&env);
    let base = format!("http://{}", daemon.http_addr().await);
    until_status(&base, "/readyz", 200).await;
    // Take the file away under the daemon: the next read fails.
    std::fs::remove_file(db.path()).expect("remove db");
    std::fs::create_dir(db.path()).expect("a directory where the database was");
    std::fs::remove_file(db.dir.path().join("liqpass.db-wal")).ok();
    std::fs::remove_file(db.dir.path().join("liqpass.db-shm")).ok();
    until_body(&base, "/readyz", 503, "database does not answer").await;
}

both_backends!(
    a_deep_reorg_keeps_readiness_false_until_acknowledged,
    deep_reorg_until_acknowledged
);
async fn deep_reorg_until_acknowledged(backend: crate::support::db::Backend) {
    let chain = Chain::start().await;
    let db = Db::on(backend).await;
    db.insert_order("ord_1", order_ref(1), chain.buyers[0], 5)
        .await;
    db.execute("UPDATE orders SET payment_status = 'reversed' WHERE id = 'ord_1'")
        .await;
    db.execute(&format!(
        "INSERT INTO reorg_incidents (chain_id, contract_address, depth, ancestor_block,
           old_checkpoint, reversed_orders) VALUES (31337, '{:#x}', 3, 1, 4, '[\"ord_1\"]')",
        chain.checkout
    ))
    .await;
    let env = env_for(&chain, &db);
    let daemon = Daemon::spawn(&env);
    let base = format!("http://{}", daemon.http_addr().await);
    let body = until_body(&base, "/readyz", 503, "deep reorg").await;
    assert!(body.contains("ack-reorg"), "{body}");
    let metrics = get(&format!("{base}/metrics")).await.1;
    assert!(
        metrics.contains("liqpass_indexer_unacknowledged_deep_reorgs 1"),
        "{metrics}"
    );

    let out = command(&env, &["ack-reorg"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("acknowledged 1"),
        "{out:?}"
    );
    until_status(&base, "/readyz", 200).await;
}

/// The endpoint is bounded: connections that never finish their request's
/// headers are closed (after the header timeout, 5 s, so within 20 s even
/// for those waiting in the backlog behind them), and a burst of `/readyz`
/// and `/metrics` requests asks the database about once a second, not once
/// per request (counted in sqlx's statement log).
#[tokio::test]
async fn the_http_endpoint_drops_slow_clients_and_asks_the_database_once_a_second() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const PING: &str = "SELECT block_number FROM sync_state LIMIT 1";
    let chain = Chain::start().await;
    let db = Db::new().await;
    let env = crate::support::daemon::with(
        &env_for(&chain, &db),
        &[(
            "LIQPASS__LOG__LEVEL",
            "info,liqpass_indexer=debug,sqlx::query=debug".into(),
        )],
    );
    let daemon = Daemon::spawn(&env);
    let addr = daemon.http_addr().await;
    let base = format!("http://{addr}");
    until_status(&base, "/readyz", 200).await;

    let mut slow = Vec::new();
    for _ in 0..40 {
        let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
        socket
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        slow.push(socket);
    }
    for mut socket in slow {
        let mut rest = Vec::new();
        crate::support::within(
            "the endpoint to close a connection whose headers never end",
            Duration::from_secs(20),
            socket.read_to_end(&mut rest),
        )
        .await
        .ok();
    }

    let pings = || daemon.logs().matches(PING).count();
    let before = pings();
    let started = Instant::now();
    let requests = (0..200).map(|i| {
        let path = if i % 2 == 0 { "/readyz" } else { "/metrics" };
        get_owned(format!("{base}{path}"))
    });
    let answers =
        crate::support::within("200 requests", LONG, futures::future::join_all(requests)).await;
    let seconds = started.elapsed().as_secs() as usize;
    assert!(
        answers.iter().all(|(s, _)| *s == 200),
        "every request answered"
    );
    let asked = pings() - before;
    assert!(
        asked <= seconds + 2,
        "the database was asked {asked} times for 200 requests in {seconds} s"
    );
}

async fn get_owned(url: String) -> (u16, String) {
    get(&url).await
}

#[tokio::test]
async fn metrics_expose_every_family_with_values_after_indexing() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    db.insert_order("ord_1", order_ref(1), chain.buyers[0], 5_000_000)
        .await;
    let daemon = Daemon::spawn(&env_for(&chain, &db));
    let base = format!("http://{}", daemon.http_addr().await);
    chain.pay(chain.buyers[0], order_ref(1), 5_000_000).await;
    chain.mine(2).await;
    db.wait_payment_status("ord_1", "paid").await;
    let text = until_status(&base, "/metrics", 200).await;
    for line in [
        "liqpass_indexer_build_info{version=",
        "liqpass_indexer_up 1",
        "liqpass_indexer_ready 1",
        "liqpass_indexer_payments_total{match_status=\"matched\"} 1",
        "liqpass_indexer_events_indexed_total{version=\"v1\"} 1",
        "liqpass_indexer_order_transitions_total{to=\"paid\"} 1",
        "liqpass_indexer_rpc_requests_total{endpoint=",
        "liqpass_indexer_batch_commit_duration_seconds_bucket",
        "liqpass_indexer_getlogs_range_blocks_bucket",
        "liqpass_indexer_head_block",
        "liqpass_indexer_indexed_block",
        "liqpass_indexer_lag_blocks",
        "liqpass_indexer_stalled 0",
        "liqpass_indexer_db_write_failures_total{cause=\"disk_full\"} 0",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}

#[tokio::test]
async fn sigterm_during_a_backfill_exits_0_in_time_and_a_restart_resumes_where_it_stopped() {
    let chain = Chain::start().await;
    for i in 0..40u64 {
        chain
            .emit_many(chain.buyers[0], order_ref(100_000 + i * 20), 20, 1)
            .await;
    }
    chain.mine(200).await;
    let db = Db::new().await;
    let (proxy, mut env) = proxied(&chain, &db).await;
    proxy.refuse_ranges_over(2); // slow, many small batches
    proxy.slow(Duration::from_millis(20));
    env.insert("LIQPASS__CHAIN__MAX_BLOCK_RANGE".into(), "2".into());
    // One range at a time: with ranges in flight the events (the first 40
    // blocks) would all be stored before the stop.
    env.insert("LIQPASS__CHAIN__MAX_CONCURRENT_REQUESTS".into(), "1".into());
    env.insert("LIQPASS__SHUTDOWN__GRACE_S".into(), "5".into());
    let mut daemon = Daemon::spawn(&env);
    wait_for("the backfill to start", LONG, || async {
        (db.checkpoint().await >= Some(10)).then_some(())
    })
    .await;
    let head = chain.head().await as i64;
    assert!(
        db.checkpoint().await < Some(head),
        "still back-filling when stopped"
    );
    let started = Instant::now();
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(10)).await;
    let took = started.elapsed();
    assert!(status.success(), "exit {status}: {}", daemon.logs());
    assert!(
        took < Duration::from_secs(5),
        "took {took:?}, beyond the grace period"
    );
    let stopped_at = db.checkpoint().await.expect("a checkpoint");
    let events_then = db.events().await.len();

    let restarted = Daemon::spawn(&env);
    wait_for("the restart to catch up", LONG, || async {
        (db.checkpoint().await >= Some(head)).then_some(())
    })
    .await;
    let first_batch = restarted
        .logs()
        .lines()
        .find(|l| l.contains("batch committed"))
        .map(str::to_owned)
        .expect("a batch was logged");
    assert!(
        first_batch.contains(&format!("from={}", stopped_at + 1)),
        "resumed at {first_batch}, stopped at {stopped_at}"
    );
    assert!(events_then < 800);
    assert_eq!(db.events().await.len(), 800, "every event once");
    // 800 payments without orders: a line per batch for people, not per event.
    let logs = restarted.logs();
    let review: Vec<_> = logs
        .lines()
        .filter(|l| l.contains("payments need review"))
        .collect();
    let batches = logs.matches("batch committed").count();
    assert!(!review.is_empty() && review.len() <= batches, "{logs}");
    for line in &review {
        assert!(
            line.contains("WARN") && line.contains("by_reason=unknown_order="),
            "{line}"
        );
        let refs = line.split("order_refs=").nth(1).expect("refs named");
        assert!(refs.split(',').count() <= 5, "at most five refs: {line}");
    }
    assert!(
        !logs
            .lines()
            .any(|l| l.contains("WARN") && l.contains("payment needs review")),
        "per-event lines are debug only"
    );
}

#[tokio::test]
async fn a_second_stop_signal_exits_at_once_with_the_batch_in_hand_rolled_back() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    db.insert_orders(&chain.buyers, 7_000, 1, 5_000_000).await;
    let mut env = env_for(&chain, &db);
    env.insert("LIQPASS__SHUTDOWN__GRACE_S".into(), "60".into());
    // The batch in hand waits this long for the lock, inside SQLite.
    env.insert("LIQPASS__DATABASE__BUSY_TIMEOUT_MS".into(), "30000".into());
    let mut daemon = Daemon::spawn(&env);
    crate::support::caught_up(&chain, &db).await;
    let before = db.checkpoint().await;
    // Another writer holds the lock: the next batch cannot commit.
    let blocker = db.hold_write_lock().await;
    let paid_in = chain
        .pay(chain.buyers[0], order_ref(7_000), 5_000_000)
        .await
        .block_number
        .expect("mined");
    wait_for("the batch with the payment to be in hand", LONG, || async {
        let logs = daemon.logs();
        let line = logs.lines().rev().find(|l| l.contains("writing batch"))?;
        let to: u64 = line
            .split("to=")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        (to >= paid_in).then_some(())
    })
    .await;
    daemon.signal("TERM");
    wait_for("the first signal to be taken", LONG, || async {
        daemon
            .logs()
            .contains("finishing the batch in hand")
            .then_some(())
    })
    .await;
    let second = Instant::now();
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(10)).await;
    let took = second.elapsed();
    assert!(status.success(), "exit {status}: {}", daemon.logs());
    assert!(
        took < Duration::from_secs(5),
        "exited {took:?} after the second signal, not at once (grace is 60 s)"
    );
    assert!(
        daemon.logs().contains("second stop signal"),
        "{}",
        daemon.logs()
    );
    blocker.rollback().await.expect("release the lock");
    assert_eq!(
        db.checkpoint().await,
        before,
        "the batch in hand was not written"
    );
    assert!(db.events().await.is_empty(), "nothing half-written");
    assert_eq!(db.order("ord_000").await.payment_status, "pending");
}

/// The `key=value` fields of a log line (values unquoted).
fn fields(line: &str) -> std::collections::HashMap<&str, &str> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k, v.trim_matches('"')))
        .collect()
}

fn number(f: &std::collections::HashMap<&str, &str>, key: &str) -> f64 {
    f.get(key)
        .unwrap_or_else(|| panic!("no {key} in {f:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("{key} in {f:?}: {e}"))
}

#[tokio::test]
async fn a_long_catch_up_reports_its_progress_in_the_log_the_metrics_and_status() {
    let chain = Chain::start().await;
    for i in 0..3 {
        chain.mine(700).await;
        chain
            .pay(chain.buyers[0], order_ref(8_000 + i), 5_000_000)
            .await;
    }
    chain.mine(10).await;
    let head = chain.head().await;
    let db = Db::new().await;
    let (proxy, env) = proxied(&chain, &db).await;
    // 134 ranges of 16 blocks, one at a time, 20 ms each: ~3 s, so that the
    // fronts committed (about once a second) report progress a few times.
    proxy.slow(Duration::from_millis(20));
    let env = crate::support::daemon::with(
        &env,
        &[
            ("LIQPASS__CHAIN__MAX_BLOCK_RANGE", "16".into()),
            // One range at a time: with ranges in flight the catch-up
            // would end before a second progress line.
            ("LIQPASS__CHAIN__MAX_CONCURRENT_REQUESTS", "1".into()),
            ("LIQPASS__CHAIN__MAX_REQUESTS_PER_SECOND", "1000".into()),
            ("LIQPASS__LOG__PROGRESS_INTERVAL_MS", "100".into()),
        ],
    );
    let daemon = Daemon::spawn(&env);
    let base = format!("http://{}", daemon.http_addr().await);
    daemon.logged("catching up", 2).await;
    let rate = crate::support::metric(&base, "liqpass_indexer_catchup_blocks_per_second").await;
    assert!(rate.is_some_and(|r| r >= 0.0), "{rate:?}");
    let range = crate::support::metric(&base, "liqpass_indexer_catchup_range_blocks").await;
    assert!(
        range.is_some_and(|r| (1.0..=16.0).contains(&r)),
        "{range:?}"
    );
    daemon.logged("caught up", 1).await;

    let logs = daemon.logs();
    let lines: Vec<_> = logs.lines().filter(|l| l.contains("catching up")).collect();
    assert!(lines.len() >= 2, "{logs}");
    let mut last_done = 0.0;
    for line in &lines {
        let f = fields(line);
        let (done, total, percent) = (
            number(&f, "done"),
            number(&f, "total"),
            number(&f, "percent"),
        );
        assert!(done <= total && total <= (head + 1) as f64, "{line}");
        assert!((0.0..=100.0).contains(&percent), "{line}");
        assert!(done >= last_done, "done went backwards: {line}");
        last_done = done;
        for key in ["blocks_per_s", "events_per_s", "requests_per_s", "range"] {
            assert!(number(&f, key) >= 0.0, "{key}: {line}");
        }
        assert!(
            f.contains_key("eta_s") && f.contains_key("rate_limited"),
            "{line}"
        );
        assert!(f["budget_per_s"].ends_with("/1000.0"), "{line}");
    }
    assert!(
        lines
            .iter()
            .any(|l| number(&fields(l), "requests_per_s") > 0.0),
        "requests were made: {logs}"
    );
    let end = logs
        .lines()
        .find(|l| l.contains("caught up"))
        .expect("a final line");
    let f = fields(end);
    assert_eq!(number(&f, "blocks"), (head + 1) as f64, "{end}");
    let stored = db.events().await.len();
    assert!(stored >= 3, "the three payments at least: {stored}");
    assert_eq!(number(&f, "events"), stored as f64, "{end}");
    assert!(number(&f, "elapsed_s") > 0.0, "{end}");
    caught_up_metrics(&base).await;

    // Straight to anvil: `command` blocks the runtime the proxy runs on.
    let env = crate::support::daemon::with(&env, &[("LIQPASS__CHAIN__RPC_URL", chain.rpc_url())]);
    let out = command(&env, &["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["start_block"], 0);
    assert_eq!(doc["synced_percent"], 100.0, "{doc}");
    let table = String::from_utf8(command(&env, &["status"]).stdout).expect("utf-8");
    assert!(
        table.contains("synced       100.0% of blocks 0..=head"),
        "{table}"
    );
}

/// Once caught up, the gauges say so.
async fn caught_up_metrics(base: &str) {
    wait_for("the catch-up gauges to settle", LONG, || async {
        let active = crate::support::metric(base, "liqpass_indexer_catchup_active").await?;
        let ratio = crate::support::metric(base, "liqpass_indexer_catchup_done_ratio").await?;
        let eta = crate::support::metric(base, "liqpass_indexer_catchup_eta_seconds").await?;
        let start = crate::support::metric(base, "liqpass_indexer_catchup_start_block").await?;
        (active == 0.0 && ratio == 1.0 && eta == 0.0 && start == 0.0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_catch_up_against_a_rate_limited_provider_reports_the_throttling() {
    let chain = Chain::start().await;
    chain.mine(400).await;
    let db = Db::new().await;
    let (proxy, env) = proxied(&chain, &db).await;
    proxy.rate_limit(25); // the plan; the budget below asks for 100/s
    let env = crate::support::daemon::with(
        &env,
        &[
            ("LIQPASS__CHAIN__MAX_BLOCK_RANGE", "16".into()),
            ("LIQPASS__CHAIN__MAX_REQUESTS_PER_SECOND", "100".into()),
            ("LIQPASS__CHAIN__REQUEST_TIMEOUT_MS", "5000".into()),
            ("LIQPASS__LOG__PROGRESS_INTERVAL_MS", "100".into()),
        ],
    );
    let daemon = Daemon::spawn(&env);
    daemon.logged("caught up", 1).await;
    let logs = daemon.logs();
    let lines: Vec<_> = logs
        .lines()
        .filter(|l| l.contains("catching up"))
        .map(fields)
        .collect();
    let limited: f64 = lines.iter().map(|f| number(f, "rate_limited")).sum();
    assert!(limited >= 1.0, "no rate limit reported: {logs}");
    assert!(
        limited <= proxy.too_many() as f64,
        "{limited} reported, {} answered",
        proxy.too_many()
    );
    let throttled = lines.iter().any(|f| {
        let (now, max) = f["budget_per_s"].split_once('/').expect("now/max");
        now.parse::<f64>().expect("rate") < max.parse::<f64>().expect("ceiling")
    });
    assert!(
        throttled,
        "the budget never showed below its ceiling: {logs}"
    );
}
