//! The database contract on a real PostgreSQL cluster the suite starts
//! (support::pg): the migration set goes down and up again to the same
//! schema, under an advisory lock two replicas can race for; it has the same
//! tables, columns and indexes as the SQLite contract; its constraints
//! reject bad orders with nothing written; the order API's acceptance
//! queries run on it unchanged.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use liqpass_indexer::store::postgres;
use sqlx::{Connection, PgConnection, Row};
use support::db::Db;
use support::pg::cluster;

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url)
        .await
        .expect("connect to the test database")
}

/// Every table's columns with their types and nullability, every index and
/// constraint with its definition: what "the same schema" means.
async fn schema(conn: &mut PgConnection) -> Vec<String> {
    let columns = sqlx::query(
        "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable
                || ' ' || coalesce(column_default, '')
         FROM information_schema.columns WHERE table_schema = 'public'
           AND table_name NOT LIKE '\\_sqlx%'",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("columns");
    let indexes = sqlx::query(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'
           AND tablename NOT LIKE '\\_sqlx%'",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("indexes");
    let constraints = sqlx::query(
        "SELECT conrelid::regclass::text || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
         WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text NOT LIKE '\\_sqlx%'",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("constraints");
    let mut all: Vec<String> = columns
        .iter()
        .chain(&indexes)
        .chain(&constraints)
        .map(|r| r.get::<String, _>(0))
        .collect();
    all.sort();
    all
}

#[tokio::test]
async fn the_postgres_migrations_go_down_and_up_again_to_the_same_schema() {
    let url = cluster().database().await;
    let mut conn = connect(&url).await;
    postgres::migrate(&mut conn).await.expect("up");
    let original = schema(&mut conn).await;
    assert!(original
        .iter()
        .any(|c| c.starts_with("orders.order_ref text NO")));
    postgres::migrate(&mut conn)
        .await
        .expect("up again is a no-op");
    assert_eq!(schema(&mut conn).await, original);
    let versions = postgres::MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .count();
    for _ in 0..versions {
        postgres::revert_last(&mut conn)
            .await
            .expect("down")
            .expect("something to revert");
    }
    assert!(
        schema(&mut conn).await.is_empty(),
        "all down leaves no table"
    );
    assert_eq!(
        postgres::revert_last(&mut conn)
            .await
            .expect("nothing left"),
        None
    );
    postgres::migrate(&mut conn).await.expect("up");
    assert_eq!(schema(&mut conn).await, original);
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
async fn postgres_rejects_bad_orders_with_nothing_written_and_runs_the_acceptance_queries() {
    let url = cluster().database().await;
    let mut conn = connect(&url).await;
    postgres::migrate(&mut conn).await.expect("up");
    let good_ref = format!("0x{}", "ab".repeat(32));
    let wallet = format!("0x{}", "cd".repeat(20));
    let insert = "INSERT INTO orders (id, order_ref, wallet_address, premium_usdc, status,
                  payment_status) VALUES ($1, $2, $3, $4, $5, $6)";
    let bad: [(&str, String, String, i64, &str, &str); 5] = [
        (
            "bad_ref",
            format!("0x{}", "AB".repeat(32)),
            wallet.clone(),
            5,
            "pending",
            "pending",
        ),
        (
            "bad_wallet",
            good_ref.clone(),
            "0x12".into(),
            5,
            "pending",
            "pending",
        ),
        (
            "bad_premium",
            good_ref.clone(),
            wallet.clone(),
            0,
            "pending",
            "pending",
        ),
        (
            "bad_status",
            good_ref.clone(),
            wallet.clone(),
            5,
            "shipped",
            "pending",
        ),
        (
            "bad_payment",
            good_ref.clone(),
            wallet.clone(),
            5,
            "pending",
            "settled",
        ),
    ];
    for (id, order_ref, wallet, premium, status, payment) in bad {
        let refused = sqlx::query(insert)
            .bind(id)
            .bind(&order_ref)
            .bind(&wallet)
            .bind(premium)
            .bind(status)
            .bind(payment)
            .execute(&mut conn)
            .await;
        assert!(refused.is_err(), "{id} was accepted");
    }
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(stored, 0, "nothing written");

    sqlx::query(insert)
        .bind("ord_1")
        .bind(&good_ref)
        .bind(&wallet)
        .bind(5_000_000i64)
        .bind("pending")
        .bind("pending")
        .execute(&mut conn)
        .await
        .expect("a good order");
    let recent =
        sqlx::query("SELECT id, status, created_at FROM orders ORDER BY created_at DESC LIMIT 3")
            .fetch_all(&mut conn)
            .await
            .expect("acceptance query 1");
    assert_eq!(recent.len(), 1);
    let joined = sqlx::query(
        "SELECT o.id, o.status, ce.event_name, ce.amount_usdc
         FROM orders o LEFT JOIN contract_events ce ON o.id = ce.order_id
         WHERE o.status IN ('pending', 'paid') LIMIT 10",
    )
    .fetch_all(&mut conn)
    .await
    .expect("acceptance query 2");
    assert_eq!(joined.len(), 1);
    assert_eq!(joined[0].get::<String, _>(0), "ord_1");
}
