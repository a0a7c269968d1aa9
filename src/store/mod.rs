//! The SQLite store: the pool (WAL, busy timeout, foreign keys), the embedded
//! reversible migrations, and the `BEGIN IMMEDIATE` write transaction every
//! write goes through. All SQL of the crate lives below this module.
//!
//! It must not decide anything: reconciliation is done by the caller, which
//! hands this module rows to write inside one transaction.

pub mod events;
pub mod failure;
pub mod incidents;
pub mod lease;
pub mod orders;
pub mod postgres;
pub mod status;
pub mod sync;
pub mod verify;

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Sqlite, SqliteConnection, SqlitePool, Transaction};

use crate::config::DatabaseSettings;
use failure::WriteFailure;

/// The migrations in `migrations/sqlite/`, compiled in.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// A write transaction opened with `BEGIN IMMEDIATE`.
pub type WriteTx = Transaction<'static, Sqlite>;

/// The connection a [`TxWork`] writes on, inside its transaction. Callers
/// outside this module name it only through this alias and hand it to the
/// store's functions, so they never see which driver is underneath.
pub type Tx = SqliteConnection;

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
        tx: &'t mut Tx,
    ) -> impl std::future::Future<Output = Result<Self::Output, StoreError>> + Send + 't;
}

/// Errors of the store boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid database url {url:?}: {source}")]
    Url { url: String, source: sqlx::Error },
    #[error("cannot open database {url:?}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// The write lease is no longer this replica's under `epoch` (another
    /// took it over, or it expired): the transaction was rolled back.
    #[error("fenced: the write lease is no longer held under epoch {epoch}")]
    Fenced { epoch: i64 },
}

/// The shared database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    /// The one connection [`Store::write`] writes on. It has no busy handler
    /// of SQLite's, which sleeps 1, 2, 5, 10… ms between tries and so would
    /// cost the indexer up to 10 ms after every `INSERT` of the order API's;
    /// `write` polls for the lock itself, every `LOCK_POLL`.
    writer: SqlitePool,
    options: SqliteConnectOptions,
    busy_timeout: Duration,
    /// Commits by the writer since its last WAL checkpoint.
    commits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// When set, every [`Store::write`] first checks, in its transaction,
    /// that this lease is still held, and renews it (see `lease`).
    fence: Option<std::sync::Arc<Fenced>>,
}

/// The lease a fenced store writes under, and when a commit last renewed it.
#[derive(Debug)]
struct Fenced {
    fence: lease::Fence,
    ttl: Duration,
    /// When the last committed transaction began (its renewal is at least
    /// that recent).
    renewed: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How often [`Store::write`] tries again for the write lock while another
/// writer holds it.
const LOCK_POLL: Duration = Duration::from_millis(1);
/// Commits between two WAL checkpoints by the writer (see [`Store::write`]).
const CHECKPOINT_EVERY: usize = 16;

impl Store {
    /// Opens (creating if missing) the database with the pragmas the database
    /// contract relies on. Does not migrate.
    #[tracing::instrument(skip_all, fields(url = %settings.url))]
    pub async fn open(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        let url = settings.url.clone();
        let options = SqliteConnectOptions::from_str(&url)
            .map_err(|source| StoreError::Url {
                url: url.clone(),
                source,
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Safe with WAL: a lost last commit is re-indexed, because the
            // checkpoint commits in the same transaction as the data.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(settings.busy_timeout)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.busy_timeout + Duration::from_secs(5))
            .connect_with(options.clone())
            .await
            .map_err(|source| StoreError::Open { url, source })?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(settings.busy_timeout + Duration::from_secs(5))
            .connect_lazy_with(
                options
                    .clone()
                    .busy_timeout(Duration::ZERO)
                    // Checkpoints are the writer's, after its commits (below).
                    .pragma("wal_autocheckpoint", "0"),
            );
        Ok(Self {
            pool,
            writer,
            options,
            busy_timeout: settings.busy_timeout,
            commits: Default::default(),
            fence: None,
        })
    }

    /// This store, with every [`Store::write`] fenced by `fence`: a write
    /// transaction in which the lease is no longer held under its epoch
    /// rolls back with [`StoreError::Fenced`]; one that commits has renewed
    /// the lease for `ttl`.
    pub fn fenced(&self, fence: lease::Fence, ttl: Duration) -> Self {
        Self {
            fence: Some(std::sync::Arc::new(Fenced {
                fence,
                ttl,
                renewed: Default::default(),
            })),
            ..self.clone()
        }
    }

    /// When the last committed write of this fenced store began: its lease
    /// was renewed then, at the latest. `None` before the first.
    pub fn renewed_by_commit(&self) -> Option<std::time::Instant> {
        let fenced = self.fence.as_ref()?;
        *fenced.renewed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Reverts the most recently applied migration; returns its version, or
    /// `None` when nothing was applied.
    pub async fn revert_last(&self) -> Result<Option<i64>, StoreError> {
        let applied = self.applied_migrations().await?;
        let Some(&last) = applied.last() else {
            return Ok(None);
        };
        let target = applied.iter().rev().nth(1).copied().unwrap_or(0);
        MIGRATOR.undo(&self.pool, target).await?;
        Ok(Some(last))
    }

    /// Versions of the applied migrations, oldest first.
    pub async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let exists: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_optional(&self.pool)
        .await?;
        if exists.is_none() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success = 1 ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Opens a short write transaction with `BEGIN IMMEDIATE`, so that the
    /// write lock is taken up front (waiting up to the busy timeout) instead of
    /// failing half-way through on an upgrade from a read lock.
    pub async fn begin_immediate(&self) -> Result<WriteTx, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Runs `work` in one `BEGIN IMMEDIATE` transaction and commits it; on
    /// error everything is rolled back. A fenced store (see
    /// [`Store::fenced`]) checks and renews its lease first, in the same
    /// transaction. The connection is the writer's, held
    /// by this call; while another writer holds the lock it tries again
    /// every `LOCK_POLL`, up to the busy timeout. After a failure that may
    /// have left the connection unusable (SQLite rolls back by itself on a
    /// full disk or an I/O error, and the driver, still counting a
    /// transaction open, would then refuse every later `BEGIN` on it) it is
    /// closed, so the next attempt gets a new one.
    ///
    /// Returns the output and how long the write lock was held (from the
    /// `BEGIN` that took it to the end of the `COMMIT`).
    pub async fn write<W: TxWork>(&self, work: &W) -> Result<(W::Output, Duration), StoreError> {
        let mut conn = self.writer.acquire().await?;
        let gives_up = std::time::Instant::now() + self.busy_timeout;
        let result = async {
            let mut tx = loop {
                match conn.begin_with("BEGIN IMMEDIATE").await {
                    Ok(tx) => break tx,
                    Err(e)
                        if WriteFailure::of_sql(&e) == WriteFailure::Busy
                            && std::time::Instant::now() < gives_up =>
                    {
                        tokio::time::sleep(LOCK_POLL).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            let locked = std::time::Instant::now();
            if let Some(f) = &self.fence {
                if !lease::renew(&mut tx, &f.fence, f.ttl).await? {
                    return Err(StoreError::Fenced {
                        epoch: f.fence.epoch,
                    });
                }
            }
            let out = work.run(&mut tx).await?;
            tx.commit().await?;
            if let Some(f) = &self.fence {
                *f.renewed.lock().unwrap_or_else(|e| e.into_inner()) = Some(locked);
            }
            Ok((out, locked.elapsed()))
        }
        .await;
        match &result {
            Ok(_) => self.checkpoint_now_and_then(&mut conn).await,
            Err(e) if WriteFailure::of(e).may_poison() => conn.close_on_drop(),
            Err(_) => {}
        }
        result
    }

    /// Every `CHECKPOINT_EVERY` commits, copies the WAL back into the
    /// database (PASSIVE: it takes no lock that writers or readers wait
    /// for). Done here, after the commit, so that the WAL never grows to
    /// SQLite's auto-checkpoint size on the order API's connections, whose
    /// `INSERT` would then pay for the copy, and so that a checkpoint never
    /// counts as lock-hold time. A failed checkpoint is retried next time.
    async fn checkpoint_now_and_then(&self, conn: &mut SqliteConnection) {
        use std::sync::atomic::Ordering;
        if self.commits.fetch_add(1, Ordering::Relaxed) + 1 < CHECKPOINT_EVERY {
            return;
        }
        self.commits.store(0, Ordering::Relaxed);
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut *conn)
            .await
        {
            tracing::debug!(error = %e, "WAL checkpoint failed; retried after the next commits");
        }
    }

    /// A pooled connection, for reads outside a write transaction.
    pub async fn conn(&self) -> Result<sqlx::pool::PoolConnection<Sqlite>, StoreError> {
        Ok(self.pool.acquire().await?)
    }

    /// The pool, for reads.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Answers when the database file can be opened afresh and read, as the
    /// order API's readers would (pooled connections keep working on a file
    /// that was removed or replaced, so they prove nothing).
    pub async fn ping(&self) -> Result<(), StoreError> {
        use sqlx::Connection;
        let options = self.options.clone().create_if_missing(false);
        let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
        sqlx::query("SELECT block_number FROM sync_state LIMIT 1")
            .fetch_optional(&mut conn)
            .await?;
        conn.close().await?;
        Ok(())
    }

    /// Closes every connection, checkpointing the WAL.
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }
}

/// Current time as the ISO-8601 text the schema uses.
pub(crate) const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";
