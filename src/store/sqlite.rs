//! SQLite, the embedded default: the pool (WAL, busy timeout, foreign keys),
//! the writer's own connection and its `BEGIN IMMEDIATE`, WAL checkpoints,
//! and the embedded migrations (`migrations/sqlite/`).

use std::str::FromStr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection, SqlitePool};

use super::failure::WriteFailure;
use super::{waits, Conn, Dialect, Store, StoreError, TxWork};
use crate::config::DatabaseSettings;

/// The migrations in `migrations/sqlite/`, compiled in.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Times are ISO-8601 UTC text with milliseconds; JSON is text.
pub static DIALECT: Dialect = Dialect {
    now: "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    now_plus_ms: "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+' || ({} / 1000.0) || ' seconds')",
    from_unix: "strftime('%Y-%m-%dT%H:%M:%fZ', {}, 'unixepoch')",
    to_unix: "CAST(strftime('%s', {}) AS INTEGER)",
    to_iso: "{}",
    json_elements: "SELECT value FROM json_each({})",
    json_rows: "json_group_array(json_array({}))",
    ordered_join: "CROSS JOIN",
    index_hints: true,
    lock_rows: "",
    json_object: "json_object",
    json_text: "{}",
    now_minus_days: "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || ({}) || ' days')",
};

/// How often a write tries again for the write lock while another writer
/// holds it.
const LOCK_POLL: Duration = Duration::from_millis(1);
/// SQLite's default `wal_autocheckpoint`, in pages: a commit that leaves
/// the WAL at least this long runs a checkpoint itself, its copying and
/// fsyncs included. On the order API's connections that would be inside
/// an `INSERT` (measured on disk: 100-700 ms).
const AUTO_CHECKPOINT_PAGES: i64 = 1_000;
/// The writer checkpoints often enough that the WAL stays under this many
/// pages (see `checkpoint_now_and_then`).
const CHECKPOINT_AT_PAGES: i64 = AUTO_CHECKPOINT_PAGES / 2;
/// Commits between two of the writer's checkpoints, at first.
const FIRST_CHECKPOINT_EVERY: usize = 4;
/// Commits between two of the writer's checkpoints, at most.
const MAX_CHECKPOINT_EVERY: usize = 64;

/// An SQLite database file.
#[derive(Debug, Clone)]
pub struct Sqlite {
    pub(super) pool: SqlitePool,
    /// The one connection writes go through. It has no busy handler of
    /// SQLite's, which sleeps 1, 2, 5, 10… ms between tries and so would
    /// cost the indexer up to 10 ms after every `INSERT` of the order API's;
    /// `begin_write` polls for the lock itself, every `LOCK_POLL`.
    pub(super) writer: SqlitePool,
    options: SqliteConnectOptions,
    busy_timeout: Duration,
    /// Commits by the writer since its last WAL checkpoint.
    commits: Arc<AtomicUsize>,
    /// Commits between two checkpoints, learned from the WAL's length.
    checkpoint_every: Arc<AtomicUsize>,
    /// The writer connection's `PRAGMA data_version` before its last write
    /// (`NO_VERSION` before the first): it changes when another connection
    /// commits (`pace`'s alone rule).
    data_version: Arc<AtomicI64>,
}

/// No `data_version` read yet.
const NO_VERSION: i64 = i64::MIN;

impl Sqlite {
    /// Opens the file with the pragmas the database contract relies on;
    /// with `create`, creates it first if missing (`migrate` only: any other
    /// command on a file that is not there is a mistyped path, refused).
    pub(super) async fn open(
        settings: &DatabaseSettings,
        create: bool,
    ) -> Result<Self, StoreError> {
        let url = crate::secret::display_db_url(&settings.url);
        let options = SqliteConnectOptions::from_str(&settings.url)
            .map_err(|cause| StoreError::Url {
                url: url.clone(),
                cause,
            })?
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            // Safe with WAL: a lost last commit is re-indexed, because the
            // checkpoint commits in the same transaction as the data.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(settings.busy_timeout)
            .foreign_keys(true);
        let path = options.get_filename();
        if create {
            create_private(path);
        } else if is_file(path) && !path.exists() {
            return Err(StoreError::NoFile { url });
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.busy_timeout + Duration::from_secs(5))
            .connect_with(options.clone())
            .await
            .map_err(|cause| StoreError::Open { url, cause })?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(settings.busy_timeout + Duration::from_secs(5))
            .connect_lazy_with(
                options
                    .clone()
                    .busy_timeout(Duration::ZERO)
                    // Checkpoints are the writer's, after its commits.
                    .pragma("wal_autocheckpoint", "0"),
            );
        Ok(Self {
            pool,
            writer,
            options,
            busy_timeout: settings.busy_timeout,
            commits: Default::default(),
            data_version: Arc::new(AtomicI64::new(NO_VERSION)),
            checkpoint_every: Arc::new(AtomicUsize::new(FIRST_CHECKPOINT_EVERY)),
        })
    }

    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    pub(super) async fn revert_last(&self) -> Result<Option<i64>, StoreError> {
        let applied = self.applied_migrations().await?;
        let Some(&last) = applied.last() else {
            return Ok(None);
        };
        let target = applied.iter().rev().nth(1).copied().unwrap_or(0);
        MIGRATOR.undo(&self.pool, target).await?;
        Ok(Some(last))
    }

    pub(super) async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError> {
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

    /// Runs `work` (through `store`'s fence) in one write transaction on the
    /// writer's connection, opened with `BEGIN IMMEDIATE` so that the write
    /// lock is taken up front instead of failing half-way through on an
    /// upgrade from a read lock. While another writer holds the lock it
    /// tries again every `LOCK_POLL`, up to the busy timeout. Returns when
    /// the lock was taken and how long it was held (the checkpoint after the
    /// commit does not count: it holds no lock a writer waits for).
    ///
    /// After a commit, a WAL checkpoint now and then. After a failure that
    /// may have left the connection unusable (SQLite rolls back by itself on
    /// a full disk or an I/O error, and the driver, still counting a
    /// transaction open, would then refuse every later `BEGIN` on it) the
    /// connection is closed, so the next attempt gets a new one.
    pub(super) async fn write<W: TxWork>(
        &self,
        store: &Store,
        work: &W,
        in_flight: &waits::InFlight,
    ) -> Result<(W::Output, Instant, Duration), StoreError> {
        let mut conn = self.writer.acquire().await?;
        // Changed since our last write: another connection committed
        // (ours, all on this connection, never change it here).
        // Only read where the alone rule is on (`database.alone_after_s`).
        if store.watches_for_other_writers() {
            let version: i64 = sqlx::query_scalar("PRAGMA data_version")
                .fetch_one(&mut *conn)
                .await?;
            let before = self.data_version.swap(version, Ordering::Relaxed);
            if before != NO_VERSION && before != version {
                store.foreign_commit();
            }
        }
        let gives_up = Instant::now() + self.busy_timeout;
        let result = async {
            let mut tx = loop {
                match conn.begin_with("BEGIN IMMEDIATE").await {
                    Ok(tx) => break tx,
                    Err(e)
                        if WriteFailure::of_sql(&e) == WriteFailure::LockWait
                            && Instant::now() < gives_up =>
                    {
                        tokio::time::sleep(LOCK_POLL).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            let locked = Instant::now();
            in_flight.locked.store(true, Ordering::Relaxed);
            let out = store.fenced_run(&mut Conn::Sqlite(&mut tx), work).await?;
            tx.commit().await?;
            Ok((out, locked, locked.elapsed()))
        }
        .await;
        match &result {
            Ok(_) => self.checkpoint_now_and_then(&mut conn).await,
            Err(e) if WriteFailure::of(e).may_poison() => conn.close_on_drop(),
            Err(_) => {}
        }
        result
    }

    /// Now and then after a commit, copies the WAL back into the database
    /// (PASSIVE: it takes no lock that writers or readers wait for), outside
    /// the write lock, so that it never counts as lock-hold time. Often
    /// enough that the WAL stays under `CHECKPOINT_AT_PAGES`: the commits
    /// between two checkpoints halve when the WAL was longer and grow by one
    /// when it was under half that, so that no commit of the order API's
    /// finds it at SQLite's auto-checkpoint length and pays for the copy.
    /// A failed checkpoint is retried next time.
    async fn checkpoint_now_and_then(&self, conn: &mut SqliteConnection) {
        let every = self.checkpoint_every.load(Ordering::Relaxed);
        if self.commits.fetch_add(1, Ordering::Relaxed) + 1 < every {
            return;
        }
        self.commits.store(0, Ordering::Relaxed);
        // (busy, pages in the WAL, pages copied back)
        match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut *conn)
            .await
        {
            Ok((_, pages, _)) => {
                let next = if pages > CHECKPOINT_AT_PAGES {
                    every / 2
                } else if pages < CHECKPOINT_AT_PAGES / 2 {
                    every + 1
                } else {
                    every
                };
                let next = next.clamp(1, MAX_CHECKPOINT_EVERY);
                self.checkpoint_every.store(next, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::debug!(error = %e, "WAL checkpoint failed; retried after the next commits")
            }
        }
    }

    /// Answers when the database file can be opened afresh and read, as the
    /// order API's readers would (pooled connections keep working on a file
    /// that was removed or replaced, so they prove nothing).
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        let options = self.options.clone().create_if_missing(false);
        let mut conn = SqliteConnection::connect_with(&options).await?;
        sqlx::query("SELECT block_number FROM sync_state LIMIT 1")
            .fetch_optional(&mut conn)
            .await?;
        conn.close().await?;
        Ok(())
    }

    /// Closes every connection, checkpointing the WAL.
    pub(super) async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }
}
/// Creates the database file, if it does not exist, readable and writable
/// by its owner only, whatever the process umask: it holds every order and
/// payment. SQLite gives the `-wal` and `-shm` files the database file's
/// mode. A file that cannot be created here is left to SQLite, whose open
/// then fails with its own error.
fn create_private(path: &std::path::Path) {
    use std::os::unix::fs::OpenOptionsExt;
    if !is_file(path) {
        return;
    }
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
}

/// True when `path` names a file, not SQLite's in-memory database (an
/// empty name or `:memory:`).
fn is_file(path: &std::path::Path) -> bool {
    !path.as_os_str().is_empty() && path != std::path::Path::new(":memory:")
}
