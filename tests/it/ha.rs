//! Replicas on one database: exactly one writes (the lease's holder), the
//! others stand by, ready, and take over; a leader paused past its lease
//! writes nothing when it resumes; a leader killed mid-backfill is replaced
//! and the result equals one clean run.

use std::time::{Duration, Instant};

use crate::support::chain::{order_ref, Chain};
use crate::support::daemon::{env_for, Daemon};
use crate::support::db::{Backend, Db};
use crate::support::proxy::RpcProxy;
use crate::support::{caught_up, equals_a_clean_run, http_get, metric, wait_for};

const PREMIUM: u64 = 5_000_000;

async fn base(d: &Daemon) -> String {
    format!("http://{}", d.http_addr().await)
}

/// The lease's epoch, as stored.
async fn epoch(db: &Db) -> i64 {
    db.count("SELECT epoch FROM indexer_lease").await
}

both_backends!(
    a_second_run_on_one_database_stands_by_ready_and_takes_over_when_the_first_stops,
    a_second_run_on_one_database_stands_by_ready_and_takes_over_when_the_first_stops_on
);
async fn a_second_run_on_one_database_stands_by_ready_and_takes_over_when_the_first_stops_on(
    backend: Backend,
) {
    let chain = Chain::start().await;
    let db = Db::on(backend).await;
    db.insert_orders(&chain.buyers, 100, 4, PREMIUM as i64)
        .await;
    let env = env_for(&chain, &db);
    let mut first = Daemon::spawn(&env);
    first.logged("took the write lease", 1).await;
    chain.pay(chain.buyers[0], order_ref(100), PREMIUM).await;
    chain.mine(3).await;
    db.wait_payment_status("ord_000", "paid").await;

    let second = Daemon::spawn(&env);
    second
        .logged("standby: another replica holds the write lease", 1)
        .await;
    let (first_url, second_url) = (base(&first).await, base(&second).await);
    let (status, body) = http_get(&format!("{second_url}/readyz")).await;
    assert_eq!(status, 200, "a standby is ready: {body}");
    assert!(body.contains(r#""role":"standby""#), "{body}");
    assert_eq!(
        metric(&second_url, "liqpass_indexer_leader").await,
        Some(0.0)
    );
    assert_eq!(
        metric(&first_url, "liqpass_indexer_leader").await,
        Some(1.0)
    );
    assert!(http_get(&format!("{first_url}/readyz"))
        .await
        .1
        .contains(r#""role":"leader""#));

    // `status` names the leader; `backfill` refuses to write alongside it.
    let status = crate::support::daemon::command(&env, &["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(
        text.contains("leader") && text.contains("(epoch 1, until"),
        "{text}"
    );
    let backfill = crate::support::daemon::command(&env, &["backfill", "--from", "0", "--to", "5"]);
    let err = String::from_utf8_lossy(&backfill.stderr);
    assert_eq!(backfill.status.code(), Some(1), "{err}");
    assert!(err.contains("the write lease is held by"), "{err}");

    // The leader alone writes what comes while both run.
    chain.pay(chain.buyers[1], order_ref(101), PREMIUM).await;
    chain.mine(3).await;
    db.wait_payment_status("ord_001", "paid").await;
    caught_up(&chain, &db).await;
    assert!(!second.logs().contains("took the write lease"));
    assert!(
        !second.logs().contains("batch committed"),
        "the standby wrote:\n{}",
        second.logs()
    );

    // A clean stop hands the lease over at once, under the next epoch.
    first.signal("TERM");
    assert!(first.wait_exit(Duration::from_secs(30)).await.success());
    assert!(first.logs().contains("released the write lease"));
    second.logged("took the write lease", 1).await;
    assert_eq!(epoch(&db).await, 2);
    assert_eq!(
        metric(&second_url, "liqpass_indexer_lease_epoch").await,
        Some(2.0)
    );
    chain.pay(chain.buyers[2], order_ref(102), PREMIUM).await;
    chain.mine(3).await;
    db.wait_payment_status("ord_002", "paid").await;
    assert_eq!(db.events().await.len(), 3, "every payment once");
}

both_backends!(
    a_leader_paused_past_its_lease_writes_nothing_when_it_resumes,
    a_leader_paused_past_its_lease_writes_nothing_when_it_resumes_on
);
async fn a_leader_paused_past_its_lease_writes_nothing_when_it_resumes_on(backend: Backend) {
    let chain = Chain::start().await;
    let db = Db::on(backend).await;
    db.insert_orders(&chain.buyers, 200, 4, PREMIUM as i64)
        .await;
    let env = env_for(&chain, &db);
    let (old, standby) = Daemon::leader_and_standby(&env).await;

    // On SQLite a process stopped inside a write transaction (say, a lease
    // renewal) keeps the file's write lock until it runs again: by SQLite's
    // design nobody else can write meanwhile (docs/operations.md, "Replicas and the
    // write lease"). A pause that lands there is resumed and made again.
    let mut paused = Instant::now();
    for attempt in 1.. {
        let locked = standby.logs().matches("database is locked").count();
        old.signal("STOP");
        paused = Instant::now();
        let took = wait_for("a takeover or a lock", Duration::from_secs(60), || async {
            let logs = standby.logs();
            if logs.contains("took the write lease") {
                Some(true)
            } else {
                (logs.matches("database is locked").count() > locked).then_some(false)
            }
        })
        .await;
        if took {
            break;
        }
        let sqlite = matches!(backend, Backend::Sqlite);
        assert!(sqlite && attempt < 5, "no takeover after {attempt} pauses");
        old.signal("CONT");
    }
    let took_over = paused.elapsed();
    println!(
        "standby took over {:.2} s after the leader paused",
        took_over.as_secs_f64()
    );
    let first_new = chain
        .pay(chain.buyers[0], order_ref(200), PREMIUM)
        .await
        .block_number
        .expect("mined");
    chain.mine(3).await;
    db.wait_payment_status("ord_000", "paid").await;

    let before = old.logs().lines().count();
    old.signal("CONT");
    old.logged("stepping down", 1).await;
    // It stands by again, behind the new leader, and never commits.
    old.logged("standby: another replica holds the write lease", 1)
        .await;
    chain.pay(chain.buyers[1], order_ref(201), PREMIUM).await;
    chain.mine(3).await;
    db.wait_payment_status("ord_001", "paid").await;
    caught_up(&chain, &db).await;
    let after: Vec<String> = old.logs().lines().skip(before).map(str::to_owned).collect();
    let after = after.join("\n");
    // A batch it committed before the pause may be logged after it
    // resumes; none may reach a block the new leader indexed.
    let committed_to = |line: &str| -> Option<u64> {
        let to = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("to="))?;
        to.parse().ok()
    };
    assert!(
        after
            .lines()
            .filter(|l| l.contains("batch committed"))
            .all(|l| committed_to(l).is_some_and(|to| to < first_new)),
        "the old leader committed after the takeover (block {first_new} on):\n{after}"
    );
    assert!(
        after.contains("epoch=1"),
        "the step-down names its epoch:\n{after}"
    );
    assert_eq!(epoch(&db).await, 2);
    assert_eq!(db.events().await.len(), 2);
    assert_eq!(
        db.audit().await.len(),
        4,
        "payment_seen + payment_final per order, once"
    );
}

both_backends!(
    a_leader_killed_mid_backfill_is_replaced_and_the_database_equals_one_clean_run,
    a_leader_killed_mid_backfill_is_replaced_and_the_database_equals_one_clean_run_on
);
async fn a_leader_killed_mid_backfill_is_replaced_and_the_database_equals_one_clean_run_on(
    backend: Backend,
) {
    const PAYMENTS: u64 = 300;
    let (chain, db) = paid_chain(backend, PAYMENTS).await;
    let buyer = [chain.buyers[0]];
    // One block per batch, each behind a provider's round trip, so that
    // the kill lands mid-catch-up on either backend: deep ranges of one
    // block, one at a time (near the head a run's blocks are fetched at
    // once).
    let proxy = RpcProxy::start(&chain.rpc_url()).await;
    proxy.slow(Duration::from_millis(100));
    let env = crate::support::daemon::with(
        &env_for(&chain, &db),
        &[
            ("LIQPASS__CHAIN__RPC_URL", proxy.url()),
            ("LIQPASS__CHAIN__MAX_BLOCK_RANGE", "1".into()),
            ("LIQPASS__CHAIN__MAX_CONCURRENT_REQUESTS", "1".into()),
            ("LIQPASS__CHAIN__REORG_WINDOW", "4".into()),
            ("LIQPASS__DATABASE__WRITE_GAP_MS", "50".into()),
        ],
    );
    let (leader, standby) = Daemon::leader_and_standby(&env).await;
    wait_for(
        "the leader to commit some events",
        Duration::from_secs(60),
        || async { (db.count("SELECT COUNT(*) FROM contract_events").await >= 20).then_some(()) },
    )
    .await;
    let written = db.count("SELECT COUNT(*) FROM contract_events").await;
    leader.kill9();
    let killed = Instant::now();
    standby.logged("took the write lease", 1).await;
    println!(
        "killed with {written} of {PAYMENTS} events written; standby took over after {:.2} s",
        killed.elapsed().as_secs_f64()
    );
    assert!(
        written < PAYMENTS as i64,
        "the kill landed after the backfill"
    );
    caught_up(&chain, &db).await;
    db.wait_paid_orders(PAYMENTS).await;
    assert_eq!(epoch(&db).await, 2);

    equals_a_clean_run(
        &chain,
        &db,
        backend,
        &buyer,
        (5_000, PAYMENTS, PREMIUM as i64),
    )
    .await;
}

/// A chain of `payments` payments (10 a block) for orders `ord_000`… from
/// `chain.buyers[0]`, and a database holding those orders.
async fn paid_chain(backend: Backend, payments: u64) -> (Chain, Db) {
    let chain = Chain::start().await;
    for i in 0..payments / 10 {
        chain
            .emit_many(chain.buyers[0], order_ref(5_000 + i * 10), 10, PREMIUM)
            .await;
    }
    chain.mine(3).await;
    let db = Db::on(backend).await;
    db.insert_orders(&[chain.buyers[0]], 5_000, payments, PREMIUM as i64)
        .await;
    (chain, db)
}

#[tokio::test]
async fn on_postgres_a_leader_whose_connections_are_terminated_recovers_and_doubles_nothing() {
    const PAYMENTS: u64 = 300;
    let (chain, db) = paid_chain(Backend::Postgres, PAYMENTS).await;
    let proxy = RpcProxy::start(&chain.rpc_url()).await;
    proxy.slow(Duration::from_millis(50));
    let env = crate::support::daemon::with(
        &env_for(&chain, &db),
        &[
            ("LIQPASS__CHAIN__RPC_URL", proxy.url()),
            // Deep ranges of one block, one at a time: the catch-up lasts.
            ("LIQPASS__CHAIN__MAX_BLOCK_RANGE", "1".into()),
            ("LIQPASS__CHAIN__MAX_CONCURRENT_REQUESTS", "1".into()),
            ("LIQPASS__CHAIN__REORG_WINDOW", "4".into()),
        ],
    );
    let leader = Daemon::spawn(&env);
    leader.logged("took the write lease", 1).await;
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url())
        .await
        .expect("an admin connection");
    let mut terminated = 0;
    for round in 1..=3 {
        let events = db.count("SELECT COUNT(*) FROM contract_events").await;
        wait_for("more events", Duration::from_secs(60), || async {
            (db.count("SELECT COUNT(*) FROM contract_events").await >= events + 20).then_some(())
        })
        .await;
        // Every connection of the leader's (its pool's, its lease
        // keeper's): the indexer names them.
        let gone: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'liqpass-indexer'",
        )
        .fetch_all(&mut admin)
        .await
        .expect("terminate");
        println!("round {round}: terminated {} connections", gone.len());
        assert!(
            !gone.is_empty(),
            "round {round}: the leader had connections to cut"
        );
        terminated += gone.len();
    }
    assert!(terminated >= 3);
    caught_up(&chain, &db).await;
    db.wait_paid_orders(PAYMENTS).await;
    let logs = leader.logs();
    assert!(
        !logs.contains("panicked"),
        "the leader survived the cuts:\n{logs}"
    );
    equals_a_clean_run(
        &chain,
        &db,
        Backend::Postgres,
        &[chain.buyers[0]],
        (5_000, PAYMENTS, PREMIUM as i64),
    )
    .await;
}

#[tokio::test]
async fn on_postgres_a_leader_paused_inside_a_write_transaction_is_replaced_and_doubles_nothing() {
    use sqlx::Connection;
    const PAYMENTS: u64 = 400;
    let (chain, db) = paid_chain(Backend::Postgres, PAYMENTS).await;
    let env = crate::support::daemon::with(
        &env_for(&chain, &db),
        &[("LIQPASS__CHAIN__MAX_BLOCK_RANGE", "1".into())],
    );
    // The order API holds the last order's row: the leader's transaction
    // for its block (which renewed, so holds, the lease row) waits on it.
    let mut api = sqlx::PgConnection::connect(&db.url())
        .await
        .expect("connect");
    let mut held = api.begin().await.expect("begin");
    sqlx::query("SELECT id FROM orders WHERE id = 'ord_399' FOR UPDATE")
        .execute(&mut *held)
        .await
        .expect("lock the last order");
    let (old, standby) = Daemon::leader_and_standby(&env).await;
    wait_for(
        "the leader to wait on the order's lock inside its transaction",
        Duration::from_secs(60),
        || async {
            (db.count(
                "SELECT COUNT(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'
                   AND query LIKE 'SELECT id FROM orders WHERE order_ref IN%'",
            )
            .await
                >= 1)
                .then_some(())
        },
    )
    .await;
    // Paused there; then the order API lets go. The statement completes
    // and the paused leader's session sits idle in its transaction, holding
    // the lease row, until the server ends it (half the TTL).
    old.signal("STOP");
    held.rollback().await.expect("release the order");
    let written = db.count("SELECT COUNT(*) FROM contract_events").await;
    assert!(
        written < PAYMENTS as i64,
        "the pause landed after the backfill"
    );
    standby.logged("took the write lease", 1).await;
    caught_up(&chain, &db).await;
    db.wait_paid_orders(PAYMENTS).await;
    let before = old.logs().lines().count();
    old.signal("CONT");
    old.logged("stepping down", 1).await;
    let after: Vec<String> = old.logs().lines().skip(before).map(str::to_owned).collect();
    assert!(
        !after.join("\n").contains("batch committed"),
        "the old leader committed after its pause:\n{}",
        after.join("\n")
    );
    assert_eq!(epoch(&db).await, 2);
    equals_a_clean_run(
        &chain,
        &db,
        Backend::Postgres,
        &[chain.buyers[0]],
        (5_000, PAYMENTS, PREMIUM as i64),
    )
    .await;
}

/// When renewals fail (another session holds the lease row, as a takeover
/// in progress would), the leader steps down at `lease_ttl - renew_interval`
/// after its last renewal, as docs/operations.md says, whatever the phase of its
/// renewal ticks: at least half a renew interval before the lease expires
/// on the database's clock, so no standby can take the lease while it may
/// still write. (A lock on SQLite's one write lock is no such reason: it
/// keeps every replica out; `faults`.)
#[tokio::test]
async fn a_leader_that_cannot_renew_steps_down_a_margin_before_its_lease_expires() {
    const TTL_MS: f64 = 2_000.0;
    const RENEW_MS: f64 = 400.0;
    let chain = Chain::start().await;
    let db = Db::on(Backend::Postgres).await;
    // Each renewal fails fast (its lock wait ends at 9/10 of a renew
    // interval), so the deadline falls between two renewal ticks.
    let env = env_for(&chain, &db);
    assert_eq!(
        (
            env["LIQPASS__HA__LEASE_TTL_MS"].as_str(),
            env["LIQPASS__HA__RENEW_INTERVAL_MS"].as_str()
        ),
        ("2000", "400")
    );
    for round in 0..3 {
        let daemon = Daemon::spawn(&env);
        caught_up(&chain, &db).await;
        daemon.logged("took the write lease", 1).await;
        let mut lock = db.lock_lease_row().await;
        // Nothing renews while the row is held: this expiry is final.
        let expires_ms: f64 = sqlx::query_scalar(
            "SELECT (EXTRACT(EPOCH FROM expires_at) * 1000)::float8 FROM indexer_lease",
        )
        .fetch_one(&mut lock)
        .await
        .expect("the lease");
        daemon.logged("stepping down: no longer writing", 1).await;
        let logs = daemon.logs();
        let line = logs
            .lines()
            .find(|l| l.contains("stepping down: no longer writing"))
            .expect("the step-down line");
        let at = line.split_whitespace().next().expect("a timestamp");
        let at_ms: f64 =
            sqlx::query_scalar("SELECT (EXTRACT(EPOCH FROM $1::timestamptz) * 1000)::float8")
                .bind(at)
                .fetch_one(&mut lock)
                .await
                .expect("the step-down time");
        let margin_ms = expires_ms - at_ms;
        eprintln!("round {round}: stepped down {margin_ms:.0} ms before the lease expired");
        assert!(
            margin_ms >= RENEW_MS / 2.0,
            "stepped down {margin_ms:.0} ms before expiry (step-down {at}); \
             docs/operations.md: at TTL - renew = {} ms after the last renewal",
            TTL_MS - RENEW_MS
        );
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut lock)
            .await
            .expect("release the lease row");
        drop(daemon);
        // The next round's daemon waits out this one's lease.
    }
}
