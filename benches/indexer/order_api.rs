//! The order API's row: a backfill of the bench chain with matched orders
//! while a second process-like connection creates orders at `API_RATE`/s
//! (on SQLite with its default busy handler) and reads them back, and the
//! order API's typical reads; on SQLite at the shipped write budget and the
//! sweep's, and on PostgreSQL.

use std::time::{Duration, Instant};

use super::support::chain::{order_ref, Chain};
use super::support::db::{Backend, Db};
use serde_json::json;

use super::support::db::Postgres;
use super::{env_with, orders_for, pct, sorted};

/// One backfill of the bench chain with matched orders, while the order
/// API reads (by id, the acceptance join) and creates orders.
pub struct BackfillRun {
    pub rate: f64,
    pub blocks_per_s: f64,
    pub reads_by_id: Vec<f64>,
    pub join: Vec<f64>,
    /// The order API's INSERT latencies (ms), sorted.
    pub inserts: Vec<f64>,
    /// Its read-back-by-id latencies (ms), sorted.
    pub read_backs: Vec<f64>,
    /// The back-filled database.
    pub db: Db,
}

impl BackfillRun {
    pub fn api_row(&self) -> String {
        let (w, r) = (&self.inserts, &self.read_backs);
        format!(
            "INSERT p50 {:.2} ms p99 {:.2} ms max {:.1} ms; read by id p50 {:.3} ms p99 {:.3} ms \
             ({} orders at {API_RATE}/s); backfill {:.0} events/s",
            pct(w, 0.5),
            pct(w, 0.99),
            w.last().copied().unwrap_or(0.0),
            pct(r, 0.5),
            pct(r, 0.99),
            w.len(),
            self.rate
        )
    }
}

/// Orders the order API creates per second during the backfill.
const API_RATE: u64 = 200;

pub async fn backfill_with_api(
    chain: &Chain,
    head: u64,
    first_ref: u64,
    payments: u64,
    extra: &[(&str, &str)],
    backend: Backend,
) -> BackfillRun {
    let db = Db::on(backend).await;
    orders_for(&db, chain, payments, first_ref).await;
    let env = env_with(chain, &db, extra);
    let stop = tokio_util::sync::CancellationToken::new();
    let reads = tokio::spawn(api_reads(ApiConn::open(&db).await, payments, stop.clone()));
    let writes = tokio::spawn(api_writes(ApiConn::open(&db).await, stop.clone()));
    let (output, backfill_s) = super::timed_backfill(env, head).await;
    stop.cancel();
    let (by_id, join) = reads.await.expect("reader");
    let (inserts, read_backs) = writes.await.expect("writer");
    assert!(
        output.status.success(),
        "backfill failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stored = db.count("SELECT COUNT(*) FROM contract_events").await as f64;
    BackfillRun {
        rate: stored / backfill_s,
        blocks_per_s: head as f64 / backfill_s,
        reads_by_id: sorted(by_id),
        join: sorted(join),
        inserts: sorted(inserts),
        read_backs: sorted(read_backs),
        db,
    }
}

/// Write-budget settings the order API row is measured at besides the
/// shipped ones (`max_write_ms/write_gap_ms`; `LIQPASS_BENCH_SWEEP` to choose
/// others).
const SWEEP: &str = "2/3,4/4,5/5,10/10,3/0,60000/0";

/// The write budget's trade-off: backfill rate against the order API's
/// lock waits, at several settings.
pub async fn order_api_sweep(
    chain: &Chain,
    head: u64,
    first_ref: u64,
    payments: u64,
    table: &mut Vec<(String, String)>,
) {
    let settings = std::env::var("LIQPASS_BENCH_SWEEP").unwrap_or_else(|_| SWEEP.to_owned());
    for pair in settings.split(',').filter(|p| !p.is_empty()) {
        let (hold, gap) = pair
            .split_once('/')
            .expect("LIQPASS_BENCH_SWEEP: max_write_ms/write_gap_ms pairs, comma-separated");
        eprintln!("bench: order API at max_write_ms={hold} write_gap_ms={gap}");
        let run = backfill_with_api(
            chain,
            head,
            first_ref,
            payments,
            &[
                ("LIQPASS__DATABASE__MAX_WRITE_MS", hold),
                ("LIQPASS__DATABASE__WRITE_GAP_MS", gap),
            ],
            Backend::Sqlite,
        )
        .await;
        table.push((
            format!("order API during backfill, max_write_ms={hold} write_gap_ms={gap}"),
            run.api_row(),
        ));
    }
}

/// The order API's own connection: SQLite with the default busy handler
/// (busy timeout 5 s, as Python's sqlite3 and better-sqlite3 use), or
/// PostgreSQL.
pub(super) enum ApiConn {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

/// Runs `$body` with `$c` bound to the connection, whichever it is (the
/// statements use `$1`, `$2`…, which both read).
macro_rules! on_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            ApiConn::Sqlite($c) => $body,
            ApiConn::Postgres($c) => $body,
        }
    };
}

impl ApiConn {
    pub(super) async fn open(db: &Db) -> ApiConn {
        use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
        use sqlx::{ConnectOptions, Connection};
        match db.backend() {
            Backend::Sqlite => ApiConn::Sqlite(
                api_connection(
                    SqliteConnectOptions::new()
                        .filename(db.path())
                        .journal_mode(SqliteJournalMode::Wal)
                        .busy_timeout(Duration::from_secs(5)),
                )
                .connect()
                .await
                .expect("order API connection"),
            ),
            Backend::Postgres => ApiConn::Postgres(
                sqlx::PgConnection::connect(&db.url())
                    .await
                    .expect("order API connection"),
            ),
        }
    }
}

/// The order API's connection settings besides WAL and the busy timeout:
/// docs/database-contract.md's advice (`synchronous = NORMAL`, `wal_autocheckpoint = 10000`),
/// or with `LIQPASS_BENCH_API_CONNECTION=sqlite-defaults` SQLite's own
/// (`FULL`, 1,000 pages).
fn api_connection(
    options: sqlx::sqlite::SqliteConnectOptions,
) -> sqlx::sqlite::SqliteConnectOptions {
    use sqlx::sqlite::SqliteSynchronous;
    match std::env::var("LIQPASS_BENCH_API_CONNECTION").as_deref() {
        Err(_) | Ok("advised") => options
            .synchronous(SqliteSynchronous::Normal)
            .pragma("wal_autocheckpoint", "10000"),
        Ok("sqlite-defaults") => options,
        Ok(other) => {
            panic!("LIQPASS_BENCH_API_CONNECTION: advised or sqlite-defaults, not {other:?}")
        }
    }
}

/// The order API creating orders on its own connection: `API_RATE`
/// idempotent INSERTs a second, each read back by id.
pub(super) async fn api_writes(
    conn: ApiConn,
    stop: tokio_util::sync::CancellationToken,
) -> (Vec<f64>, Vec<f64>) {
    api_writes_at(conn, stop, Cadence::Steady).await
}

/// When the order API creates its orders.
pub(super) enum Cadence {
    /// `API_RATE` a second.
    Steady,
    /// One after a random pause of 0.1–3 s (a shop with few customers).
    Sporadic(Box<rand_chacha::ChaCha8Rng>),
}

pub(super) async fn api_writes_at(
    mut conn: ApiConn,
    stop: tokio_util::sync::CancellationToken,
    mut cadence: Cadence,
) -> (Vec<f64>, Vec<f64>) {
    let (mut inserts, mut reads) = (Vec::new(), Vec::new());
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / API_RATE));
    let mut k = 0u64;
    while !stop.is_cancelled() {
        match &mut cadence {
            Cadence::Steady => {
                tick.tick().await;
            }
            Cadence::Sporadic(rng) => {
                use rand::Rng as _;
                let pause = Duration::from_millis(rng.random_range(100..=3_000));
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.cancelled() => break,
                }
            }
        }
        k += 1;
        let id = format!("ord_api_{k}");
        let t = Instant::now();
        on_conn!(&mut conn, |c| sqlx::query(
            "INSERT INTO orders (id, order_ref, wallet_address, premium_usdc, payment_proof_id)
             VALUES ($1, $2, $3, 5000000, $4)
             ON CONFLICT (wallet_address, payment_proof_id) WHERE payment_proof_id IS NOT NULL
             DO NOTHING",
        )
        .bind(&id)
        .bind(format!("{:#x}", order_ref(9_000_000_000 + k)))
        .bind(format!(
            "{:#x}",
            alloy::primitives::Address::repeat_byte(0xab)
        ))
        .bind(format!("proof_{k}"))
        .execute(&mut *c)
        .await
        .map(|_| ())
        .expect("order API INSERT"));
        inserts.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let found: Option<(String,)> = on_conn!(&mut conn, |c| sqlx::query_as(
            "SELECT status FROM orders WHERE id = $1"
        )
        .bind(&id)
        .fetch_optional(&mut *c)
        .await
        .expect("order API read"));
        assert!(found.is_some(), "the order just created is there");
        reads.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    (inserts, reads)
}

/// The order API's typical reads, on their own connection, until stopped.
async fn api_reads(
    mut conn: ApiConn,
    orders: u64,
    stop: tokio_util::sync::CancellationToken,
) -> (Vec<f64>, Vec<f64>) {
    let (mut by_id, mut join) = (Vec::new(), Vec::new());
    let mut k = 0u64;
    while !stop.is_cancelled() {
        k += 7919;
        let t = Instant::now();
        let _: Option<(String, String)> = on_conn!(&mut conn, |c| sqlx::query_as(
            "SELECT id, payment_status FROM orders WHERE id = $1"
        )
        .bind(format!("ord_{}", k % orders.max(1)))
        .fetch_optional(&mut *c)
        .await
        .expect("read by id"));
        by_id.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        on_conn!(&mut conn, |c| sqlx::query(
            "SELECT o.id, o.status, ce.event_name, ce.amount_usdc
             FROM orders o LEFT JOIN contract_events ce ON o.id = ce.order_id
             WHERE o.status IN ('pending', 'paid') LIMIT 10",
        )
        .fetch_all(&mut *c)
        .await
        .map(|_| ())
        .expect("acceptance join"));
        join.push(t.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    (by_id, join)
}

/// The PostgreSQL rows: the same backfill (with the order API creating and
/// reading orders) on PostgreSQL, against `sqlite`'s run of it.
pub async fn backend_rows(
    chain: &Chain,
    head: u64,
    first_ref: u64,
    payments: u64,
    sqlite: &BackfillRun,
    table: &mut Vec<(String, String)>,
    out: &mut serde_json::Map<String, serde_json::Value>,
) {
    let pg = backfill_with_api(chain, head, first_ref, payments, &[], Postgres).await;
    table.push((
        "backfill on PostgreSQL (binary, from launch, matched orders)".into(),
        format!(
            "{:.0} events/s: {:.0}% of SQLite's {:.0} events/s at the shipped write budget \
             (target >= 70%)",
            pg.rate,
            100.0 * pg.rate / sqlite.rate,
            sqlite.rate
        ),
    ));
    table.push((
        "order API during backfill on PostgreSQL (target INSERT p99 < 5 ms, max < 50 ms)".into(),
        pg.api_row(),
    ));
    out.insert("postgres_backfill_events_per_s".into(), json!(pg.rate));
    out.insert(
        "postgres_api_insert_p99_ms".into(),
        json!(pct(&pg.inserts, 0.99)),
    );
    out.insert(
        "postgres_api_insert_max_ms".into(),
        json!(pg.inserts.last()),
    );
}
