//! The PostgreSQL migration set on a real cluster the suite starts
//! (support::pg): two replicas can race to apply it under its advisory lock,
//! and it has the same tables, columns and indexes as the SQLite contract.
//! (Down and up to the same schema, the constraints and the acceptance
//! queries run on both backends from one body each, in `tests/store.rs`.)

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
