//! The database contract on real SQLite files: migrations round-trip, the
//! order API's acceptance queries, constraints, WAL concurrency, restarts.

use std::time::Duration;

use crate::support::db::{Backend, Db};
use alloy::primitives::{Address, B256};
use liqpass_indexer::store::sqlite::MIGRATOR;
use sqlx::Row;

fn wallet(n: u8) -> Address {
    Address::repeat_byte(n)
}

async fn seed_orders(db: &Db) {
    db.insert_order("ord_a", B256::repeat_byte(1), wallet(0xa), 5_000_000)
        .await;
    db.insert_order("ord_b", B256::repeat_byte(2), wallet(0xb), 7_000_000)
        .await;
    db.insert_order("ord_c", B256::repeat_byte(3), wallet(0xc), 9_000_000)
        .await;
}

fn migration_count() -> usize {
    MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .count()
}

both_backends!(
    every_migration_goes_down_and_up_again_to_the_same_schema_on_a_fresh_database,
    down_and_up
);
async fn down_and_up(backend: Backend) {
    let db = Db::on(backend).await;
    let original = db.schema().await;
    assert!(
        original.iter().any(|c| c.contains("orders")),
        "{original:?}"
    );
    db.store.migrate().await.expect("up again is a no-op");
    assert_eq!(db.schema().await, original);
    for _ in 0..db.store.expected_migrations().len() {
        db.store
            .revert_last()
            .await
            .expect("down")
            .expect("something to revert");
    }
    assert!(db.schema().await.is_empty(), "all down leaves no table");
    assert_eq!(db.store.revert_last().await.expect("nothing left"), None);
    db.store.migrate().await.expect("up again");
    assert_eq!(db.schema().await, original);
}

#[tokio::test]
async fn migrations_round_trip_on_a_file_holding_rows() {
    let db = Db::new().await;
    seed_orders(&db).await;
    // An event paying ord_a and the audit row pointing at it: migration 0003
    // rebuilds contract_events under that foreign key.
    sqlx::query(&format!(
        "INSERT INTO contract_events (chain_id, contract_address, tx_hash, log_index,
           block_number, block_hash, event_name, event_version, order_ref, payer,
           amount_usdc, amount_raw, quote_hash, args_json, order_id, match_status)
         VALUES (1, '{addr}', '{h}', 0, 1, '{h}', 'PremiumPaid', 1, '{h}', '{addr}',
           5000000, '5000000', '{h}', '{{}}', 'ord_a', 'matched')",
        addr = format!("{:#x}", wallet(0xa)),
        h = format!("{:#x}", B256::repeat_byte(1)),
    ))
    .execute(db.store.sqlite_pool().expect("an SQLite store"))
    .await
    .expect("event");
    sqlx::query(
        "INSERT INTO order_audit (order_id, reason, from_status, to_status,
           from_payment_status, to_payment_status, event_id)
         VALUES ('ord_a', 'payment_seen', 'pending', 'pending', 'pending', 'confirming', 1)",
    )
    .execute(db.store.sqlite_pool().expect("an SQLite store"))
    .await
    .expect("audit");
    // A payment stored as paying no order while its order exists (ord_b):
    // 0011 queues it for late matching when it comes up.
    sqlx::query(&format!(
        "INSERT INTO contract_events (chain_id, contract_address, tx_hash, log_index,
           block_number, block_hash, event_name, event_version, order_ref, payer,
           amount_usdc, amount_raw, quote_hash, args_json, match_status)
         VALUES (1, '{addr:#x}', '{h:#x}', 1, 1, '{h:#x}', 'PremiumPaid', 1, '{r:#x}', '{addr:#x}',
           7000000, '7000000', '{h:#x}', '{{}}', 'unknown_order')",
        addr = wallet(0xb),
        h = B256::repeat_byte(1),
        r = B256::repeat_byte(2),
    ))
    .execute(db.store.sqlite_pool().expect("an SQLite store"))
    .await
    .expect("unknown-order event");
    let original = db.schema().await;
    let rows = || async {
        [
            db.count("SELECT COUNT(*) FROM orders").await,
            db.count("SELECT COUNT(*) FROM contract_events WHERE id = 1 AND order_id = 'ord_a'")
                .await,
            db.count("SELECT COUNT(*) FROM order_audit WHERE event_id = 1")
                .await,
            db.count("SELECT COUNT(*) FROM pragma_foreign_key_check")
                .await,
        ]
    };
    // The migrations from 0011 on go down and up keeping every row and
    // reference.
    while db.store.revert_last().await.expect("down") != Some(11) {
        assert_eq!(rows().await, [3, 1, 1, 0]);
    }
    assert_eq!(rows().await, [3, 1, 1, 0]);
    db.store.migrate().await.expect("up");
    assert_eq!(db.schema().await, original);
    assert_eq!(rows().await, [3, 1, 1, 0]);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM late_matches WHERE event_id = 2")
            .await,
        1,
        "the late-match queue's backfill (0011)"
    );
    // All the way down drops the contract; up again recreates it identically.
    for _ in 0..migration_count() {
        db.store.revert_last().await.expect("down");
    }
    db.store.migrate().await.expect("up");
    assert_eq!(db.schema().await, original);
}

#[tokio::test]
async fn the_verification_migration_goes_down_and_up_keeping_events_but_not_their_outcomes() {
    let db = Db::new().await;
    seed_orders(&db).await;
    sqlx::query(&format!(
        "INSERT INTO contract_events (chain_id, contract_address, tx_hash, log_index,
           block_number, block_hash, event_name, event_version, order_ref, payer,
           amount_usdc, amount_raw, quote_hash, args_json, order_id, match_status,
           verification, verification_detail)
         VALUES (1, '{addr}', '{h}', 0, 1, '{h}', 'PremiumPaid', 1, '{h}', '{addr}',
           5000000, '5000000', '{h}', '{{}}', 'ord_a', 'matched', 'disputed', 'no log')",
        addr = format!("{:#x}", wallet(0xa)),
        h = format!("{:#x}", B256::repeat_byte(1)),
    ))
    .execute(db.store.sqlite_pool().expect("an SQLite store"))
    .await
    .expect("a disputed event");
    let bad = sqlx::query("UPDATE contract_events SET verification = 'maybe'")
        .execute(db.store.sqlite_pool().expect("an SQLite store"))
        .await;
    assert!(bad.is_err(), "only verified or disputed");
    let original = db.schema().await;
    let columns = || async {
        db.count(
            "SELECT COUNT(*) FROM pragma_table_info('contract_events') WHERE name LIKE 'verifi%'",
        )
        .await
    };
    assert_eq!(columns().await, 3);
    // Down to 0003: every migration after 0004 first, then 0004 itself.
    loop {
        let reverted = db.store.revert_last().await.expect("down");
        if reverted == Some(4) {
            break;
        }
        assert!(reverted > Some(4), "0004 was reverted before {reverted:?}");
    }
    assert_eq!(columns().await, 0);
    assert_eq!(db.count("SELECT COUNT(*) FROM contract_events").await, 1);
    db.store.migrate().await.expect("up");
    assert_eq!(db.schema().await, original);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM contract_events WHERE verification IS NULL")
            .await,
        1,
        "the event is kept, to be verified again"
    );
}

both_backends!(
    the_audit_position_moves_only_from_where_its_writer_left_it,
    audit_position
);

/// The audit's position moves forward only from the value its writer
/// last saw; a reorg's `lower` in between makes that write a no-op.
async fn audit_position(backend: Backend) {
    use liqpass_indexer::store::audit;
    let db = Db::on(backend).await;
    let scope = liqpass_indexer::domain::Scope {
        chain_id: 31337,
        contract: wallet(0xc),
    };
    let mut tx = db.store.begin().await.expect("begin");
    let mut c = tx.conn();
    assert_eq!(audit::position(&mut c, &scope).await.expect("read"), None);
    assert!(audit::advance(&mut c, &scope, None, 100)
        .await
        .expect("first"));
    assert!(!audit::advance(&mut c, &scope, None, 120)
        .await
        .expect("again from none"));
    assert!(audit::advance(&mut c, &scope, Some(100), 150)
        .await
        .expect("on"));
    audit::lower(&mut c, &scope, 90).await.expect("a reorg");
    assert!(
        !audit::advance(&mut c, &scope, Some(150), 200)
            .await
            .expect("stale"),
        "a writer that did not see the reorg moves nothing"
    );
    assert_eq!(
        audit::position(&mut c, &scope).await.expect("read"),
        Some(90)
    );
    audit::lower(&mut c, &scope, 95)
        .await
        .expect("a shallower reorg");
    assert_eq!(
        audit::position(&mut c, &scope).await.expect("read"),
        Some(90),
        "lowering never raises it"
    );
    tx.commit().await.expect("commit");
}

both_backends!(
    the_order_apis_acceptance_queries_run_unchanged,
    acceptance_queries
);
async fn acceptance_queries(backend: Backend) {
    let db = Db::on(backend).await;
    seed_orders(&db).await;
    // ord_a paid by a matched event; ord_b has an unmatched one.
    let (contract, h) = (
        format!("{:#x}", wallet(0xee)),
        format!("{:#x}", B256::repeat_byte(9)),
    );
    let (r, payer) = (
        format!("{:#x}", B256::repeat_byte(1)),
        format!("{:#x}", wallet(0xa)),
    );
    db.execute(&format!(
        "INSERT INTO contract_events (chain_id, contract_address, tx_hash, log_index, block_number,
           block_hash, event_name, event_version, order_ref, payer, amount_usdc, amount_raw,
           quote_hash, args_json, order_id, match_status)
         VALUES (31337, '{contract}', '{h}', 0, 5, '{h}', 'PremiumPaid', 1, '{r}', '{payer}',
                 5000000, '5000000', '{h}', '{{}}', 'ord_a', 'matched')",
    ))
    .await;
    db.execute("UPDATE orders SET status = 'paid', payment_status = 'paid' WHERE id = 'ord_a'")
        .await;
    db.execute("UPDATE orders SET created_at = '2020-01-01T00:00:00.000Z' WHERE id = 'ord_c'")
        .await;

    // docs/database-contract.md's two queries, character for character.
    let latest: Vec<String> = on_pool!(db, |p| sqlx::query(
        "SELECT id, status, created_at FROM orders ORDER BY created_at DESC LIMIT 3;"
    )
    .fetch_all(p)
    .await
    .expect("query 1")
    .iter()
    .map(|r| r.get(0))
    .collect());
    assert_eq!(latest.len(), 3);
    assert_eq!(latest[2], "ord_c");

    let mut rows: Vec<(String, String, Option<String>, Option<i64>)> =
        on_pool!(db, |p| sqlx::query(
            "SELECT o.id, o.status, ce.event_name, ce.amount_usdc
FROM orders o LEFT JOIN contract_events ce ON o.id = ce.order_id
WHERE o.status IN ('pending', 'paid') LIMIT 10;",
        )
        .fetch_all(p)
        .await
        .expect("query 2")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect());
    rows.sort();
    assert_eq!(
        rows,
        vec![
            (
                "ord_a".into(),
                "paid".into(),
                Some("PremiumPaid".into()),
                Some(5_000_000)
            ),
            ("ord_b".into(), "pending".into(), None, None),
            ("ord_c".into(), "pending".into(), None, None),
        ]
    );
}

both_backends!(
    constraints_reject_bad_orders_with_a_clear_error_and_write_nothing,
    constraints
);
async fn constraints(backend: Backend) {
    let db = Db::on(backend).await;
    seed_orders(&db).await;
    db.execute("UPDATE orders SET payment_proof_id = 'proof-1' WHERE id = 'ord_a'")
        .await;
    let good_ref = format!("{:#x}", B256::repeat_byte(0x44));
    let good_wallet = format!("{:#x}", wallet(0xab));
    // (what, order_ref, wallet, premium SQL, status, payment_proof_id, expected error)
    type Case<'a> = (
        &'a str,
        String,
        String,
        String,
        &'a str,
        Option<&'a str>,
        &'a str,
    );
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("zero premium", good_ref.clone(), good_wallet.clone(), "0".into(), "pending", None, "CHECK"),
        ("negative premium", good_ref.clone(), good_wallet.clone(), "-5".into(), "pending", None, "CHECK"),
        ("text premium", good_ref.clone(), good_wallet.clone(), "'lots'".into(), "pending", None, "TYPE"),
        ("unknown status", good_ref.clone(), good_wallet.clone(), "1".into(), "maybe", None, "CHECK"),
        ("upper-case wallet", good_ref.clone(), good_wallet.to_uppercase().replace("0X", "0x"), "1".into(), "pending", None, "CHECK"),
        ("short wallet", good_ref.clone(), "0x1234".into(), "1".into(), "pending", None, "CHECK"),
        ("non-hex order_ref", format!("0x{}", "zz".repeat(32)), good_wallet.clone(), "1".into(), "pending", None, "CHECK"),
        ("order_ref without 0x", "ab".repeat(33), good_wallet.clone(), "1".into(), "pending", None, "CHECK"),
        ("duplicate order_ref", format!("{:#x}", B256::repeat_byte(1)), good_wallet.clone(), "1".into(), "pending", None, "UNIQUE"),
        ("duplicate wallet+proof", good_ref.clone(), format!("{:#x}", wallet(0xa)), "1".into(), "pending", Some("proof-1"), "UNIQUE"),
    ];
    for (what, order_ref, wallet, premium, status, proof, expected) in cases {
        let sql = format!(
            "INSERT INTO orders (id, order_ref, wallet_address, premium_usdc, status, payment_proof_id)
             VALUES ('ord_bad', $1, $2, {premium}, $3, $4)"
        );
        let msg = on_pool!(db, |p| sqlx::query(&sql)
            .bind(&order_ref)
            .bind(&wallet)
            .bind(status)
            .bind(proof)
            .execute(p)
            .await
            .expect_err(what)
            .to_string());
        // Each backend's words for the same refusal.
        let expected = match (backend, expected) {
            (Backend::Sqlite, "TYPE") => "CHECK",
            (Backend::Sqlite, e) => e,
            (Backend::Postgres, "CHECK") => "violates check constraint",
            (Backend::Postgres, "UNIQUE") => "violates unique constraint",
            (Backend::Postgres, _) => "invalid input syntax for type bigint",
        };
        assert!(
            msg.contains(expected),
            "{what}: expected a {expected} error, got {msg}"
        );
        assert_eq!(
            db.count("SELECT COUNT(*) FROM orders").await,
            3,
            "{what} wrote nothing"
        );
    }
}

#[tokio::test]
async fn a_long_reader_does_not_block_a_writer_and_a_writer_does_not_block_readers() {
    let db = Db::new().await;
    seed_orders(&db).await;
    // A reader holds a read transaction open (a snapshot).
    let mut reader = db
        .store
        .sqlite_pool()
        .expect("an SQLite store")
        .begin()
        .await
        .expect("read tx");
    let before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(&mut *reader)
        .await
        .expect("read");
    // A writer commits meanwhile, well within the busy timeout.
    let mut writer = db.hold_write_lock().await;
    sqlx::query("UPDATE orders SET payment_status = 'confirming' WHERE id = 'ord_a'")
        .execute(&mut *writer)
        .await
        .expect("write");
    // While the writer holds the lock, another connection still reads.
    let during: String = sqlx::query_scalar("SELECT payment_status FROM orders WHERE id = 'ord_a'")
        .fetch_one(db.store.sqlite_pool().expect("an SQLite store"))
        .await
        .expect("read during write");
    assert_eq!(
        during, "pending",
        "readers see the last commit, not the open write"
    );
    writer.commit().await.expect("commit");
    // The long reader keeps its snapshot.
    let still: String = sqlx::query_scalar("SELECT payment_status FROM orders WHERE id = 'ord_a'")
        .fetch_one(&mut *reader)
        .await
        .expect("snapshot read");
    assert_eq!((before, still.as_str()), (3, "pending"));
    reader.commit().await.expect("end read");
    assert_eq!(db.order("ord_a").await.payment_status, "confirming");
}

#[tokio::test]
async fn two_writers_serialize_without_lock_errors() {
    let db = Db::new().await;
    seed_orders(&db).await;
    let mut tasks = Vec::new();
    for w in 0..2 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                let mut tx = store
                    .sqlite_pool()
                    .expect("an SQLite store")
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .expect("begin immediate");
                sqlx::query("UPDATE orders SET updated_at = ? WHERE id = 'ord_b'")
                    .bind(format!("2030-01-01T00:00:{:02}.{w}{i:02}Z", i % 60))
                    .execute(&mut *tx)
                    .await
                    .expect("update inside the lock");
                // Hold the lock a moment so the other writer has to wait.
                tokio::time::sleep(Duration::from_millis(1)).await;
                tx.commit().await.expect("commit");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer finished without a lock error");
    }
}

both_backends!(orders_survive_a_restart, survive_a_restart);
async fn survive_a_restart(backend: Backend) {
    let db = Db::on(backend).await;
    seed_orders(&db).await;
    let before = db.orders().await;
    let again = db.reopen().await;
    assert_eq!(again.count("SELECT COUNT(*) FROM orders").await, 3);
    assert_eq!(again.orders().await, before);
}

#[tokio::test]
async fn the_database_runs_in_wal_mode_with_foreign_keys() {
    let db = Db::new().await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(db.store.sqlite_pool().expect("an SQLite store"))
        .await
        .expect("pragma");
    assert_eq!(mode, "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(db.store.sqlite_pool().expect("an SQLite store"))
        .await
        .expect("pragma");
    assert_eq!(fk, 1);
    let err = sqlx::query(
        "INSERT INTO order_audit (order_id, reason, from_status, to_status, from_payment_status,
           to_payment_status) VALUES ('nope', 'x', 'a', 'b', 'c', 'd')",
    )
    .execute(db.store.sqlite_pool().expect("an SQLite store"))
    .await
    .expect_err("audit row for a missing order");
    assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
}
