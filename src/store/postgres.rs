//! PostgreSQL: the pool (its connections in `database.schema`), plain
//! `BEGIN` write transactions (MVCC: the order API's reads and `INSERT`s do
//! not wait for them), and the embedded migration set
//! (`migrations/postgres/`, the same database contract as
//! `migrations/sqlite/`), applied under an advisory lock.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{Connection, PgConnection, PgPool};

use super::{waits, Conn, Dialect, Store, StoreError, TxWork};
use crate::config::DatabaseSettings;
use crate::secret::display_db_url;

/// The migrations in `migrations/postgres/`, compiled in.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Times are `timestamptz`; JSON columns are `jsonb`.
pub static DIALECT: Dialect = Dialect {
    now: "now()",
    now_plus_ms: "(now() + {} * interval '1 millisecond')",
    from_unix: "to_timestamp({})",
    // floor: a cast of the numeric epoch would round, and SQLite's
    // strftime('%s') truncates (an expiry at T.6 s is T on both).
    to_unix: "CAST(floor(extract(epoch FROM {})) AS BIGINT)",
    to_iso: "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
    json_elements: "SELECT jsonb_array_elements_text({})",
    json_rows: "COALESCE(json_agg(json_build_array({})), '[]')::text",
    ordered_join: "JOIN",
    index_hints: false,
    lock_rows: " FOR NO KEY UPDATE",
    json_object: "jsonb_build_object",
    json_text: "{}::text",
    now_minus_days: "(now() - ({}) * interval '1 day')",
};

/// The transaction-scoped advisory lock every migration run holds, so that
/// two replicas starting at once apply each migration once ("liqpass" + 1).
const MIGRATION_LOCK: i64 = 0x6c69_7170_6173_7301;

/// Whether `url` names a PostgreSQL database.
pub fn is_url(url: &str) -> bool {
    crate::secret::is_postgres_url(url)
}

/// A PostgreSQL database, one schema of it.
#[derive(Debug, Clone)]
pub struct Postgres {
    pub(super) pool: PgPool,
    /// Rows our commits wrote, and how many it takes for the next
    /// `ANALYZE` (see [`Postgres::analyze_as_it_grows`]).
    written: Arc<AtomicUsize>,
    next_analyze: Arc<AtomicUsize>,
    /// An `ANALYZE` is running (one at a time).
    analyzing: Arc<AtomicBool>,
    /// The first write's `ANALYZE` was done.
    analyzed_once: Arc<AtomicBool>,
    /// `database.busy_timeout_ms`: the bound of a read outside a term.
    pub(super) busy_timeout: Duration,
}

/// The tables whose statistics the indexer's plans depend on.
const ANALYZED: &str = "ANALYZE contract_events, orders, order_audit, block_hashes";
/// Rows written before the second `ANALYZE` (the first precedes the first
/// commit), or a tenth of the events already stored when more; each later
/// one waits for the rows written to double.
const FIRST_ANALYZE_ROWS: usize = 1_000;

impl Postgres {
    /// Connects (failing at once when the server cannot be reached or
    /// refuses the credentials, within the pool's acquire timeout) and
    /// checks that `database.schema` exists. The schema is set as the
    /// connections' `search_path`, as a startup parameter, only when
    /// unqualified names do not already resolve to it (behind PgBouncer set
    /// it on the role instead: docs/operations.md).
    pub(super) async fn open(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        let url = display_db_url(&settings.url);
        let mut options =
            PgConnectOptions::from_str(&settings.url).map_err(|cause| StoreError::Url {
                url: url.clone(),
                cause,
            })?;
        // In `pg_stat_activity`, for the operator (and the tests).
        options = options.application_name("liqpass-indexer");
        options = never_clear_text_by_default(options);
        // One connection first, made directly: a pool retries a refused
        // connection until its timeout and then reports only the timeout.
        // Bounded like the pool's: a host that drops packets must not
        // leave the command hanging for minutes of SYN retries.
        let open = |cause| StoreError::Open {
            url: url.clone(),
            cause,
        };
        let wait = settings.busy_timeout + Duration::from_secs(5);
        let mut first = tokio::time::timeout(wait, PgConnection::connect_with(&options))
            .await
            .map_err(|_| open(sqlx::Error::PoolTimedOut))?
            .map_err(open)?;
        let (exists, current): (bool, Option<String>) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1), current_schema()",
        )
        .bind(&settings.schema)
        .fetch_one(&mut first)
        .await?;
        first.close().await?;
        if !exists {
            return Err(StoreError::NoSchema {
                url,
                schema: settings.schema.clone(),
            });
        }
        // The tables go where unqualified names resolve. When that is not
        // the schema already (the role's `search_path`, which also works
        // behind PgBouncer), it is set as a startup parameter; a role's own
        // schema (`$user`, first on the default path) would otherwise
        // quietly take the tables meant for `public`.
        if current.as_deref() != Some(settings.schema.as_str()) {
            options = options.options([("search_path", settings.schema.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.busy_timeout + Duration::from_secs(5))
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            written: Default::default(),
            next_analyze: Default::default(),
            analyzing: Default::default(),
            analyzed_once: Default::default(),
            busy_timeout: settings.busy_timeout,
        })
    }

    /// Runs `work` (through `store`'s fence) in one transaction at `READ
    /// COMMITTED`: its row locks (the lease row, the orders it pays) are
    /// the only waits it can cause, and only to another writer of the same
    /// rows. Returns when it began and how long it held its locks.
    pub(super) async fn write<W: TxWork>(
        &self,
        store: &Store,
        work: &W,
        in_flight: &waits::InFlight,
    ) -> Result<(W::Output, Instant, Duration), StoreError> {
        if !self.analyzed_once.swap(true, Ordering::AcqRel) {
            // Before the first write: tables never analyzed (a fresh
            // database, or orders the API inserted in bulk) are planned as
            // near-empty, and a first catch-up transaction of thousands of
            // rows would run its lookups as nested loops over them.
            // A database that holds a history already: the next ANALYZE
            // waits until a tenth of it has been written again (as
            // autovacuum's scale factor), not for 1,000 rows (an ANALYZE
            // of a million-row table reads as much as thousands of writes).
            // One that could not run (autovacuum holds its lock) is tried
            // again after 1,000 rows.
            let next = if analyze(&self.pool, 0).await {
                FIRST_ANALYZE_ROWS.max(stored_events(&self.pool).await / 10)
            } else {
                FIRST_ANALYZE_ROWS
            };
            self.next_analyze.store(next, Ordering::Relaxed);
        }
        let done = async {
            let mut tx = self
                .pool
                .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
                .await?;
            // Every statement of a batch looks rows up by key, through an
            // index; statistics of tables growing inside a long catch-up
            // lag behind, and a plan that scans instead (a nested loop over
            // the whole table per key) takes seconds. Only penalised, not
            // forbidden: a statement with no usable index still runs.
            let mut settings = vec![("enable_seqscan", "off".to_owned())];
            if let Some(ttl) = store.fence_ttl() {
                // A leader paused or cut off inside this transaction must
                // not hold its locks (the rows it wrote; at its end the
                // lease row, and with it every takeover) past its lease:
                // the server ends the session, the locks go, and the
                // transaction is rolled back.
                settings.push(("idle_in_transaction_session_timeout", millis(ttl / 2)));
                settings.extend(bounds(ttl / 2));
            }
            let pid = set_local(&mut tx, &settings).await?;
            in_flight.pid.store(pid, Ordering::Relaxed);
            let began = Instant::now();
            let out = store.fenced_run(&mut Conn::Postgres(&mut tx), work).await?;
            tx.commit().await?;
            Ok((out, began, began.elapsed()))
        }
        .await
        .map_err(connection_lost);
        if done.is_ok() {
            self.analyze_as_it_grows(work.rows());
        }
        done
    }

    /// Refreshes the planner's statistics after the first commit and then
    /// whenever the rows written have doubled since. A catch-up fills
    /// `contract_events` far faster than autovacuum re-analyzes it (a
    /// minute apart at best), and with statistics of a near-empty table the
    /// planner turns the batch's lookups by key into nested loops over the
    /// whole table (5.2 s for one chunk of 400 keys against 100k rows,
    /// measured; 1.5 ms once analyzed). `ANALYZE` samples, takes no lock
    /// that readers or writers wait for, and is skipped with a warning by
    /// the server when the role does not own the tables.
    fn analyze_as_it_grows(&self, rows: usize) {
        let written = self.written.fetch_add(rows, Ordering::Relaxed) + rows;
        if written < self.next_analyze.load(Ordering::Relaxed)
            || self.analyzing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        self.next_analyze
            .store((written * 2).max(FIRST_ANALYZE_ROWS), Ordering::Relaxed);
        let (pool, analyzing) = (self.pool.clone(), self.analyzing.clone());
        // Beside the writes, never in their way: its own task, and a lock
        // it waits for at most briefly (a manual VACUUM or an index build
        // holds the one ANALYZE needs; it is tried again as the tables grow).
        let next_analyze = self.next_analyze.clone();
        tokio::spawn(async move {
            if !analyze(&pool, written).await {
                // Not run (its lock is held): again after 1,000 more rows,
                // not after the rows double.
                next_analyze.store(written + FIRST_ANALYZE_ROWS, Ordering::Relaxed);
            }
            analyzing.store(false, Ordering::Release);
        });
    }

    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        migrate(&mut *self.pool.acquire().await?).await
    }

    pub(super) async fn revert_last(&self) -> Result<Option<i64>, StoreError> {
        revert_last(&mut *self.pool.acquire().await?).await
    }

    pub(super) async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError> {
        applied(&mut *self.pool.acquire().await?).await
    }

    /// A transaction begun with `begin` in which no statement runs past
    /// `limit`, and a lock wait ends a little before that, as itself
    /// (55P03), not as a statement timeout. `SET LOCAL`: behind a
    /// transaction-pooling PgBouncer too.
    pub(super) async fn bounded(
        &self,
        begin: &str,
        limit: Duration,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        let mut tx = self.pool.begin_with(begin.to_owned()).await?;
        set_local(&mut tx, &bounds(limit)).await?;
        Ok(tx)
    }

    /// The sessions holding a lock server process `pid` waits for
    /// (`pg_blocking_pids`), asked on another pooled connection within a
    /// second; `None` when it waits for none, or no answer came.
    pub(super) async fn blockers(&self, pid: i32) -> Option<Vec<i32>> {
        let asked = sqlx::query_scalar::<_, Vec<i32>>("SELECT pg_blocking_pids($1)")
            .bind(pid)
            .fetch_one(&self.pool);
        match tokio::time::timeout(Duration::from_secs(1), asked).await {
            Ok(Ok(pids)) if !pids.is_empty() => Some(pids),
            _ => None,
        }
    }

    /// Answers when a pooled connection (a new one if none is idle; the
    /// pool tests it first) reads the contract.
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query("SELECT block_number FROM sync_state LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
        Ok(())
    }
}

/// TLS as libpq's `sslmode` says (`verify-full` with `sslrootcert`,
/// `verify-ca`, `require`, `disable`), with one change: `prefer`, said or
/// implied (no `sslmode`), is `require` over TCP. libpq's `prefer` falls
/// back to clear text when a server refuses TLS, and sends the password
/// over it to whatever answered; the indexer does that only when the URL
/// says `sslmode=disable` (or `allow`). A Unix socket has no TLS, and needs
/// none.
fn never_clear_text_by_default(options: PgConnectOptions) -> PgConnectOptions {
    if matches!(options.get_ssl_mode(), PgSslMode::Prefer) && options.get_socket().is_none() {
        options.ssl_mode(PgSslMode::Require)
    } else {
        options
    }
}

/// Applies every pending migration in one transaction holding
/// `pg_advisory_xact_lock` (released at commit, so it works behind a
/// transaction-pooling PgBouncer); a replica that waited finds nothing left
/// to do.
pub async fn migrate(conn: &mut PgConnection) -> Result<(), StoreError> {
    let mut tx = locked(conn).await?;
    MIGRATOR.run_direct(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Reverts the most recently applied migration, under the same lock;
/// returns its version, or `None` when nothing was applied.
pub async fn revert_last(conn: &mut PgConnection) -> Result<Option<i64>, StoreError> {
    let mut tx = locked(conn).await?;
    let applied = applied(&mut tx).await?;
    let Some(&last) = applied.last() else {
        return Ok(None);
    };
    let target = applied.iter().rev().nth(1).copied().unwrap_or(0);
    MIGRATOR.undo(&mut *tx, target).await?;
    tx.commit().await?;
    Ok(Some(last))
}

/// Versions of the applied migrations, oldest first.
async fn applied(conn: &mut PgConnection) -> Result<Vec<i64>, StoreError> {
    let table: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    if !table {
        return Ok(Vec::new());
    }
    Ok(
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&mut *conn)
            .await?,
    )
}

/// The planner's estimate of the rows of `contract_events` (0 when it has
/// none, or cannot be read).
async fn stored_events(pool: &PgPool) -> usize {
    let estimate: Result<Option<f32>, _> = sqlx::query_scalar(
        "SELECT reltuples FROM pg_class WHERE oid = to_regclass('contract_events')",
    )
    .fetch_optional(pool)
    .await;
    match estimate {
        Ok(Some(rows)) if rows > 0.0 => rows as usize,
        _ => 0,
    }
}

/// `ANALYZE` of the indexer's tables, waiting at most briefly for its lock
/// (a manual VACUUM or an index build holds the one it needs; it is tried
/// again as the tables grow). Logged at debug, never an error of a write;
/// returns whether it ran.
async fn analyze(pool: &PgPool, written: usize) -> bool {
    let started = Instant::now();
    let analyzed = async {
        let mut tx = pool.begin().await?;
        set_local(
            &mut tx,
            &[("lock_timeout", millis(Duration::from_millis(200)))],
        )
        .await?;
        sqlx::query(ANALYZED).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok::<_, StoreError>(())
    };
    match analyzed.await {
        Ok(()) => {
            tracing::debug!(
                rows = written,
                ms = started.elapsed().as_millis() as u64,
                "refreshed the planner's statistics"
            );
            true
        }
        Err(e) => {
            tracing::debug!(error = %e, "ANALYZE failed; tried again after 1,000 rows");
            false
        }
    }
}

/// A driver error that means the connection is gone (the socket failed,
/// TLS or the protocol broke, the pool closed) as [`StoreError::Connection`],
/// so that it is counted and shown as that, not as a disk's I/O error.
fn connection_lost(e: StoreError) -> StoreError {
    match e {
        StoreError::Sql(
            e @ (sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed),
        ) => StoreError::Connection(e),
        other => other,
    }
}

/// Sets each `(setting, value)` for the rest of the transaction
/// (`set_config(…, true)`, i.e. `SET LOCAL`), all in one round trip; returns
/// the session's server process id (`pg_backend_pid`), by which the
/// lock-wait watch asks who blocks it.
pub(super) async fn set_local(
    conn: &mut PgConnection,
    settings: &[(&str, String)],
) -> Result<i32, StoreError> {
    let sets: Vec<String> = (0..settings.len())
        .map(|i| format!("set_config(${}, ${}, true)", 2 * i + 1, 2 * i + 2))
        .collect();
    let sql = format!("SELECT pg_backend_pid(), {}", sets.join(" || "));
    let mut q = sqlx::query_as::<_, (i32, String)>(&sql);
    for (name, value) in settings {
        q = q.bind(*name).bind(value);
    }
    Ok(q.fetch_one(&mut *conn).await?.0)
}

/// The settings that bound a transaction's statements by `limit`: a lock
/// wait ends a little earlier, as itself (55P03, `cause="lock_wait"`), not
/// as a statement timeout (57014).
fn bounds(limit: Duration) -> [(&'static str, String); 2] {
    [
        ("lock_timeout", millis(limit * 9 / 10)),
        ("statement_timeout", millis(limit)),
    ]
}

/// A duration as a PostgreSQL time setting (`250ms`; at least 1 ms, since
/// 0 turns a timeout off).
pub(super) fn millis(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// A transaction holding the migration lock until it ends.
async fn locked(
    conn: &mut PgConnection,
) -> Result<sqlx::Transaction<'_, sqlx::Postgres>, StoreError> {
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}
