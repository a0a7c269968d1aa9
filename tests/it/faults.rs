//! RPC and database faults: the database still ends equal to a fault-free
//! run. Fault classes: connection reset, HTTP 500, 429 with Retry-After,
//! timeout, truncated JSON, wrong-chain answers, range refusals, a dead
//! endpoint, a websocket gone quiet, a commit that fails, a lock held past
//! the busy timeout, the order API's lock on `orders` held for ten lease
//! TTLs, and (`server`) the PostgreSQL server restarted or crashed.

mod server;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::support::chain::{order_ref, Chain};
use crate::support::daemon::{env_for, with, Daemon};
use crate::support::db::{Backend, Db};
use crate::support::proxy::{Fault, RpcProxy, TcpProxy, ALL_FAULTS};
use crate::support::{caught_up, metric, readyz, wait_for};

const PREMIUM: u64 = 5_000_000;
const LONG: Duration = Duration::from_secs(90);
/// The seed of the injected fault schedule.
const FAULT_SEED: u64 = 0xfa_0175;

#[tokio::test]
async fn a_seeded_schedule_of_rpc_faults_ends_in_the_same_database_as_a_clean_run() {
    const PAYMENTS: u64 = 40;
    let chain = Chain::start().await;
    let db = Db::new().await;
    db.insert_orders(&chain.buyers, 7_000, PAYMENTS, PREMIUM as i64)
        .await;
    let proxy = RpcProxy::start(&chain.rpc_url()).await;
    let env = with(
        &env_for(&chain, &db),
        &[
            ("LIQPASS__CHAIN__RPC_URL", proxy.url()),
            ("LIQPASS__CHAIN__REQUEST_TIMEOUT_MS", "1000".into()),
            ("LIQPASS__CHAIN__MAX_BLOCK_RANGE", "8".into()),
            ("LIQPASS__CHAIN__REORG_WINDOW", "4".into()),
            ("LIQPASS__CHAIN__CONFIRMATIONS", "2".into()),
        ],
    );
    let daemon = Daemon::spawn(&env);
    caught_up(&chain, &db).await; // the chain id is checked before faults start
    proxy.inject(FAULT_SEED, 0.2);
    for i in 0..PAYMENTS {
        chain
            .pay(chain.buyers[i as usize % 8], order_ref(7_000 + i), PREMIUM)
            .await;
        if i % 8 == 7 {
            chain.mine(10).await; // some deep ranges, some near the head
        }
    }
    wait_for("at least 50 injected faults", LONG, || async {
        (proxy.injected().len() >= 50).then_some(())
    })
    .await;
    chain.mine(3).await;
    caught_up(&chain, &db).await;
    for i in 0..PAYMENTS {
        db.wait_payment_status(&format!("ord_{i:03}"), "paid").await;
    }
    let injected = proxy.injected();
    for class in ALL_FAULTS.iter().filter(|f| **f != Fault::RangeRefused) {
        assert!(
            injected.contains(class),
            "seed {FAULT_SEED:#x} never injected {class:?}"
        );
    }
    proxy.heal();

    let clean = Db::new().await;
    clean
        .insert_orders(&chain.buyers, 7_000, PAYMENTS, PREMIUM as i64)
        .await;
    let _reference = Daemon::spawn(&with(
        &env_for(&chain, &clean),
        &[("LIQPASS__CHAIN__CONFIRMATIONS", "2".into())],
    ));
    caught_up(&chain, &clean).await;
    for i in 0..PAYMENTS {
        clean
            .wait_payment_status(&format!("ord_{i:03}"), "paid")
            .await;
    }
    assert_eq!(
        db.events().await,
        clean.events().await,
        "same events ({} faults)",
        injected.len()
    );
    assert_eq!(db.orders().await, clean.orders().await, "same orders");
    assert_eq!(db.audit().await, clean.audit().await, "same audit rows");
    // Each kind of failure is named in the log, not only an episode's first.
    let logs = daemon.logs();
    for kind in ["timeout", "bad_response", "http_status"] {
        assert!(
            logs.lines()
                .any(|l| l.contains("RPC failing") && l.contains(&format!("kind=\"{kind}\""))),
            "no RPC failure of kind {kind} logged: {logs}"
        );
    }
}

#[tokio::test]
async fn with_the_first_endpoint_dead_indexing_proceeds_on_the_second() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    db.insert_orders(&chain.buyers, 7_000, 5, PREMIUM as i64)
        .await;
    let dead = RpcProxy::start(&chain.rpc_url()).await;
    dead.kill(true);
    let env = with(
        &env_for(&chain, &db),
        &[
            ("LIQPASS__CHAIN__RPC_URL", dead.url()),
            ("LIQPASS__CHAIN__RPC_URLS", chain.rpc_url()),
            ("LIQPASS__CHAIN__REQUEST_TIMEOUT_MS", "500".into()),
        ],
    );
    let daemon = Daemon::spawn(&env);
    for i in 0..5u64 {
        chain
            .pay(chain.buyers[i as usize % 8], order_ref(7_000 + i), PREMIUM)
            .await;
    }
    chain.mine(2).await;
    for i in 0..5 {
        db.wait_payment_status(&format!("ord_{i:03}"), "paid").await;
    }
    assert!(
        daemon.logs().contains("unreachable at start"),
        "{}",
        daemon.logs()
    );
}

#[tokio::test]
async fn an_endpoint_on_the_wrong_chain_is_a_configuration_error_naming_it() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    let env = with(
        &env_for(&chain, &db),
        &[("LIQPASS__CHAIN__CHAIN_ID", "8453".into())],
    );
    let out = crate::support::daemon::command(&env, &["run"]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("chain id 31337") && err.contains("127.0.0.1"),
        "{err}"
    );
}

#[tokio::test]
async fn a_websocket_that_goes_quiet_is_detected_as_a_stall_recovered_and_the_gap_filled() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    db.insert_orders(&chain.buyers, 7_000, 6, PREMIUM as i64)
        .await;
    let proxy = TcpProxy::start(chain.socket_addr()).await;
    let env = with(
        &env_for(&chain, &db),
        &[
            ("LIQPASS__CHAIN__RPC_URL", proxy.url("ws")),
            ("LIQPASS__CHAIN__STALL_AFTER_S", "2".into()),
            ("LIQPASS__CHAIN__REQUEST_TIMEOUT_MS", "500".into()),
        ],
    );
    let daemon = Daemon::spawn(&env);
    let base = format!("http://{}", daemon.http_addr().await);
    caught_up(&chain, &db).await;

    proxy.stall(true); // open, but nothing gets through
    for i in 0..6u64 {
        chain
            .pay(chain.buyers[i as usize % 8], order_ref(7_000 + i), PREMIUM)
            .await;
    }
    let started = std::time::Instant::now();
    wait_for("the stall to show on /readyz", LONG, || async {
        let body = crate::support::readyz(&base).await?;
        body.contains("stalled").then_some(())
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "detected in {:?}",
        started.elapsed()
    );
    let metrics = crate::support::http_get(&format!("{base}/metrics")).await.1;
    assert!(metrics.contains("liqpass_indexer_stalled 1"), "{metrics}");

    proxy.stall(false);
    chain.mine(2).await;
    for i in 0..6 {
        db.wait_payment_status(&format!("ord_{i:03}"), "paid").await;
    }
    assert_eq!(db.events().await.len(), 6, "gap filled, nothing doubled");
    crate::support::until_ready(&base).await;
}

#[tokio::test]
async fn a_cut_websocket_reconnects_and_pushed_heads_drive_the_indexer_again() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    db.insert_orders(&chain.buyers, 7_000, 2, PREMIUM as i64)
        .await;
    let proxy = TcpProxy::start(chain.socket_addr()).await;
    let env = with(
        &env_for(&chain, &db),
        &[
            ("LIQPASS__CHAIN__RPC_URL", proxy.url("ws")),
            // Ten minutes: within this test only pushed heads move the indexer.
            ("LIQPASS__CHAIN__POLL_INTERVAL_MS", "600000".into()),
            ("LIQPASS__CHAIN__CONFIRMATIONS", "1".into()),
        ],
    );
    let daemon = Daemon::spawn(&env);
    caught_up(&chain, &db).await;
    // A block mined before the subscription exists is never announced.
    daemon.logged("subscribed to new heads", 1).await;
    chain.pay(chain.buyers[0], order_ref(7_000), PREMIUM).await;
    db.wait_payment_status("ord_000", "confirming").await;
    // Requests and new heads each have a connection.
    let open = proxy.connections.load(Ordering::Relaxed);
    assert_eq!(open, 2, "one connection for requests, one for new heads");

    proxy.cut();
    wait_for("both connections to be made again", LONG, || async {
        (proxy.connections.load(Ordering::Relaxed) >= open + 2).then_some(())
    })
    .await;
    // Until the subscription is renewed a block may go unannounced: mine
    // until one is announced and indexed.
    chain.mine(1).await;
    let after_cut = chain.head().await as i64;
    wait_for("a pushed head after the cut", LONG, || async {
        if db.checkpoint().await >= Some(after_cut) {
            return Some(());
        }
        chain.mine(1).await;
        None
    })
    .await;
    assert_eq!(db.order("ord_000").await.payment_status, "paid");
    chain.pay(chain.buyers[1], order_ref(7_001), PREMIUM).await;
    db.wait_payment_status("ord_001", "confirming").await;
    chain.mine(1).await;
    db.wait_payment_status("ord_001", "paid").await;
    assert_eq!(db.events().await.len(), 2, "nothing lost, nothing doubled");
}

#[tokio::test]
async fn a_failing_commit_rolls_back_is_retried_and_never_advances_the_checkpoint() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    db.insert_orders(&chain.buyers, 7_000, 3, PREMIUM as i64)
        .await;
    // A disk fault on demand: while `fault` holds a row, writing the
    // checkpoint aborts the batch transaction.
    for sql in [
        "CREATE TABLE fault (x INTEGER)",
        "CREATE TRIGGER fault_insert BEFORE INSERT ON sync_state WHEN EXISTS (SELECT 1 FROM fault)
         BEGIN SELECT RAISE(ABORT, 'injected disk I/O error'); END",
        "CREATE TRIGGER fault_update BEFORE UPDATE ON sync_state WHEN EXISTS (SELECT 1 FROM fault)
         BEGIN SELECT RAISE(ABORT, 'injected disk I/O error'); END",
    ] {
        sqlx::query(sql)
            .execute(db.store.sqlite_pool().expect("an SQLite store"))
            .await
            .expect("fault setup");
    }
    let env = with(
        &env_for(&chain, &db),
        &[("LIQPASS__DATABASE__BUSY_TIMEOUT_MS", "200".into())],
    );
    let daemon = Daemon::spawn(&env);
    let base = format!("http://{}", daemon.http_addr().await);
    caught_up(&chain, &db).await;
    let before = db.checkpoint().await;

    sqlx::query("INSERT INTO fault VALUES (1)")
        .execute(db.store.sqlite_pool().expect("an SQLite store"))
        .await
        .expect("fault on");
    chain.pay(chain.buyers[0], order_ref(7_000), PREMIUM).await;
    wait_for("a failed commit to be retried", LONG, || async {
        let retries =
            crate::support::metric(&base, "liqpass_indexer_db_write_retries_total").await?;
        (retries >= 3.0).then_some(())
    })
    .await;
    assert_eq!(db.checkpoint().await, before, "the checkpoint did not move");
    assert_eq!(db.events().await.len(), 0, "nothing half-written");
    sqlx::query("DELETE FROM fault")
        .execute(db.store.sqlite_pool().expect("an SQLite store"))
        .await
        .expect("fault off");

    // A writer holding the lock past the busy timeout: also retried.
    let mut blocker = db.hold_write_lock().await;
    chain.pay(chain.buyers[1], order_ref(7_001), PREMIUM).await;
    tokio::time::sleep(Duration::from_millis(600)).await; // longer than the busy timeout
    sqlx::query("SELECT 1")
        .execute(&mut *blocker)
        .await
        .expect("still holding");
    blocker.rollback().await.expect("release");

    chain.pay(chain.buyers[2], order_ref(7_002), PREMIUM).await;
    chain.mine(2).await;
    for i in 0..3 {
        db.wait_payment_status(&format!("ord_{i:03}"), "paid").await;
    }
    assert_eq!(db.events().await.len(), 3);
    let logs = daemon.logs();
    assert!(
        logs.contains("batch not committed"),
        "logged once per episode: {logs}"
    );
}

#[tokio::test]
async fn a_full_disk_is_named_on_readyz_and_recovered_by_itself_once_space_returns() {
    const PAYMENTS: u64 = 3;
    let disk = crate::support::disk::SmallDisk::mount(48);
    let chain = Chain::start().await;
    let db = Db::new_in(disk.path()).await;
    db.insert_orders(&chain.buyers, 7_000, PAYMENTS, PREMIUM as i64)
        .await;
    let daemon = Daemon::spawn(&with(
        &env_for(&chain, &db),
        &[("LIQPASS__DATABASE__BUSY_TIMEOUT_MS", "500".into())],
    ));
    let base = format!("http://{}", daemon.http_addr().await);
    caught_up(&chain, &db).await;

    disk.fill();
    // Enough rows that the batch outgrows what the WAL already holds.
    for i in 0..4u64 {
        chain
            .emit_many(
                chain.buyers[0],
                order_ref(100_000 + i * 1_000),
                1_000,
                PREMIUM,
            )
            .await;
    }
    for i in 0..PAYMENTS {
        chain
            .pay(chain.buyers[i as usize % 8], order_ref(7_000 + i), PREMIUM)
            .await;
    }
    chain.mine(3).await;
    let full = r#"liqpass_indexer_db_write_failures_total{cause="disk_full"}"#;
    wait_for("commits to fail on the full disk", LONG, || async {
        (crate::support::metric(&base, full).await? >= 3.0).then_some(())
    })
    .await;
    let body = crate::support::readyz(&base)
        .await
        .expect("/readyz answers");
    assert!(
        body.contains("database writes failing: database or disk is full"),
        "/readyz names the cause, not the lag: {body}"
    );
    let before = db.checkpoint().await;

    disk.free();
    let freed = std::time::Instant::now();
    let head = chain.head().await as i64;
    wait_for(
        "a commit within 10 s of the space coming back",
        Duration::from_secs(10),
        || async { (db.checkpoint().await > before).then_some(()) },
    )
    .await;
    eprintln!(
        "committed again {:?} after the space came back",
        freed.elapsed()
    );
    wait_for("the head", LONG, || async {
        (db.checkpoint().await >= Some(head)).then_some(())
    })
    .await;
    for i in 0..PAYMENTS {
        db.wait_payment_status(&format!("ord_{i:03}"), "paid").await;
    }
    let events = db.events().await;
    assert_eq!(events.len() as u64, 4_000 + PAYMENTS, "nothing lost");
    let distinct: std::collections::BTreeSet<_> =
        events.iter().map(|e| (&e.tx_hash, e.log_index)).collect();
    assert_eq!(distinct.len(), events.len(), "nothing doubled");
    crate::support::until_ready(&base).await;
    let logs = daemon.logs();
    assert_eq!(
        logs.matches("batch not committed;").count(),
        1,
        "the new kind of error is logged once in the episode: {logs}"
    );
    assert!(logs.contains("database writes recovered"), "{logs}");
}

/// Write failures that span a step-down and a new term: another session
/// holds the lease row past the lease's renewal deadline (PostgreSQL; on
/// SQLite a lock is no reason to step down), so batches fail (`/readyz`
/// names it), the leader steps down, and once the row is free it takes the
/// lease again. Its first commit of the new term makes it ready: readiness
/// follows the present, not a flag only the failing call could clear.
#[tokio::test]
async fn readiness_recovers_at_the_first_commit_after_failures_that_span_a_term() {
    let chain = Chain::start().await;
    let db = Db::on(Backend::Postgres).await;
    db.insert_orders(&chain.buyers, 8_000, 2, PREMIUM as i64)
        .await;
    let daemon = Daemon::spawn(&env_for(&chain, &db));
    let base = format!("http://{}", daemon.http_addr().await);
    caught_up(&chain, &db).await;
    crate::support::until_ready(&base).await;

    let mut lock = db.lock_lease_row().await;
    chain.pay(chain.buyers[0], order_ref(8_000), PREMIUM).await;
    chain.mine(3).await;
    wait_for("a batch to fail on the lock", LONG, || async {
        let body = readyz(&base).await?;
        (body.contains("database writes failing") || body.contains("waiting on a lock"))
            .then_some(())
    })
    .await;
    daemon.logged("stepping down: no longer writing", 1).await;
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut lock)
        .await
        .expect("release the lease row");

    db.wait_payment_status("ord_000", "paid").await;
    daemon.logged("took the write lease", 2).await;
    chain.pay(chain.buyers[1], order_ref(8_001), PREMIUM).await;
    chain.mine(3).await;
    db.wait_payment_status("ord_001", "paid").await;
    ready_within_2_s(&base, "the new term's commits").await;
}

/// `/readyz` answers 200 within 2 s (polled), after `what`.
async fn ready_within_2_s(base: &str, what: &str) {
    wait_for(
        &format!("/readyz 200 within 2 s of {what}"),
        Duration::from_secs(2),
        || async {
            let status = reqwest::get(format!("{base}/readyz")).await.ok()?.status();
            (status == 200).then_some(())
        },
    )
    .await;
}

both_backends!(
    a_lock_on_orders_held_for_20_s_is_waited_out_and_named_and_costs_no_step_down,
    a_lock_on_orders_held_for_20_s_is_waited_out_and_named_and_costs_no_step_down_on
);
/// The order API holds a lock on `orders` for 20 s, ten lease TTLs, while
/// payments arrive (PostgreSQL: `LOCK TABLE orders IN ACCESS EXCLUSIVE
/// MODE`; SQLite: a write transaction, holding the one write lock). The
/// leader's batches wait and are retried; `/readyz` says it waits on a lock
/// held by another session (on PostgreSQL naming that session's pid) and
/// the gauge counts the wait through the retries; it never steps down and
/// no epoch changes. Once the lock goes, commits resume at once (`/readyz`
/// 200 within 2 s) and every payment is stored once.
async fn a_lock_on_orders_held_for_20_s_is_waited_out_and_named_and_costs_no_step_down_on(
    backend: Backend,
) {
    const HELD: Duration = Duration::from_secs(20);
    let gauge = "liqpass_indexer_db_lock_wait_seconds";
    let chain = Chain::start().await;
    let db = Db::on(backend).await;
    db.insert_orders(&chain.buyers, 9_000, 3, PREMIUM as i64)
        .await;
    let env = env_for(&chain, &db);
    assert_eq!(env["LIQPASS__HA__LEASE_TTL_MS"], "2000");
    let daemon = Daemon::spawn(&env);
    let base = format!("http://{}", daemon.http_addr().await);
    caught_up(&chain, &db).await;
    crate::support::until_ready(&base).await;
    assert_eq!(metric(&base, gauge).await, Some(0.0));

    let lock = db.lock_orders().await;
    let locked = Instant::now();
    for i in 0..3 {
        let buyer = chain.buyers[i % chain.buyers.len()];
        chain.pay(buyer, order_ref(9_000 + i as u64), PREMIUM).await;
    }
    chain.mine(3).await;
    let holder = match lock.pid() {
        Some(pid) => format!("server pid {pid}"),
        None => "SQLite's write lock".to_owned(),
    };
    wait_for("/readyz to name the lock wait", LONG, || async {
        let body = readyz(&base).await?;
        (body.contains("waiting on a lock held by another session") && body.contains(&holder))
            .then_some(())
    })
    .await;
    tokio::time::sleep(HELD.saturating_sub(locked.elapsed())).await;
    let waited = metric(&base, gauge).await.expect("the lock-wait gauge");
    assert!(
        waited >= HELD.as_secs_f64() / 2.0,
        "the gauge counts the whole wait, through the retries: {waited} s"
    );
    assert_eq!(metric(&base, "liqpass_indexer_leader").await, Some(1.0));
    let released = Instant::now();
    lock.release().await;
    ready_within_2_s(&base, "the release").await;
    eprintln!(
        "{backend:?}: ready again {} ms after the lock went",
        released.elapsed().as_millis()
    );
    for i in 0..3 {
        db.wait_payment_status(&format!("ord_{i:03}"), "paid").await;
    }
    assert_eq!(db.events().await.len(), 3, "each payment once");
    assert_eq!(metric(&base, gauge).await, Some(0.0));
    let logs = daemon.logs();
    assert!(
        !logs.contains("stepping down"),
        "the lock cost the lease:\n{logs}"
    );
    let epoch: i64 = db.count("SELECT epoch FROM indexer_lease").await;
    assert_eq!(epoch, 1, "no takeover");
}
