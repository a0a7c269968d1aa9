//! The store: the database contract on SQLite (the embedded default) or
//! PostgreSQL, chosen by `database.url`. The rest of the crate sees one
//! [`Store`] and one connection type, [`Conn`]; each module below writes its
//! SQL once, for both, with the few differences named by a [`Dialect`], and
//! what only one backend has lives in `sqlite` and `postgres`. All SQL of the
//! crate lives below this module.
//!
//! It must not decide anything: reconciliation is done by the caller, which
//! hands this module rows to write inside one transaction.

pub mod audit;
pub mod blocks;
pub mod checkpoint;
pub mod deliveries;
pub mod events;
pub mod exceptions;
pub mod failure;
pub mod incidents;
pub mod lease;
pub mod malformed;
pub mod notify;
pub mod orders;
pub mod outbox;
pub mod pace;
pub mod postgres;
pub mod sqlite;
pub mod status;
pub mod treasury;
pub mod values;
pub mod verify;
pub mod waits;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::{PgConnection, SqliteConnection};

use crate::config::DatabaseSettings;
use crate::secret::display_db_url;
pub use waits::LockWait;

/// A connection the store's functions run on: inside a write transaction
/// ([`TxWork`]), or a pooled reader ([`Pooled::conn`]). Callers outside this
/// module only hand it on, so they never learn which backend is underneath.
pub enum Conn<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

/// The owner of a pooled connection, for reads outside a write transaction.
pub enum Pooled {
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
}

impl Pooled {
    /// The connection, for the store's functions.
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Self::Sqlite(c) => Conn::Sqlite(c),
            Self::Postgres(c) => Conn::Postgres(c),
        }
    }
}

/// An open transaction outside [`Store::write`] (unfenced: operator
/// commands); rolled back unless committed.
pub enum Begun {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Begun {
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Self::Sqlite(tx) => Conn::Sqlite(tx),
            Self::Postgres(tx) => Conn::Postgres(tx),
        }
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(tx) => tx.commit().await?,
            Self::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }

    /// Undoes everything the transaction did (`resolve --dry-run`).
    pub async fn rollback(self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(tx) => tx.rollback().await?,
            Self::Postgres(tx) => tx.rollback().await?,
        }
        Ok(())
    }
}

/// What differs between the two backends' SQL, as fragments the statements
/// below splice in. Placeholders are `$1`, `$2`… on both.
#[derive(Debug)]
pub struct Dialect {
    /// The current time, in the type time columns have.
    pub now: &'static str,
    /// `now` plus a number of milliseconds given as `{}`.
    now_plus_ms: &'static str,
    /// A unix time (seconds) in a column `{}` as a time value.
    from_unix: &'static str,
    /// A time column `{}` as unix seconds (BIGINT).
    to_unix: &'static str,
    /// A time column `{}` as ISO-8601 UTC text with milliseconds.
    to_iso: &'static str,
    /// `SELECT` of the text elements of a JSON array column `{}`.
    json_elements: &'static str,
    /// One row of JSON text aggregating `json_array({})` over the rows.
    json_rows: &'static str,
    /// A join the planner must keep in the written order (SQLite's
    /// `CROSS JOIN`; PostgreSQL plans it alone).
    pub ordered_join: &'static str,
    /// Whether the index hints (`INDEXED BY`) exist.
    index_hints: bool,
    /// What a `SELECT` of rows the transaction will change appends to lock
    /// them until it ends (PostgreSQL's `FOR NO KEY UPDATE`, so that an
    /// order API's concurrent `UPDATE` of the same orders waits, as it does
    /// behind SQLite's one write lock; nothing on SQLite, which has that
    /// lock already).
    pub lock_rows: &'static str,
    /// The function building a JSON object from key, value pairs (stored
    /// as JSON text on SQLite, `jsonb` on PostgreSQL).
    pub json_object: &'static str,
    /// A JSON column `{}` as text.
    json_text: &'static str,
    /// `now` minus a number of days given as `{}`.
    now_minus_days: &'static str,
}

impl Dialect {
    pub fn now_plus(&self, d: Duration) -> String {
        self.now_plus_ms.replace("{}", &d.as_millis().to_string())
    }
    pub fn from_unix(&self, column: &str) -> String {
        self.from_unix.replace("{}", column)
    }
    pub fn to_unix(&self, column: &str) -> String {
        self.to_unix.replace("{}", column)
    }
    pub fn to_iso(&self, column: &str) -> String {
        self.to_iso.replace("{}", column)
    }
    pub fn json_elements(&self, column: &str) -> String {
        self.json_elements.replace("{}", column)
    }
    pub fn json_rows(&self, values: &str) -> String {
        self.json_rows.replace("{}", values)
    }
    pub fn json_text(&self, column: &str) -> String {
        self.json_text.replace("{}", column)
    }
    pub fn now_minus_days(&self, days: &str) -> String {
        self.now_minus_days.replace("{}", days)
    }
    /// ` INDEXED BY index` where hints exist, else nothing.
    pub fn indexed_by(&self, index: &str) -> String {
        if self.index_hints {
            format!(" INDEXED BY {index}")
        } else {
            String::new()
        }
    }
}

/// Runs `$body` with `$c` bound to the backend's connection
/// (`&mut &mut SqliteConnection` or `&mut &mut PgConnection`: pass
/// `&mut **$c` as the executor) and `$d` to its [`Dialect`]: the statement
/// is written once and compiled for both drivers.
macro_rules! on {
    ($conn:expr, |$c:ident, $d:ident| $body:expr) => {
        match $conn {
            $crate::store::Conn::Sqlite($c) => {
                #[allow(unused_variables)]
                let $d = &$crate::store::sqlite::DIALECT;
                $body
            }
            $crate::store::Conn::Postgres($c) => {
                #[allow(unused_variables)]
                let $d = &$crate::store::postgres::DIALECT;
                $body
            }
        }
    };
}
pub(crate) use on;

/// Work done inside one write transaction: [`Store::write`] runs it, and
/// runs it again whole after a failure, so it must hold no state of its own.
pub trait TxWork {
    type Output;
    /// Rows it writes, as the caller counts them (for sizing transactions
    /// by their measured lock-hold time); 0 when that says nothing.
    fn rows(&self) -> usize {
        0
    }
    fn run<'t>(
        &'t self,
        tx: &'t mut Conn<'t>,
    ) -> impl std::future::Future<Output = Result<Self::Output, StoreError>> + Send + 't;
}

/// Errors of the store boundary. URLs in them are redacted.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid database url {url}: {cause}")]
    Url { url: String, cause: sqlx::Error },
    #[error("cannot open database {url}: {cause}")]
    Open { url: String, cause: sqlx::Error },
    /// SQLite: no file at the URL's path (a mistyped `database.url`, or a
    /// database never created).
    #[error("no database file at {url}: check database.url, or run `liqpass-indexer migrate` to create it")]
    NoFile { url: String },
    /// PostgreSQL: the connection failed or the server ended it (a restart,
    /// `pg_terminate_backend`, a network cut).
    #[error("the database connection failed: {0}")]
    Connection(sqlx::Error),
    #[error(
        "database {url}: schema {schema:?} does not exist (create it, or set database.schema)"
    )]
    NoSchema { url: String, schema: String },
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// The write lease is no longer this replica's under `epoch` (another
    /// replica took it over): the transaction was rolled back.
    #[error("fenced: the write lease is no longer held under epoch {epoch}")]
    Fenced { epoch: i64 },
    /// The stored checkpoint is not where this writer's last commit left
    /// it (`checkpoint::advance`): the transaction was rolled back.
    #[error(
        "the stored checkpoint is at {}, not at block {expected} where this writer's last commit \
         left it: the database lost commits it had acknowledged (a failover to a replica that was \
         behind, a restore, a crash with synchronous_commit or fsync off), or something else moved it",
        .found.map_or("none".to_owned(), |b| format!("block {b}"))
    )]
    CheckpointMoved { expected: u64, found: Option<u64> },
}

impl StoreError {
    /// A URL that does not parse, or a schema that does not exist: fixed
    /// in the settings, not by retrying (exit code 64).
    pub fn is_configuration(&self) -> bool {
        matches!(self, Self::Url { .. } | Self::NoSchema { .. })
    }

    /// A statement of [`Store::begin_short`] gave up waiting for a row lock
    /// (PostgreSQL's `lock_timeout`, SQLSTATE 55P03): another transaction
    /// holds the row, which is not a failure of this one's.
    pub fn is_lock_timeout(&self) -> bool {
        match self {
            Self::Sql(sqlx::Error::Database(db)) => db.code().as_deref() == Some("55P03"),
            _ => false,
        }
    }
}

/// The shared database.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    /// When set, every [`Store::write`] first checks, in its transaction,
    /// that this lease is still held, and renews it (see `lease`).
    fence: Option<Arc<Fenced>>,
    /// Sizes and spaces this process's write transactions (`pace`): shared
    /// by every clone, so every writer of the process takes its turn.
    pacer: Arc<Mutex<pace::Pacer>>,
    /// Whether this process's write in flight waits on another session's
    /// lock (`waits`): shared by every clone, as the pacer.
    waits: waits::Waits,
}

#[derive(Debug, Clone)]
enum Backend {
    // Boxed: the SQLite side holds its connect options; a store is cloned
    // a few times per process, never per row.
    Sqlite(Box<sqlite::Sqlite>),
    Postgres(postgres::Postgres),
}

/// The lease a fenced store writes under, and when a commit last renewed it.
#[derive(Debug)]
struct Fenced {
    fence: lease::Fence,
    ttl: Duration,
    /// When the last committed transaction began (its renewal is at least
    /// that recent).
    renewed: Mutex<Option<Instant>>,
}

impl Store {
    /// Opens the database named by `settings.url`: SQLite (`sqlite:`, with
    /// the pragmas the contract relies on; a file that is not there is
    /// refused: [`StoreError::NoFile`]) or PostgreSQL (`postgres://`,
    /// `postgresql://`, its `database.schema` checked). Does not migrate.
    pub async fn open(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        Self::open_with(settings, false).await
    }

    /// The same, creating a missing SQLite file (readable by its owner
    /// only): for `migrate`, which then gives it its schema.
    pub async fn create(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        Self::open_with(settings, true).await
    }

    #[tracing::instrument(skip_all, fields(url = %display_db_url(&settings.url)))]
    async fn open_with(settings: &DatabaseSettings, create: bool) -> Result<Self, StoreError> {
        let backend = if postgres::is_url(&settings.url) {
            Backend::Postgres(postgres::Postgres::open(settings).await?)
        } else {
            Backend::Sqlite(Box::new(sqlite::Sqlite::open(settings, create).await?))
        };
        // SQLite's one write lock is shared with the order API: short, spaced
        // transactions. PostgreSQL's writers do not wait for ours.
        let pacer = match backend {
            Backend::Sqlite(_) => {
                let pacer = pace::Pacer::new(settings.max_write, settings.write_gap);
                match settings.alone_after {
                    Some(after) => pacer.alone_after(after, settings.alone_max_write),
                    None => pacer,
                }
            }
            Backend::Postgres(_) => pace::Pacer::unbounded(),
        };
        Ok(Self {
            backend,
            fence: None,
            pacer: Arc::new(Mutex::new(pacer)),
            waits: Default::default(),
        })
    }

    /// Payments the next write transaction should hold: on SQLite what fits
    /// `database.max_write_ms`, learned from the transactions before it.
    pub fn rows_per_write(&self) -> usize {
        self.pacer().rows()
    }

    /// True while no other connection has committed to the SQLite database
    /// for `database.alone_after_s`: transactions are sized to
    /// `database.alone_max_write_ms` (`pace`). False on PostgreSQL.
    pub fn writes_alone(&self) -> bool {
        self.pacer().is_alone()
    }

    /// True when another connection's commit changes how we write (SQLite
    /// with the alone rule on).
    fn watches_for_other_writers(&self) -> bool {
        self.pacer().has_alone_rule()
    }

    /// Another connection committed since our last write (SQLite).
    fn foreign_commit(&self) {
        self.pacer().foreign_commit();
    }

    fn pacer(&self) -> std::sync::MutexGuard<'_, pace::Pacer> {
        self.pacer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This store, with every [`Store::write`] fenced by `fence`: a write
    /// transaction in which the lease is no longer held under its epoch
    /// rolls back with [`StoreError::Fenced`]; one that commits has renewed
    /// the lease for `ttl`.
    pub fn fenced(&self, fence: lease::Fence, ttl: Duration) -> Self {
        // A term begins: a lock wait of the one before says nothing of it.
        self.waits.clear();
        Self {
            fence: Some(Arc::new(Fenced {
                fence,
                ttl,
                renewed: Default::default(),
            })),
            ..self.clone()
        }
    }

    /// When the last committed write of this fenced store began: its lease
    /// was renewed then, at the latest. `None` before the first.
    pub fn renewed_by_commit(&self) -> Option<Instant> {
        let fenced = self.fence.as_ref()?;
        *fenced.renewed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies every pending migration (on PostgreSQL under an advisory
    /// lock, so that replicas starting together apply each once).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.migrate().await,
            Backend::Postgres(p) => p.migrate().await,
        }
    }

    /// Reverts the most recently applied migration; returns its version, or
    /// `None` when nothing was applied.
    pub async fn revert_last(&self) -> Result<Option<i64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.revert_last().await,
            Backend::Postgres(p) => p.revert_last().await,
        }
    }

    /// Versions of the applied migrations, oldest first.
    pub async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.applied_migrations().await,
            Backend::Postgres(p) => p.applied_migrations().await,
        }
    }

    /// Versions of the migrations this build carries for the backend.
    pub fn expected_migrations(&self) -> Vec<i64> {
        let migrator = match self.backend {
            Backend::Sqlite(_) => &sqlite::MIGRATOR,
            Backend::Postgres(_) => &postgres::MIGRATOR,
        };
        migrator
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| m.version)
            .collect()
    }

    /// Opens a transaction outside [`Store::write`] and its fence, for
    /// operator commands (on SQLite with `BEGIN IMMEDIATE`, so the write
    /// lock is taken up front).
    pub async fn begin(&self) -> Result<Begun, StoreError> {
        Ok(match &self.backend {
            Backend::Sqlite(s) => Begun::Sqlite(s.pool.begin_with("BEGIN IMMEDIATE").await?),
            Backend::Postgres(p) => Begun::Postgres(p.pool.begin().await?),
        })
    }

    /// Opens a short transaction that waits at most `limit` for a row lock
    /// or a statement (PostgreSQL's `lock_timeout` and `statement_timeout`,
    /// set for this transaction only, so behind a transaction-pooling
    /// PgBouncer too; SQLite: `BEGIN IMMEDIATE`, bounded by its busy
    /// timeout). For the lease's own statements, which must never queue
    /// behind a paused transaction for long.
    pub async fn begin_short(&self, limit: Duration) -> Result<Begun, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => self.begin().await,
            Backend::Postgres(p) => Ok(Begun::Postgres(
                p.bounded("BEGIN ISOLATION LEVEL READ COMMITTED", limit)
                    .await?,
            )),
        }
    }

    /// Opens a read-only transaction for a term's reads, bounded as its
    /// writes are (PostgreSQL: no statement runs, or waits on a lock, past
    /// half the lease's TTL, or `database.busy_timeout_ms` without a
    /// lease): a read behind the order API's `LOCK TABLE orders` fails as a
    /// lock wait, and its task retries it, instead of holding the term up
    /// unbounded. SQLite: a deferred transaction (its readers wait on no
    /// writer).
    pub async fn read(&self) -> Result<Begun, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => Ok(Begun::Sqlite(s.pool.begin().await?)),
            Backend::Postgres(p) => {
                let limit = self.fence_ttl().map_or(p.busy_timeout, |ttl| ttl / 2);
                Ok(Begun::Postgres(
                    p.bounded("BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY", limit)
                        .await?,
                ))
            }
        }
    }

    /// The lock wait of this process's write in flight, if it waits on
    /// another session (`waits`).
    pub fn lock_wait(&self) -> Option<LockWait> {
        self.waits.current()
    }

    /// Whether the write `in_flight` waits on another session's lock, and
    /// on whose (`None`: it does not, or that cannot be told now).
    async fn blockers(&self, in_flight: &waits::InFlight) -> Option<Vec<i32>> {
        match &self.backend {
            Backend::Sqlite(_) => in_flight.sqlite_waiting(),
            Backend::Postgres(p) => p.blockers(in_flight.pid()?).await,
        }
    }

    /// True on SQLite: one write lock for the whole database, so a lock
    /// another session holds keeps every writer out, any replica's takeover
    /// of the lease included.
    pub fn one_write_lock(&self) -> bool {
        matches!(self.backend, Backend::Sqlite(_))
    }

    /// The TTL of the lease a fenced store writes under.
    pub(super) fn fence_ttl(&self) -> Option<Duration> {
        self.fence.as_ref().map(|f| f.ttl)
    }

    /// Opens a read-only snapshot: every statement in it sees the same
    /// commits (SQLite's deferred read transaction; PostgreSQL's
    /// `REPEATABLE READ READ ONLY`).
    pub async fn begin_read(&self) -> Result<Begun, StoreError> {
        Ok(match &self.backend {
            Backend::Sqlite(s) => Begun::Sqlite(s.pool.begin().await?),
            Backend::Postgres(p) => Begun::Postgres(
                p.pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?,
            ),
        })
    }

    /// Runs `work` in one write transaction and commits it, in its turn
    /// (`pace`); on error everything is rolled back. A fenced store (see [`Store::fenced`])
    /// checks and renews its lease last, in the same transaction.
    ///
    /// Returns the output and how long the transaction held its locks (from
    /// the `BEGIN` to the end of the `COMMIT`). On SQLite that is the one
    /// write lock, which the order API shares (see `sqlite::Sqlite::write`).
    pub async fn write<W: TxWork>(&self, work: &W) -> Result<(W::Output, Duration), StoreError> {
        // Our turn: the lock free for the gap since our last commit (the
        // guard is dropped before the sleep).
        let turn = self.pacer().turn();
        if let Some(turn) = turn {
            tokio::time::sleep_until(turn).await;
        }
        let in_flight = waits::InFlight::default();
        let write = async {
            match &self.backend {
                Backend::Sqlite(s) => s.write(self, work, &in_flight).await,
                Backend::Postgres(p) => p.write(self, work, &in_flight).await,
            }
        };
        let done = self.waits.watch(write, || self.blockers(&in_flight)).await;
        let (out, locked, held) = done?;
        self.pacer().committed(work.rows(), held);
        if let Some(f) = &self.fence {
            *f.renewed.lock().unwrap_or_else(|e| e.into_inner()) = Some(locked);
        }
        Ok((out, held))
    }

    /// `work`, then the fence (when set), inside one transaction. The
    /// fence last: the lease row is locked only for the transaction's end,
    /// so one that waits on another session's lock (the order API's, on
    /// `orders`) does not hold up the lease keeper's renewals and cost the
    /// lease. A replica that lost the lease still never commits: the check
    /// is in the same transaction, before `COMMIT`.
    pub(super) async fn fenced_run<W: TxWork>(
        &self,
        tx: &mut Conn<'_>,
        work: &W,
    ) -> Result<W::Output, StoreError> {
        let out = {
            let mut again = match &mut *tx {
                Conn::Sqlite(c) => Conn::Sqlite(c),
                Conn::Postgres(c) => Conn::Postgres(c),
            };
            work.run(&mut again).await?
        };
        if let Some(f) = &self.fence {
            if !lease::renew(tx, &f.fence, f.ttl).await? {
                return Err(StoreError::Fenced {
                    epoch: f.fence.epoch,
                });
            }
        }
        Ok(out)
    }

    /// A pooled connection, for reads outside a write transaction.
    pub async fn conn(&self) -> Result<Pooled, StoreError> {
        Ok(match &self.backend {
            Backend::Sqlite(s) => Pooled::Sqlite(s.pool.acquire().await?),
            Backend::Postgres(p) => Pooled::Postgres(p.pool.acquire().await?),
        })
    }

    /// The SQLite pool, for tests and tools that read the file directly;
    /// `None` on PostgreSQL.
    pub fn sqlite_pool(&self) -> Option<&sqlx::SqlitePool> {
        match &self.backend {
            Backend::Sqlite(s) => Some(&s.pool),
            Backend::Postgres(_) => None,
        }
    }

    /// The PostgreSQL pool (its connections use `database.schema`); `None`
    /// on SQLite.
    pub fn postgres_pool(&self) -> Option<&sqlx::PgPool> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(p) => Some(&p.pool),
        }
    }

    /// Answers when the database can be reached afresh and read, as the
    /// order API's readers would (see each backend's `ping`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.ping().await,
            Backend::Postgres(p) => p.ping().await,
        }
    }

    /// Closes every connection (on SQLite checkpointing the WAL).
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(s) => s.close().await,
            Backend::Postgres(p) => p.pool.close().await,
        }
    }
}
