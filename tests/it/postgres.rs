//! What only PostgreSQL has, on a real cluster the suite starts
//! (crate::support::pg): two replicas can race to apply the migration set under
//! its advisory lock; it has the same tables, columns and indexes as the
//! SQLite contract; and commits that change orders send the NOTIFY hint.
//! (Down and up to the same schema, the constraints and the acceptance
//! queries run on both backends from one body each, in `tests/store.rs`.)

use std::collections::{BTreeMap, BTreeSet};

use liqpass_indexer::store::postgres;
use sqlx::{Connection, PgConnection, Row};
use std::time::Duration;

use crate::support::caught_up;
use crate::support::chain::{order_ref, Chain};
use crate::support::daemon::{env_for, Daemon};
use crate::support::db::{Backend, Db};
use crate::support::pg::cluster;

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url)
        .await
        .expect("connect to the test database")
}

#[tokio::test]
async fn replicas_migrating_at_once_apply_each_migration_once() {
    let url = cluster().database().await;
    let runs = (0..4).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            let mut conn = connect(&url).await;
            postgres::migrate(&mut conn).await
        })
    });
    for run in runs {
        run.await
            .expect("task")
            .expect("every replica's migrate succeeds");
    }
    let mut conn = connect(&url).await;
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    let expected = postgres::MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .count();
    assert_eq!(applied as usize, expected);
}

#[tokio::test]
async fn the_postgres_contract_has_the_sqlite_contracts_tables_columns_and_indexes() {
    let url = cluster().database().await;
    let mut conn = connect(&url).await;
    postgres::migrate(&mut conn).await.expect("up");
    let pg_columns: BTreeMap<String, BTreeSet<String>> = sqlx::query(
        "SELECT table_name::text, column_name::text FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx%'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("pg columns")
    .iter()
    .fold(BTreeMap::new(), |mut m, r| {
        m.entry(r.get(0)).or_default().insert(r.get(1));
        m
    });
    let pg_indexes: BTreeSet<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public' AND indexname LIKE 'idx\\_%'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("pg indexes")
    .into_iter()
    .collect();

    let sqlite = Db::new().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table'
           AND name NOT LIKE '_sqlx%' AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(sqlite.store.sqlite_pool().expect("an SQLite store"))
    .await
    .expect("sqlite tables");
    let mut sqlite_columns = BTreeMap::new();
    for t in tables {
        let cols: BTreeSet<String> =
            sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{t}')"))
                .fetch_all(sqlite.store.sqlite_pool().expect("an SQLite store"))
                .await
                .expect("sqlite columns")
                .into_iter()
                .collect();
        sqlite_columns.insert(t, cols);
    }
    let sqlite_indexes: BTreeSet<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'idx\\_%' ESCAPE '\\'",
    )
    .fetch_all(sqlite.store.sqlite_pool().expect("an SQLite store"))
    .await
    .expect("sqlite indexes")
    .into_iter()
    .collect();
    assert_eq!(pg_columns, sqlite_columns, "same tables and columns");
    assert_eq!(pg_indexes, sqlite_indexes, "same named indexes");
}

#[tokio::test]
async fn on_postgres_each_commit_that_changes_orders_sends_the_notify_hint() {
    let chain = Chain::start().await;
    let db = Db::on(Backend::Postgres).await;
    let buyer = chain.buyers[0];
    db.insert_order("ord_1", order_ref(1), buyer, 5_000_000)
        .await;
    let mut listener = sqlx::postgres::PgListener::connect(&db.url())
        .await
        .expect("listen connection");
    listener.listen("liqpass_indexer").await.expect("LISTEN");
    let _daemon = Daemon::spawn(&env_for(&chain, &db));
    caught_up(&chain, &db).await;

    let receipt = chain.pay(buyer, order_ref(1), 5_000_000).await;
    let paid_in = receipt.block_number.expect("mined");
    // confirming: one hint, and the commit it follows is visible, its
    // outbox row too (the hint names its id).
    let (first, confirming) = next_hint(&mut listener, &chain).await;
    assert!(first >= paid_in, "{first} vs {paid_in}");
    assert_eq!(db.order("ord_1").await.payment_status, "confirming");
    let ids = outbox_ids(&db).await;
    assert_eq!(ids.last(), Some(&confirming), "{ids:?}");
    // paid, after the confirmations: another, naming the next row.
    chain.mine(2).await;
    let (second, paid) = next_hint(&mut listener, &chain).await;
    assert!(second >= first + 2, "{second} vs {first}");
    assert_eq!(db.order("ord_1").await.payment_status, "paid");
    assert_eq!(outbox_ids(&db).await, [confirming, paid]);
}

async fn outbox_ids(db: &Db) -> Vec<i64> {
    let pool = db.store.postgres_pool().expect("PostgreSQL");
    sqlx::query_scalar("SELECT id FROM payment_notifications ORDER BY id")
        .fetch_all(pool)
        .await
        .expect("outbox ids")
}

/// The next `liqpass_indexer` notification's checkpoint and outbox id, its
/// payload checked.
async fn next_hint(listener: &mut sqlx::postgres::PgListener, chain: &Chain) -> (u64, i64) {
    let hint = crate::support::within(
        "a NOTIFY after a commit that changed orders",
        Duration::from_secs(30),
        listener.recv(),
    )
    .await
    .expect("notification");
    assert!(
        hint.payload().len() < 1024,
        "small payload: {}",
        hint.payload()
    );
    let json: serde_json::Value = serde_json::from_str(hint.payload()).expect("JSON payload");
    assert_eq!(json["chain_id"], 31337);
    assert_eq!(json["contract"], format!("{:#x}", chain.checkout));
    (
        json["checkpoint"].as_u64().expect("checkpoint"),
        json["notification"].as_i64().expect("notification"),
    )
}

/// A lock the order API holds on `orders` ends the batch's wait as a lock
/// wait (SQLSTATE 55P03, `lock_timeout` set just under `statement_timeout`),
/// counted as `cause="lock_wait"`, not as a statement timeout or `other`;
/// once the lock goes, every payment is stored once.
#[tokio::test]
async fn a_lock_on_orders_is_counted_as_a_lock_wait() {
    let chain = Chain::start().await;
    let db = Db::on(Backend::Postgres).await;
    let buyer = chain.buyers[0];
    db.insert_order("ord_1", order_ref(1), buyer, 5_000_000)
        .await;
    let daemon = Daemon::spawn(&env_for(&chain, &db));
    let base = format!("http://{}", daemon.http_addr().await);
    caught_up(&chain, &db).await;

    let mut api = PgConnection::connect(&db.url()).await.expect("connect");
    sqlx::raw_sql("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .execute(&mut api)
        .await
        .expect("lock orders");
    chain.pay(buyer, order_ref(1), 5_000_000).await;
    chain.mine(3).await;
    let waits = r#"liqpass_indexer_db_write_failures_total{cause="lock_wait"}"#;
    crate::support::wait_for("a lock wait", Duration::from_secs(60), || async {
        (crate::support::metric(&base, waits).await? >= 1.0).then_some(())
    })
    .await;
    let other = r#"liqpass_indexer_db_write_failures_total{cause="other"}"#;
    let timeouts = r#"liqpass_indexer_db_write_failures_total{cause="statement_timeout"}"#;
    assert_eq!(crate::support::metric(&base, other).await, Some(0.0));
    assert_eq!(crate::support::metric(&base, timeouts).await, Some(0.0));
    sqlx::raw_sql("COMMIT")
        .execute(&mut api)
        .await
        .expect("release orders");
    db.wait_payment_status("ord_1", "paid").await;
    assert_eq!(db.events().await.len(), 1, "stored once");
}

/// `liqpass-indexer migrate` on `url`: its output.
fn migrate(url: &str) -> std::process::Output {
    let env = BTreeMap::from([
        ("LIQPASS__DATABASE__URL".to_owned(), url.to_owned()),
        (
            "LIQPASS__DATABASE__BUSY_TIMEOUT_MS".to_owned(),
            "1000".to_owned(),
        ),
    ]);
    crate::support::daemon::command(&env, &["migrate"])
}

/// TLS to PostgreSQL, on a cluster of the suite's own that takes TCP only
/// over TLS, with a certificate signed by a CA of its own: `verify-full`
/// with that CA connects; with another CA it fails, saying why, the
/// password in no output; `require` connects, and so does no `sslmode` at
/// all (over TCP it means `require`).
#[tokio::test]
async fn tls_verify_full_connects_a_wrong_ca_fails_clearly_and_require_connects() {
    use crate::support::pg::{tls_cluster, PASSWORD};
    let cluster = tls_cluster();
    let url = cluster.database_with_password(PASSWORD).await;
    let ca = |name: &str| cluster.dir().join(name).display().to_string();
    let verified = cluster.tcp_url(
        &url,
        &format!("sslmode=verify-full&sslrootcert={}", ca("ca.pem")),
    );
    let out = migrate(&verified);
    assert!(
        out.status.success(),
        "verify-full with the server's CA: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wrong = cluster.tcp_url(
        &url,
        &format!("sslmode=verify-full&sslrootcert={}", ca("other-ca.pem")),
    );
    let out = migrate(&wrong);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a wrong CA must not connect");
    assert!(
        stderr.to_lowercase().contains("certificate"),
        "the error says why: {stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "the password leaked: {stderr}");
    for query in ["sslmode=require", ""] {
        let out = migrate(&cluster.tcp_url(&url, query));
        assert!(
            out.status.success(),
            "{query:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A server that refuses TLS (a fake one: it answers the TLS request "N"
/// and records what follows): with no `sslmode` the indexer sends nothing
/// more, no password in clear text, and says why it gave up.
#[tokio::test]
async fn without_sslmode_no_password_goes_in_clear_text_to_a_server_refusing_tls() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut request = [0u8; 8];
        socket
            .read_exact(&mut request)
            .await
            .expect("the first message");
        socket.write_all(b"N").await.expect("refuse TLS");
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut rest)).await;
        (request, rest)
    });
    let out = tokio::task::spawn_blocking(move || {
        migrate(&format!(
            "postgres://liqpass:Clear-Text-Secret@127.0.0.1:{port}/liqpass"
        ))
    })
    .await
    .expect("migrate ran");
    let (request, rest) = tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the fake server saw a connection")
        .expect("it ran");
    assert_eq!(
        request[4..8],
        80_877_103u32.to_be_bytes(),
        "the first message asks for TLS (SSLRequest)"
    );
    assert!(
        rest.is_empty(),
        "{} bytes sent after TLS was refused: {:?}",
        rest.len(),
        String::from_utf8_lossy(&rest)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it must not have connected");
    assert!(
        stderr.to_lowercase().contains("tls") || stderr.to_lowercase().contains("ssl"),
        "the error says why: {stderr}"
    );
}
