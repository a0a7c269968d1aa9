//! WAL pages per payment (`--only wal`): the pages SQLite writes to its
//! write-ahead log for each stored payment, by the daemon's backfill of the
//! last `SAMPLE` payments of the bench chain (the ones before them stored
//! first, unbounded: the tables and indexes hold the history a busy shop's
//! would), at the shipped settings (alone: large transactions), always
//! paced (`alone_after_s = 0`: one block of 10 payments per transaction,
//! the smallest) and unbounded.
//!
//! A connection of the bench holds a read transaction begun on an empty
//! WAL, so it reads the database file alone: no checkpoint can copy a frame
//! back meanwhile, and the WAL never starts over. At the end the WAL holds
//! every page the backfill wrote (its lease and checkpoint rows included),
//! and `PRAGMA wal_checkpoint` says how many. Not timed: the WAL grows
//! without bound while the reader holds it, so the timed rows run apart.
//! `LIQPASS_BENCH_NO_ORDERS=1`: the same without orders.

use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};

use super::support::chain::Chain;
use super::support::db::{Db, Sqlite};
use super::{env_with, orders_with, timed_backfill_range, Refs, PACED, UNBOUNDED};

/// Payments back-filled for each row: enough for the shared pages of a
/// transaction to spread over its payments, few enough for the WAL that
/// keeps every page (about 60 KiB a payment at 15 pages).
const SAMPLE: u64 = 5_000;

pub async fn rows(
    chain: &Chain,
    head: u64,
    payments: u64,
    blocks: u64,
    first_ref: u64,
    refs: Refs,
    table: &mut Vec<(String, String)>,
) {
    let per_block = payments.div_ceil(blocks).max(1);
    // The last payments' blocks (the chain ends on its last payment); the
    // rate is of the events stored in them.
    let from = (head + 1).saturating_sub(SAMPLE.div_ceil(per_block)).max(1);
    let runs: [(&str, &[(&str, &str)]); 3] = [
        ("shipped (alone: large transactions)", &[]),
        (
            "always paced (alone_after_s = 0: a block a transaction)",
            PACED,
        ),
        ("unbounded (60000/0, alone_after_s = 0)", UNBOUNDED),
    ];
    let orders = std::env::var_os("LIQPASS_BENCH_NO_ORDERS").is_none();
    for (label, extra) in runs {
        let what = if orders {
            "matched payment"
        } else {
            "payment, no orders"
        };
        let chain_name = match refs {
            Refs::Counted => "",
            Refs::Hashed => "shop chain: ",
        };
        let label = format!("{chain_name}WAL pages per {what}, {label}");
        eprintln!("bench: {label}");
        let db = Db::on(Sqlite).await;
        if orders {
            orders_with(&db, chain, payments, first_ref, refs).await;
        }
        backfill(env_with(chain, &db, UNBOUNDED), 0, from - 1).await;
        let before = db.count("SELECT COUNT(*) FROM contract_events").await;
        let mut reader = hold_snapshot(&db).await;
        backfill(env_with(chain, &db, extra), from, head).await;
        let (_, frames, checkpointed): (i64, i64, i64) = crate::on_pool!(db, |p| {
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(p)
                .await
                .expect("WAL length")
        });
        assert_eq!(checkpointed, 0, "a checkpoint ran past the reader");
        sqlx::query("COMMIT")
            .execute(&mut reader)
            .await
            .expect("end the read");
        let stored = db.count("SELECT COUNT(*) FROM contract_events").await - before;
        assert!(stored > 0, "the backfill stored nothing");
        table.push((
            label,
            format!(
                "{:.1} pages ({frames} pages for {stored} events, blocks {from}-{head}, {before} stored before)",
                frames as f64 / stored as f64
            ),
        ));
    }
}

/// `backfill --from from --to to` with `env`, to its end, which must be a
/// success (`timed_backfill_range`, untimed here).
async fn backfill(env: std::collections::BTreeMap<String, String>, from: u64, to: u64) {
    let (output, _) = timed_backfill_range(env, from, to).await;
    assert!(
        output.status.success(),
        "backfill failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A connection reading the database file as it is now, its WAL emptied
/// first, until `COMMIT`.
async fn hold_snapshot(db: &Db) -> SqliteConnection {
    let url = format!("sqlite://{}", db.path().display());
    let options = SqliteConnectOptions::from_str(&url).expect("database URL");
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .expect("reader");
    let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(&mut conn)
        .await
        .expect("empty the WAL");
    assert_eq!(busy, 0, "the WAL could not be emptied");
    sqlx::query("BEGIN")
        .execute(&mut conn)
        .await
        .expect("BEGIN");
    sqlx::query("SELECT COUNT(*) FROM orders")
        .fetch_one(&mut conn)
        .await
        .expect("the read that takes the snapshot");
    conn
}
