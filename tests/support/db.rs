//! A temporary database, written the way the order API writes it, and read
//! back for assertions: an SQLite file, or a fresh database in the test
//! binary's own PostgreSQL cluster (`super::pg`). Test bodies take a
//! [`Backend`] and run unchanged on both.

use std::path::PathBuf;
use std::time::Duration;

use alloy::primitives::{Address, B256};
use liqpass_indexer::config::DatabaseSettings;
use liqpass_indexer::store::Store;
use sqlx::Row;
use tempfile::TempDir;

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub use Backend::{Postgres, Sqlite};

/// A migrated database: an SQLite file in a temporary directory, or a
/// PostgreSQL database of the test cluster (`dir` then holds nothing).
pub struct Db {
    pub dir: TempDir,
    pub store: Store,
    url: String,
}

/// Runs `$body` with `$p` bound to the store's pool, SQLite or PostgreSQL:
/// the statement is written once (placeholders `$1`, `$2`…).
#[macro_export]
macro_rules! on_pool {
    ($db:expr, |$p:ident| $body:expr) => {
        match ($db.store.sqlite_pool(), $db.store.postgres_pool()) {
            (Some($p), _) => $body,
            (None, Some($p)) => $body,
            (None, None) => unreachable!("a store is SQLite or PostgreSQL"),
        }
    };
}

/// An order as tests see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub id: String,
    pub status: String,
    pub payment_status: String,
    pub paid_tx_hash: Option<String>,
    pub paid_block_number: Option<i64>,
    pub paid_amount_usdc: Option<i64>,
}

/// A row of the outbox as tests compare them (no cursor ids, no times).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub event_id: String,
    pub kind: String,
    pub order_id: Option<String>,
    pub payload: serde_json::Value,
}

/// An event as tests compare them (no ids, no wall-clock times).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventRow {
    pub tx_hash: String,
    pub log_index: i64,
    pub block_number: i64,
    pub order_ref: String,
    pub amount_raw: String,
    pub match_status: String,
    pub order_id: Option<String>,
    pub removed: bool,
}

pub fn settings(path: &std::path::Path) -> DatabaseSettings {
    url_settings(format!("sqlite://{}", path.display()))
}

pub fn url_settings(url: String) -> DatabaseSettings {
    DatabaseSettings {
        url,
        schema: "public".into(),
        busy_timeout: Duration::from_secs(5),
        max_connections: 4,
        max_write: Duration::from_millis(3),
        write_gap: Duration::from_millis(3),
        alone_after: None,
        alone_max_write: Duration::from_millis(50),
    }
}

impl Db {
    /// A fresh, migrated SQLite database.
    pub async fn new() -> Db {
        Self::migrated(tempfile::tempdir().expect("temp dir")).await
    }

    /// A fresh, migrated database on `backend`.
    pub async fn on(backend: Backend) -> Db {
        match backend {
            Sqlite => Self::new().await,
            Postgres => Self::on_cluster(super::pg::cluster()).await,
        }
    }

    /// A fresh, migrated PostgreSQL database on `cluster`.
    pub async fn on_cluster(cluster: &super::pg::Cluster) -> Db {
        let url = cluster.database().await;
        let store = Store::create(&url_settings(url.clone()))
            .await
            .expect("open the PostgreSQL database");
        store.migrate().await.expect("migrate");
        Db {
            dir: tempfile::tempdir().expect("temp dir"),
            store,
            url,
        }
    }

    /// The same database, closed and opened again (a restart).
    pub async fn reopen(self) -> Db {
        self.store.close().await;
        let store = Store::open(&url_settings(self.url.clone()))
            .await
            .expect("reopen");
        Db {
            dir: self.dir,
            store,
            url: self.url,
        }
    }

    pub fn backend(&self) -> Backend {
        if self.store.sqlite_pool().is_some() {
            Sqlite
        } else {
            Postgres
        }
    }

    /// A fresh, migrated database in a directory under `parent` (a small
    /// filesystem of the test's own, say).
    pub async fn new_in(parent: &std::path::Path) -> Db {
        Self::migrated(tempfile::tempdir_in(parent).expect("temp dir")).await
    }

    /// The database `liqpass.db` in `dir`, opened and migrated.
    async fn migrated(dir: tempfile::TempDir) -> Db {
        let store = Store::create(&settings(&dir.path().join("liqpass.db")))
            .await
            .expect("open");
        store.migrate().await.expect("migrate");
        let url = format!("sqlite://{}", dir.path().join("liqpass.db").display());
        Db { dir, store, url }
    }

    /// A copy of a database file saved with `save_to` (benchmark caches),
    /// migrated to this build's schema as `liqpass-indexer migrate` would.
    #[allow(dead_code)] // used by the benchmark only
    pub async fn copy_of(saved: &std::path::Path) -> Db {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::copy(saved, dir.path().join("liqpass.db")).expect("copy the database");
        Self::migrated(dir).await
    }

    /// A consistent copy of the database (WAL included) at `path`.
    #[allow(dead_code)] // used by the benchmark only
    pub async fn save_to(&self, path: &std::path::Path) {
        let _ = std::fs::remove_file(path);
        sqlx::query("VACUUM INTO ?")
            .bind(path.display().to_string())
            .execute(self.store.sqlite_pool().expect("an SQLite store"))
            .await
            .expect("VACUUM INTO");
    }

    /// A write transaction of another writer (the order API's), holding
    /// SQLite's write lock until it ends (SQLite-only tests).
    pub async fn hold_write_lock(&self) -> sqlx::Transaction<'static, sqlx::Sqlite> {
        self.store
            .sqlite_pool()
            .expect("an SQLite store")
            .begin_with("BEGIN IMMEDIATE")
            .await
            .expect("take the write lock")
    }

    /// Another session's lock on `orders`, taken as the order API could
    /// take it, until [`OrdersLock::release`].
    pub async fn lock_orders(&self) -> OrdersLock {
        match self.backend() {
            Sqlite => OrdersLock::Sqlite(self.hold_write_lock().await),
            Postgres => {
                let mut conn = self.connect_pg().await;
                let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                    .fetch_one(&mut conn)
                    .await
                    .expect("the session's pid");
                sqlx::raw_sql("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
                    .execute(&mut conn)
                    .await
                    .expect("lock orders");
                OrdersLock::Postgres { conn, pid }
            }
        }
    }

    /// A transaction of another session holding the lease row (`SELECT …
    /// FOR UPDATE`, as a standby's takeover would for a moment): no
    /// renewal and no fenced commit gets through until it ends
    /// (PostgreSQL-only tests; `ROLLBACK` on the connection ends it).
    pub async fn lock_lease_row(&self) -> sqlx::PgConnection {
        let mut conn = self.connect_pg().await;
        sqlx::raw_sql("BEGIN; SELECT 1 FROM indexer_lease FOR UPDATE")
            .execute(&mut conn)
            .await
            .expect("lock the lease row");
        conn
    }

    /// A connection of its own to this PostgreSQL database, as another
    /// session (the order API's, an operator's).
    async fn connect_pg(&self) -> sqlx::PgConnection {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&self.url)
            .await
            .expect("connect to the test database")
    }

    /// The SQLite file (SQLite-only tests).
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("liqpass.db")
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Inserts a pending order as the order API does.
    pub async fn insert_order(&self, id: &str, order_ref: B256, wallet: Address, premium: i64) {
        self.insert_order_expiring(id, order_ref, wallet, premium, None)
            .await;
    }

    /// `n` pending orders `ord_000`, `ord_001`, … for order refs `first_ref`,
    /// `first_ref + 1`, …, their wallets taken in turn from `wallets`.
    pub async fn insert_orders(&self, wallets: &[Address], first_ref: u64, n: u64, premium: i64) {
        for i in 0..n {
            let wallet = wallets[i as usize % wallets.len()];
            self.insert_order(
                &format!("ord_{i:03}"),
                super::chain::order_ref(first_ref + i),
                wallet,
                premium,
            )
            .await;
        }
    }

    pub async fn insert_order_expiring(
        &self,
        id: &str,
        order_ref: B256,
        wallet: Address,
        premium: i64,
        expires_at: Option<&str>,
    ) {
        // The order API's own statement; on PostgreSQL its expiry is text
        // the server parses, as a driver's string parameter would be.
        let expiry = match self.backend() {
            Sqlite => "$5",
            Postgres => "CAST($5 AS TIMESTAMPTZ)",
        };
        let sql = format!(
            "INSERT INTO orders (id, order_ref, wallet_address, premium_usdc, expires_at)
             VALUES ($1, $2, $3, $4, {expiry})"
        );
        on_pool!(self, |p| sqlx::query(&sql)
            .bind(id)
            .bind(format!("{order_ref:#x}"))
            .bind(format!("{wallet:#x}"))
            .bind(premium)
            .bind(expires_at)
            .execute(p)
            .await
            .map(|_| ())
            .expect("insert order"));
    }

    pub async fn order(&self, id: &str) -> OrderRow {
        on_pool!(self, |p| {
            let r = sqlx::query(
                "SELECT id, status, payment_status, paid_tx_hash, paid_block_number,
                        paid_amount_usdc
                 FROM orders WHERE id = $1",
            )
            .bind(id)
            .fetch_one(p)
            .await
            .expect("order exists");
            OrderRow {
                id: r.get(0),
                status: r.get(1),
                payment_status: r.get(2),
                paid_tx_hash: r.get(3),
                paid_block_number: r.get(4),
                paid_amount_usdc: r.get(5),
            }
        })
    }

    /// Every order, sorted by id.
    pub async fn orders(&self) -> Vec<OrderRow> {
        let ids: Vec<String> = on_pool!(self, |p| sqlx::query_scalar(
            "SELECT id FROM orders ORDER BY id"
        )
        .fetch_all(p)
        .await
        .expect("orders"));
        let mut out = Vec::new();
        for id in ids {
            out.push(self.order(&id).await);
        }
        out
    }

    /// Every stored event, sorted by position.
    pub async fn events(&self) -> Vec<EventRow> {
        on_pool!(self, |p| {
            let rows = sqlx::query(
                "SELECT tx_hash, log_index, block_number, order_ref, amount_raw, match_status,
                        order_id, CAST(removed AS BIGINT)
                 FROM contract_events ORDER BY block_number, log_index, tx_hash",
            )
            .fetch_all(p)
            .await
            .expect("events");
            rows.iter()
                .map(|r| EventRow {
                    tx_hash: r.get(0),
                    log_index: r.get(1),
                    block_number: r.get(2),
                    order_ref: r.get(3),
                    amount_raw: r.get(4),
                    match_status: r.get(5),
                    order_id: r.get(6),
                    removed: r.get::<i64, _>(7) == 1,
                })
                .collect()
        })
    }

    /// Audit rows as (order, reason, from/to payment_status), in order per order.
    pub async fn audit(&self) -> Vec<(String, String, String, String)> {
        on_pool!(self, |p| sqlx::query_as(
            "SELECT order_id, reason, from_payment_status, to_payment_status
             FROM order_audit ORDER BY order_id, id",
        )
        .fetch_all(p)
        .await
        .expect("audit"))
    }

    /// The outbox as (event_id, type, order_id, payload), in cursor order.
    pub async fn notifications(&self) -> Vec<Notice> {
        let payload = match self.backend() {
            Sqlite => "payload",
            Postgres => "payload::text",
        };
        let sql = format!(
            "SELECT event_id, type, order_id, {payload} FROM payment_notifications ORDER BY id"
        );
        let rows: Vec<(String, String, Option<String>, String)> =
            on_pool!(self, |p| sqlx::query_as(&sql)
                .fetch_all(p)
                .await
                .expect("notifications"));
        rows.into_iter()
            .map(|(event_id, kind, order_id, payload)| Notice {
                event_id,
                kind,
                order_id,
                payload: serde_json::from_str(&payload).expect("a JSON payload"),
            })
            .collect()
    }

    /// The notification types about `order_id`, in cursor order.
    pub async fn notice_types(&self, order_id: &str) -> Vec<String> {
        self.notifications()
            .await
            .into_iter()
            .filter(|n| n.order_id.as_deref() == Some(order_id))
            .map(|n| n.kind)
            .collect()
    }

    pub async fn checkpoint(&self) -> Option<i64> {
        on_pool!(self, |p| sqlx::query_scalar(
            "SELECT block_number FROM sync_state"
        )
        .fetch_optional(p)
        .await
        .expect("checkpoint"))
    }

    /// Runs one statement of the test's own (literals only).
    pub async fn execute(&self, sql: &str) {
        on_pool!(self, |p| sqlx::query(sql)
            .execute(p)
            .await
            .map(|_| ())
            .expect(sql))
    }

    /// The schema as its catalog describes it, sorted, `_sqlx` tables left
    /// out: what "the same schema" means on this backend. SQLite: every
    /// table, index and trigger with its SQL; PostgreSQL: every column with
    /// its type, nullability and default, every index and constraint with
    /// its definition.
    pub async fn schema(&self) -> Vec<String> {
        let sql: &[&str] = match self.backend() {
            Sqlite => &[
                "SELECT type || ' ' || name || ' ' || coalesce(sql, '') FROM sqlite_master
                 WHERE name NOT LIKE '_sqlx%' AND name NOT LIKE 'sqlite_%'",
            ],
            Postgres => &[
                "SELECT table_name || '.' || column_name || ' ' || data_type || ' '
                        || is_nullable || ' ' || coalesce(column_default, '')
                 FROM information_schema.columns WHERE table_schema = 'public'
                   AND table_name NOT LIKE '\\_sqlx%'",
                "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'
                   AND tablename NOT LIKE '\\_sqlx%'",
                "SELECT conrelid::regclass::text || ' ' || pg_get_constraintdef(oid)
                 FROM pg_constraint WHERE connamespace = 'public'::regnamespace
                   AND conrelid::regclass::text NOT LIKE '\\_sqlx%'",
            ],
        };
        let mut all = Vec::new();
        for q in sql {
            let rows: Vec<String> = on_pool!(self, |p| sqlx::query_scalar(q)
                .fetch_all(p)
                .await
                .expect("schema"));
            all.extend(rows);
        }
        all.sort();
        all
    }

    /// The stored checkpoint: block number and hash.
    pub async fn checkpoint_ref(&self) -> Option<(i64, String)> {
        on_pool!(self, |p| sqlx::query_as(
            "SELECT block_number, block_hash FROM sync_state"
        )
        .fetch_optional(p)
        .await
        .expect("sync_state"))
    }

    pub async fn count(&self, sql: &str) -> i64 {
        on_pool!(self, |p| sqlx::query_scalar(sql)
            .fetch_one(p)
            .await
            .expect("count query"))
    }

    /// Returns once at least `n` events are stored (bounded wait).
    pub async fn wait_events(&self, n: i64) {
        super::wait_for(&format!("{n} events"), Duration::from_secs(30), || async {
            (self.count("SELECT COUNT(*) FROM contract_events").await >= n).then_some(())
        })
        .await;
    }

    /// Returns once `n` orders are `paid` (bounded wait).
    pub async fn wait_paid_orders(&self, n: u64) {
        super::wait_for(
            &format!("{n} orders paid"),
            Duration::from_secs(90),
            || async {
                (self
                    .count("SELECT COUNT(*) FROM orders WHERE payment_status = 'paid'")
                    .await
                    == n as i64)
                    .then_some(())
            },
        )
        .await;
    }

    /// The payment_status of `id`, once it equals `want` (bounded wait).
    pub async fn wait_payment_status(&self, id: &str, want: &str) {
        super::wait_for(
            &format!("order {id} to become {want}"),
            Duration::from_secs(30),
            || async { (self.order(id).await.payment_status == want).then_some(()) },
        )
        .await;
    }
}

/// A lock on `orders` another session holds: on PostgreSQL `LOCK TABLE
/// orders IN ACCESS EXCLUSIVE MODE` in an open transaction; on SQLite a
/// write transaction, which holds the database's one write lock.
pub enum OrdersLock {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres { conn: sqlx::PgConnection, pid: i32 },
}

impl OrdersLock {
    /// The holding session's server pid (PostgreSQL).
    pub fn pid(&self) -> Option<i32> {
        match self {
            Self::Sqlite(_) => None,
            Self::Postgres { pid, .. } => Some(*pid),
        }
    }

    /// Ends the holding transaction.
    pub async fn release(self) {
        match self {
            Self::Sqlite(tx) => tx.rollback().await.expect("release the write lock"),
            Self::Postgres { mut conn, .. } => {
                sqlx::raw_sql("COMMIT")
                    .execute(&mut conn)
                    .await
                    .expect("release orders");
            }
        }
    }
}
