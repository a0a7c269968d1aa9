//! `make bench`: throughput, latency and memory of liqpass-indexer against
//! the physical limits of the same machine and the same anvil chain.
//!
//! Options (after `--`): `--payments N` (default 100000), `--blocks N`
//! (default 10000), `--gap N` (empty blocks for the catch-up run, default
//! 100000: anvil mines them ever more slowly, 17 min for 100k here, once),
//! `--big N` (events for the memory run, default 1000000; 0 skips it),
//! `--live N` (live payments, default 1000), `--json FILE`, `--only
//! order-api` (only the order API's lock waits during a backfill, at the
//! shipped write budget and at the others of `order_api_sweep`), `--only
//! failover` (only the failover rows, on each backend: leader `kill -9` to
//! the standby's first commit), `--only backends` (only the backfill and
//! order API rows on SQLite and on PostgreSQL, the suite's own throwaway
//! cluster), `--only history` (only the history rows: lock hold and the
//! order API's inserts on an empty database and on one holding a million
//! payments, each backend), `--only wal` (only the WAL pages written per
//! payment: `indexer/wal.rs`), `--only shop` (only the alone and WAL rows
//! on the shop chain: 20,000 payments, 100 a block, one transaction each,
//! random refs: `indexer/shop.rs`).
//! Generated chains are cached as anvil state dumps (gzip-compressed JSON,
//! as anvil_dumpState gives it) under target/bench.

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "indexer/alone.rs"]
mod alone;
#[path = "indexer/failover.rs"]
mod failover;
#[path = "indexer/gap.rs"]
mod gap;
#[path = "indexer/history.rs"]
mod history;
#[path = "indexer/live.rs"]
mod live;
#[path = "indexer/order_api.rs"]
mod order_api;
#[path = "indexer/scale.rs"]
mod scale;
#[path = "indexer/shop.rs"]
mod shop;
#[path = "indexer/wal.rs"]
mod wal;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use alloy::providers::ext::AnvilApi;
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use liqpass_indexer::chain::decode;
use liqpass_indexer::domain::{MatchStatus, Scope};
use liqpass_indexer::store::events::{self, NewEvent};
use live::live;
use order_api::{backfill_with_api, order_api_sweep};
use serde_json::json;
use support::chain::{order_ref, Chain};
use support::daemon::{env_for, Daemon};
use support::db::Db;
use support::db::Sqlite;

/// SQLite's writes always paced: the alone rule off (`alone.rs`, `wal.rs`).
const PACED: &[(&str, &str)] = &[("LIQPASS__DATABASE__ALONE_AFTER_S", "0")];
/// SQLite's writes unbounded: no budget, no gap, the alone rule off.
const UNBOUNDED: &[(&str, &str)] = &[
    ("LIQPASS__DATABASE__ALONE_AFTER_S", "0"),
    ("LIQPASS__DATABASE__MAX_WRITE_MS", "60000"),
    ("LIQPASS__DATABASE__WRITE_GAP_MS", "0"),
];

/// Passes of the raw fetch; the fastest is the limit.
const RAW_PASSES: usize = 3;

struct Args {
    payments: u64,
    blocks: u64,
    big: u64,
    live: u64,
    gap: u64,
    json: Option<PathBuf>,
    only_order_api: bool,
    only_failover: bool,
    only_backends: bool,
    only_history: bool,
    only_alone: bool,
    only_wal: bool,
    only_shop: bool,
    /// `--only` a provider-scale row (`scale`), or all of them.
    only_scale: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        payments: 100_000,
        blocks: 10_000,
        big: 1_000_000,
        live: 1_000,
        gap: 100_000,
        json: None,
        only_order_api: false,
        only_failover: false,
        only_backends: false,
        only_history: false,
        only_alone: false,
        only_wal: false,
        only_shop: false,
        only_scale: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
                .clone()
        };
        match flag.as_str() {
            "--payments" => a.payments = value().parse().expect("--payments N"),
            "--blocks" => a.blocks = value().parse().expect("--blocks N"),
            "--big" => a.big = value().parse().expect("--big N"),
            "--live" => a.live = value().parse().expect("--live N"),
            "--gap" => a.gap = value().parse().expect("--gap N"),
            "--json" => a.json = Some(value().into()),
            "--only" => match value().as_str() {
                "order-api" => a.only_order_api = true,
                "failover" => a.only_failover = true,
                "backends" => a.only_backends = true,
                "history" => a.only_history = true,
                "alone" => a.only_alone = true,
                "wal" => a.only_wal = true,
                "shop" => a.only_shop = true,
                row @ ("providers" | "provider-coinbase" | "provider-coinbase-unset"
                | "provider-generous" | "provider-16m" | "dense-latency" | "near-head") => {
                    a.only_scale = Some(row.into())
                }
                other => panic!(
                    "--only takes order-api, failover, backends, history, alone, wal, shop, providers, provider-coinbase, \
                     provider-coinbase-unset, provider-generous, provider-16m, dense-latency or \
                     near-head, not {other}"
                ),
            },
            "--bench" => {}
            other => panic!("unknown option {other}"),
        }
    }
    a
}

fn cache_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    dir
}

/// A chain holding `payments` PremiumPaid logs over `blocks` blocks, from the
/// cache when it exists.
async fn chain_with(payments: u64, blocks: u64, first_ref: u64) -> Chain {
    chain_after(0, payments, blocks, first_ref).await
}

/// The same, the payments starting after `skip` empty blocks (room below
/// them for a bulk-loaded history).
async fn chain_after(skip: u64, payments: u64, blocks: u64, first_ref: u64) -> Chain {
    // --prune-history: without it anvil keeps the state of every block it
    // mines and spills them to ~/.foundry/anvil/tmp (hundreds of MB per
    // thousand blocks on this chain; never removed when anvil is killed).
    let args = ["--gas-limit", "1000000000", "--prune-history"];
    let after = if skip > 0 {
        format!("after-{skip}-")
    } else {
        String::new()
    };
    let cache = cache_dir().join(format!(
        "chain-{after}{payments}-{blocks}-{first_ref}.json.gz"
    ));
    if cache.exists() {
        let chain = load(&cache, &args).await;
        if chain.head().await >= skip + blocks {
            eprintln!("chain: loaded {}", cache.display());
            return chain;
        }
        eprintln!("chain: {} is short; regenerating", cache.display());
    }
    let chain = Chain::start_with(&args).await;
    let started = Instant::now();
    if skip > 0 {
        chain.mine(skip).await;
    }
    let per_block = payments.div_ceil(blocks).max(1);
    let mut made = 0;
    while made < payments {
        let n = per_block.min(payments - made);
        chain
            .emit_many(chain.buyers[0], order_ref(first_ref + made), n, 5_000_000)
            .await;
        made += n;
        if made % (payments / 10).max(1) < n {
            eprintln!(
                "chain: {made}/{payments} logs ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let head = chain.head().await;
    if head < skip + blocks {
        chain.mine(skip + blocks - head).await;
    }
    eprintln!(
        "chain: {payments} logs over {} blocks generated in {:.1} s",
        chain.head().await,
        started.elapsed().as_secs_f64()
    );
    save(&chain, &cache).await;
    chain
}

/// Saves the chain's state for `load`: anvil_dumpState answers
/// gzip-compressed JSON, kept as it comes.
async fn save(chain: &Chain, cache: &std::path::Path) {
    let state = chain.provider.anvil_dump_state().await.expect("dump state");
    let partial = cache.with_extension("partial");
    std::fs::write(&partial, &state).expect("write the state");
    std::fs::rename(&partial, cache).expect("state file in place");
}

/// Starts anvil on a cached state: `anvil --load-state` reads plain JSON
/// (and, unlike `anvil_loadState`, has no request-size limit), so the state
/// is decompressed to a temp file (`$TMPDIR`) removed once anvil has read it.
async fn load(cache: &std::path::Path, args: &[&str]) -> Chain {
    use std::process::Command;
    let json = tempfile::Builder::new()
        .suffix(".json")
        .tempfile()
        .expect("temp file for the state")
        .into_temp_path();
    let out = std::fs::File::create(&json).expect("state file");
    let status = Command::new("gzip")
        .arg("-dc")
        .arg(cache)
        .stdout(out)
        .status()
        .expect("gzip (Debian package gzip) decompresses the state");
    assert!(status.success(), "gzip -dc {} failed", cache.display());
    let chain = Chain::load(&json, args).await;
    json.close().expect("remove the decompressed state");
    chain
}

/// Orders for every payment, inserted as the order API would (batched).
async fn orders_for(db: &Db, chain: &Chain, n: u64, first_ref: u64) {
    orders_with(db, chain, n, first_ref, Refs::Counted).await
}

/// How a bench chain's order refs, and their orders' ids, are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refs {
    /// `order_ref(n)` and `ord_<i>`: consecutive, as `emitMany` emits them
    /// (the 100k chain).
    Counted,
    /// keccak256 of `order_ref(n)`, and an id from it: random, as a shop's
    /// are (the shop chain, `shop.rs`).
    Hashed,
}

impl Refs {
    fn order_ref(self, n: u64) -> alloy::primitives::B256 {
        match self {
            Refs::Counted => order_ref(n),
            Refs::Hashed => alloy::primitives::keccak256(order_ref(n)),
        }
    }

    fn order_id(self, i: u64, order_ref: alloy::primitives::B256) -> String {
        match self {
            Refs::Counted => format!("ord_{i}"),
            Refs::Hashed => format!("ord_{}", &format!("{order_ref:x}")[..32]),
        }
    }
}

/// A pending order of `5_000_000` micro-USDC from the chain's first buyer
/// for each of the refs `first_ref..first_ref + n`.
async fn orders_with(db: &Db, chain: &Chain, n: u64, first_ref: u64, refs: Refs) {
    let wallet = format!("{:#x}", chain.buyers[0]);
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        on_pool!(db, |p| {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO orders (id, order_ref, wallet_address, premium_usdc) ",
            );
            q.push_values(chunk, |mut row, i| {
                let r = refs.order_ref(first_ref + i);
                row.push_bind(refs.order_id(*i, r))
                    .push_bind(format!("{r:#x}"))
                    .push_bind(wallet.clone())
                    .push_bind(5_000_000i64);
            });
            q.build().execute(p).await.expect("orders");
        });
    }
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v
}

fn env_with(chain: &Chain, db: &Db, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut env = env_for(chain, db);
    // The shipped write lease, not the tests' short one.
    env.remove("LIQPASS__HA__LEASE_TTL_MS");
    env.remove("LIQPASS__HA__RENEW_INTERVAL_MS");
    env.insert("LIQPASS__LOG__LEVEL".into(), "warn".into());
    env.insert("LIQPASS__CHAIN__CONFIRMATIONS".into(), "1".into());
    env.insert("LIQPASS__CHAIN__REORG_WINDOW".into(), "64".into());
    // As deploy/ runs it (systemd unit, Dockerfile).
    env.insert("MALLOC_ARENA_MAX".into(), "1".into());
    for (k, v) in extra {
        env.insert((*k).into(), (*v).into());
    }
    env
}

/// `backfill --from 0 --to head` with `env`, run to its end: its output and
/// the seconds it took from launch.
async fn timed_backfill(env: BTreeMap<String, String>, head: u64) -> (std::process::Output, f64) {
    timed_backfill_range(env, 0, head).await
}

/// `backfill --from from --to to` with `env`, run to its end: its output
/// and the seconds it took from launch.
async fn timed_backfill_range(
    env: BTreeMap<String, String>,
    from: u64,
    to: u64,
) -> (std::process::Output, f64) {
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || {
        let (from, to) = (from.to_string(), to.to_string());
        support::daemon::command(&env, &["backfill", "--from", &from, "--to", &to])
    })
    .await
    .expect("backfill task");
    (output, started.elapsed().as_secs_f64())
}

/// Waits until the checkpoint reaches `block`; fails at once if the daemon
/// exits first.
async fn checkpoint_at_least(daemon: &mut Daemon, db: &Db, block: u64, timeout: Duration) {
    support::wait_for("checkpoint", timeout, || {
        assert_running(daemon);
        async move { (db.checkpoint().await >= Some(block as i64)).then_some(()) }
    })
    .await;
}

/// Panics, with the daemon's log, when it is no longer running.
fn assert_running(daemon: &mut Daemon) {
    if let Some(status) = daemon.child.try_wait().expect("try_wait") {
        panic!("the daemon exited ({status}):\n{}", daemon.logs());
    }
}

#[tokio::main]
async fn main() {
    let a = args();
    let mut table: Vec<(String, String)> = Vec::new();
    let mut out = serde_json::Map::new();
    if a.only_failover {
        failover::rows(&mut table, &mut out).await;
        print_table(&a, &table);
        return;
    }

    if a.only_history {
        history::rows(&mut table, &mut out).await;
        print_table(&a, &table);
        return;
    }

    if a.only_shop {
        shop::rows(&mut table).await;
        print_table(&a, &table);
        return;
    }

    if let Some(only) = &a.only_scale {
        scale_rows(&a, Some(only.as_str()), &mut table).await;
        print_table(&a, &table);
        return;
    }

    let first_ref = 1_000_000u64;
    let chain = chain_with(a.payments, a.blocks, first_ref).await;
    let head = chain.head().await;
    let scope = Scope {
        chain_id: 31337,
        contract: chain.checkout,
    };

    if a.only_order_api {
        let run = backfill_with_api(&chain, head, first_ref, a.payments, &[], Sqlite).await;
        table.push(("order API during backfill (defaults)".into(), run.api_row()));
        order_api_sweep(&chain, head, first_ref, a.payments, &mut table).await;
        print_table(&a, &table);
        return;
    }
    if a.only_alone {
        alone::rows(
            &chain,
            head,
            first_ref,
            a.payments,
            Refs::Counted,
            &mut table,
        )
        .await;
        alone::sporadic_row(&chain, head, first_ref, a.payments, &mut table).await;
        print_table(&a, &table);
        return;
    }
    if a.only_wal {
        wal::rows(
            &chain,
            head,
            a.payments,
            a.blocks,
            first_ref,
            Refs::Counted,
            &mut table,
        )
        .await;
        print_table(&a, &table);
        return;
    }
    if a.only_backends {
        let sqlite = backfill_with_api(&chain, head, first_ref, a.payments, &[], Sqlite).await;
        order_api::backend_rows(
            &chain, head, first_ref, a.payments, &sqlite, &mut table, &mut out,
        )
        .await;
        print_table(&a, &table);
        return;
    }

    eprintln!("bench: raw fetch");
    // 1. Raw fetch limit: the same getLogs ranges, results discarded; the
    // best of RAW_PASSES passes (anvil's rate varies between passes).
    let filter = Filter::new()
        .address(chain.checkout)
        .event_signature(decode::topics());
    let mut raw_s = f64::INFINITY;
    let mut raw_logs = Vec::new();
    for _ in 0..RAW_PASSES {
        let started = Instant::now();
        let mut logs = Vec::new();
        let mut from = 0;
        while from <= head {
            let to = (from + 1999).min(head);
            logs.extend(
                chain
                    .provider
                    .get_logs(&filter.clone().from_block(from).to_block(to))
                    .await
                    .expect("getLogs"),
            );
            from = to + 1;
        }
        raw_s = raw_s.min(started.elapsed().as_secs_f64());
        raw_logs = logs;
    }
    let raw_rate = raw_logs.len() as f64 / raw_s;
    table.push((
        format!("raw fetch limit (getLogs, 2000-block ranges, best of {RAW_PASSES})"),
        format!(
            "{:.0} events/s ({} logs in {raw_s:.2} s)",
            raw_rate,
            raw_logs.len()
        ),
    ));
    out.insert("raw_fetch_events_per_s".into(), json!(raw_rate));

    eprintln!("bench: store limit");
    // 2. Store limit: the same rows, batched transactions, no RPC.
    let store_db = Db::new().await;
    let payments: Vec<_> = raw_logs
        .iter()
        .filter_map(|l| decode::decode(l).ok())
        .collect();
    let started = Instant::now();
    for chunk in payments.chunks(20_000) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|p| NewEvent {
                payment: p,
                status: MatchStatus::UnknownOrder,
                order_id: None,
            })
            .collect();
        let mut tx = store_db.store.begin().await.expect("tx");
        events::upsert(&mut tx.conn(), &scope, &rows)
            .await
            .expect("insert");
        tx.commit().await.expect("commit");
    }
    let store_rate = payments.len() as f64 / started.elapsed().as_secs_f64();
    table.push((
        "store limit (batched inserts, no RPC)".into(),
        format!("{store_rate:.0} rows/s"),
    ));
    out.insert("store_rows_per_s".into(), json!(store_rate));
    drop(raw_logs);

    // Single-row write transactions (BEGIN IMMEDIATE .. COMMIT), WAL + NORMAL.
    let one = Db::new().await;
    one.insert_order("ord_one", order_ref(1), alloy::primitives::Address::ZERO, 1)
        .await;
    let mut commits = Vec::new();
    for k in 0..1_000 {
        let t = Instant::now();
        let mut tx = one
            .store
            .sqlite_pool()
            .expect("an SQLite store")
            .begin_with("BEGIN IMMEDIATE")
            .await
            .expect("tx");
        sqlx::query("UPDATE orders SET updated_at = ? WHERE id = 'ord_one'")
            .bind(format!("2030-01-01T00:00:{:02}.000Z", k % 60))
            .execute(&mut *tx)
            .await
            .expect("update");
        tx.commit().await.expect("commit");
        commits.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let c = sorted(commits);
    table.push((
        "single-row commit (BEGIN IMMEDIATE, WAL, synchronous=NORMAL)".into(),
        format!("p50 {:.3} ms p99 {:.3} ms", pct(&c, 0.5), pct(&c, 0.99)),
    ));
    out.insert("single_row_commit_p99_ms".into(), json!(pct(&c, 0.99)));

    eprintln!("bench: backfill");
    // 3. Backfill with matched orders, 5. API reads while it writes, and the
    // order API creating orders meanwhile; at the shipped write budget.
    let run = backfill_with_api(&chain, head, first_ref, a.payments, &[], Sqlite).await;
    table.push((
        "backfill (binary, from launch, matched orders)".into(),
        format!(
            "{:.0} events/s, {:.0} blocks/s, {:.0}% of raw fetch",
            run.rate,
            run.blocks_per_s,
            100.0 * run.rate / raw_rate
        ),
    ));
    out.insert("backfill_events_per_s".into(), json!(run.rate));
    out.insert("backfill_ratio_to_raw".into(), json!(run.rate / raw_rate));
    let (i, j) = (&run.reads_by_id, &run.join);
    table.push((
        "API reads during backfill (second connection)".into(),
        format!(
            "order by id p50 {:.3} ms p99 {:.3} ms; acceptance join p50 {:.3} ms p99 {:.3} ms ({} reads)",
            pct(i, 0.5), pct(i, 0.99), pct(j, 0.5), pct(j, 0.99), i.len() + j.len()
        ),
    ));
    out.insert("api_read_by_id_p99_ms".into(), json!(pct(i, 0.99)));
    out.insert("api_read_join_p99_ms".into(), json!(pct(j, 0.99)));
    table.push(("order API during backfill (defaults)".into(), run.api_row()));
    out.insert("api_insert_p99_ms".into(), json!(pct(&run.inserts, 0.99)));
    out.insert("api_insert_max_ms".into(), json!(run.inserts.last()));
    order_api_sweep(&chain, head, first_ref, a.payments, &mut table).await;
    eprintln!("bench: PostgreSQL");
    order_api::backend_rows(
        &chain, head, first_ref, a.payments, &run, &mut table, &mut out,
    )
    .await;
    let db = run.db;

    eprintln!("bench: failover");
    failover::rows(&mut table, &mut out).await;

    eprintln!("bench: catch-up");
    // 7. Catch-up: on a chain of its own, the daemon indexes to the head and
    // is killed; `gap` empty blocks and one payment later it is started again.
    let (catch_up, caught) = gap::catch_up(a.gap).await;
    table.push((
        format!("catch-up of a {}-block gap, 1 event (from launch)", a.gap),
        format!("{catch_up:.2} s ({:.0} blocks/s)", a.gap as f64 / catch_up),
    ));
    assert_eq!(caught, 1, "the payment in the gap is indexed once");
    out.insert("catch_up_gap_blocks".into(), json!(a.gap));
    out.insert("catch_up_s".into(), json!(catch_up));

    eprintln!("bench: live latency");
    // 4. Live latency: block announced -> confirming; next block announced
    // -> paid; over a websocket (heads pushed) and over http (heads polled).
    for (round, (transport, url)) in [("ws", chain.ws_url()), ("http", chain.rpc_url())]
        .into_iter()
        .enumerate()
    {
        let target = chain.head().await;
        let mut daemon =
            Daemon::spawn(&env_with(&chain, &db, &[("LIQPASS__CHAIN__RPC_URL", &url)]));
        checkpoint_at_least(&mut daemon, &db, target, Duration::from_secs(300)).await;
        let first = 50_000_000 + round as u64 * a.live;
        let l = live(&chain, &db, first, a.live).await;
        drop(daemon);
        for (what, v, sent) in [
            ("block announced -> confirming", &l.seen, &l.seen_sent),
            ("next block announced -> paid", &l.paid, &l.paid_sent),
        ] {
            table.push((
                format!("live over {transport}: {what} ({} payments)", v.len()),
                format!(
                    "p50 {:.1} ms p95 {:.1} ms p99 {:.1} ms (from the mining call: p50 {:.1} p99 {:.1} ms)",
                    pct(v, 0.5),
                    pct(v, 0.95),
                    pct(v, 0.99),
                    pct(sent, 0.5),
                    pct(sent, 0.99)
                ),
            ));
        }
        for (key, v) in [
            ("confirming", &l.seen),
            ("paid", &l.paid),
            ("confirming_from_call", &l.seen_sent),
            ("paid_from_call", &l.paid_sent),
        ] {
            out.insert(
                format!("live_{transport}_{key}_p99_ms"),
                json!(pct(v, 0.99)),
            );
        }
    }
    wal::rows(
        &chain,
        head,
        a.payments,
        a.blocks,
        first_ref,
        Refs::Counted,
        &mut table,
    )
    .await;
    drop(chain);
    shop::rows(&mut table).await;

    scale_rows(&a, None, &mut table).await;

    eprintln!("bench: memory");
    // 6. Memory at 10k and at `big` events.
    if a.big > 0 {
        let big = chain_with(a.big, 1_000, 100_000_000).await;
        let bdb = Db::new().await;
        let mut daemon = Daemon::spawn(&env_with(&big, &bdb, &[]));
        let pid = daemon.child.id();
        let mut at_10k = None;
        let started = Instant::now();
        loop {
            let n = bdb.count("SELECT COUNT(*) FROM contract_events").await as u64;
            assert_running(&mut daemon);
            let (rss, _) = rss_kib(pid);
            if at_10k.is_none() && n >= 10_000 {
                at_10k = Some(rss);
            }
            if n >= a.big {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(900),
                "memory run too slow: {n} events"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (steady, peak) = rss_kib(pid);
        table.push((
            format!("memory (RSS) at 10k / {} events", a.big),
            format!(
                "{:.1} MiB / {:.1} MiB steady, {:.1} MiB peak",
                at_10k.unwrap_or(0) as f64 / 1024.0,
                steady as f64 / 1024.0,
                peak as f64 / 1024.0
            ),
        ));
        out.insert(
            "rss_10k_mib".into(),
            json!(at_10k.unwrap_or(0) as f64 / 1024.0),
        );
        out.insert("rss_big_mib".into(), json!(steady as f64 / 1024.0));
        out.insert("rss_peak_mib".into(), json!(peak as f64 / 1024.0));
        drop(daemon);
    }

    eprintln!("bench: history");
    history::rows(&mut table, &mut out).await;

    print_table(&a, &table);
    if let Some(path) = a.json {
        std::fs::write(&path, serde_json::to_string_pretty(&out).expect("json"))
            .expect("write --json");
        println!("\nwritten to {}", path.display());
    }
}

/// The provider-scale rows: all of them, or `only` one (`scale`).
async fn scale_rows(a: &Args, only: Option<&str>, table: &mut Vec<(String, String)>) {
    let run = |row: &str| only.is_none_or(|o| o == "providers" || o == row);
    let generous = "80 ms, 100,000-block cap, 300 requests/s";
    let coinbase = "50 ms, 1,000-block cap, 50 requests/s";
    let rows = [
        (
            "provider-coinbase",
            coinbase,
            scale::COINBASE,
            1_000_000,
            true,
        ),
        // As a new user leaves it: the rate learned from the 429s.
        (
            "provider-coinbase-unset",
            coinbase,
            scale::COINBASE,
            1_000_000,
            false,
        ),
        (
            "provider-generous",
            generous,
            scale::GENEROUS,
            1_000_000,
            true,
        ),
        ("provider-16m", generous, scale::GENEROUS, 16_000_000, true),
    ];
    for (row, what, profile, blocks, configured) in rows {
        if run(row) {
            eprintln!("bench: {row}");
            table.push(scale::sparse(what, profile, blocks, configured).await);
        }
    }
    if run("near-head") {
        for fill in [0.0, 0.6, 1.0] {
            eprintln!("bench: near-head, bloom {fill}");
            table.push(scale::near_head(fill).await);
        }
    }
    if run("dense-latency") {
        eprintln!("bench: dense-latency");
        let first_ref = 1_000_000u64;
        let chain = chain_with(a.payments, a.blocks, first_ref).await;
        table.push(scale::dense_latency(&chain, a.payments, first_ref).await);
    }
}

fn print_table(a: &Args, table: &[(String, String)]) {
    println!(
        "\nliqpass-indexer benchmark: {} payments over {} blocks\n",
        a.payments, a.blocks
    );
    println!("| measure | result |\n| --- | --- |");
    for (k, v) in table {
        println!("| {k} | {v} |");
    }
}
