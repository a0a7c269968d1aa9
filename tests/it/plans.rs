//! No statement the daemon runs costs time that grows with the history.
//!
//! The daemon runs against a database already holding a history (20,000
//! payments of its own contract, a tenth of them `unknown_order`, their
//! orders, audit rows, outbox rows, settled exceptions), through every
//! kind of write: matched, unknown and underpaid payments, a malformed
//! log, an order arriving after its payment (late matching), a reorg, the
//! completeness audit and the pending-order sweep. Every statement it
//! logged (`sqlx::query` at debug) is then planned by the database itself
//! (SQLite: `EXPLAIN QUERY PLAN`, without statistics and after `ANALYZE`;
//! PostgreSQL: the generic plan of the prepared statement, after
//! `ANALYZE`), and so are the order trigger's lookups. A plan fails when it
//! reads a history table whole (a scan), or searches one only by contract
//! or by status (the columns every row shares, or most do): both cost time
//! proportional to the history. Only a partial index of rows still waiting
//! (orders confirming or reversed, notifications undelivered, incidents
//! open) may be read whole: its size is what waits, not the history.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use alloy::sol_types::SolEvent;
use liqpass_indexer::chain::bindings::CheckoutV1;
use serde_json::Value;
use sqlx::{Connection, Row};

use crate::support::chain::{order_ref, Chain};
use crate::support::daemon::{env_for, with, Daemon};
use crate::support::db::{Backend, Db, Postgres};
use crate::support::{caught_up, wait_for};
use crate::support::{history, pg};

const PREMIUM: i64 = 5_000_000;
const LONG: Duration = Duration::from_secs(60);
/// Payments in the history, ten per block from block 10.
const HISTORY: u64 = 20_000;
/// Blocks mined before the daemon's first block: the history's.
const HISTORY_BLOCKS: u64 = 10 + HISTORY / 10 + 10;

/// Tables whose rows accumulate with the payments (the history); the
/// others hold a row per scope, per block of the reorg window, or per
/// waiting late match.
const HISTORY_TABLES: &[&str] = &[
    "contract_events",
    "orders",
    "order_audit",
    "payment_notifications",
    "payment_resolutions",
    "malformed_logs",
    "treasury_changes",
    "reorg_incidents",
];

/// Columns every row of a scope shares, or most rows do: a search by
/// these alone reads the history.
const WEAK_COLUMNS: &[&str] = &[
    "chain_id",
    "contract_address",
    "match_status",
    "removed",
    "status",
    "payment_status",
    "verification",
    "event_name",
];

/// Partial indexes that hold only rows still waiting for something (an
/// order confirming or reversed, a notification undelivered, an incident
/// open): reading one whole costs what waits, not the history. Other
/// partial indexes keep their rows for ever (every `unknown_order` event,
/// every event that paid an order…) and count as full ones.
const WAITING_INDEXES: &[&str] = &[
    "idx_orders_confirming",
    "idx_orders_reversed",
    "idx_payment_notifications_undelivered",
    "idx_reorg_incidents_open",
];

/// The lookups the order trigger (`late_matches`) runs in the order API's
/// insert, `NEW.order_ref` as a parameter.
const TRIGGER_LOOKUP: &str = "SELECT id FROM contract_events
    WHERE order_ref = $1 AND match_status = 'unknown_order' AND removed = 0";

both_backends!(
    no_statement_the_daemon_runs_reads_the_history,
    no_statement_the_daemon_runs_reads_the_history_on
);
async fn no_statement_the_daemon_runs_reads_the_history_on(backend: Backend) {
    let chain = Chain::start().await;
    chain.mine(HISTORY_BLOCKS).await;
    // PostgreSQL: a cluster of the test's own, whose log holds only the
    // plans of this test's database.
    let cluster = (backend == Postgres).then(pg::private_cluster);
    let db = match cluster {
        Some(cluster) => Db::on_cluster(cluster).await,
        None => Db::on(backend).await,
    };
    history::load(&db, &chain, HISTORY, 10).await;
    if let Some(cluster) = cluster {
        db.execute("ANALYZE").await;
        log_generic_plans(&db, cluster).await;
    }
    let statements = run_every_kind_of_write(&chain, &db).await;
    let mut bad = match cluster {
        None => {
            let mut planned: Vec<String> = statements.into_iter().collect();
            planned.push(TRIGGER_LOOKUP.to_owned());
            let mut bad = sqlite_bad_plans(&db, &planned, "without statistics").await;
            db.execute("ANALYZE").await;
            bad.extend(sqlite_bad_plans(&db, &planned, "after ANALYZE").await);
            bad
        }
        Some(cluster) => postgres_bad_plans(&db, cluster, &statements).await,
    };
    bad.sort();
    bad.dedup();
    assert!(
        bad.is_empty(),
        "{} statement(s) read the history:\n\n{}",
        bad.len(),
        bad.join("\n\n")
    );
}

/// Runs the daemon through every kind of write, with its statements
/// logged; returns them (each once).
async fn run_every_kind_of_write(chain: &Chain, db: &Db) -> BTreeSet<String> {
    let env = with(
        &env_for(chain, db),
        &[
            ("LIQPASS__CHAIN__START_BLOCK", HISTORY_BLOCKS.to_string()),
            ("LIQPASS__LOG__FORMAT", "json".into()),
            (
                "RUST_LOG",
                "info,liqpass_indexer=debug,sqlx::query=debug".into(),
            ),
            ("LIQPASS__AUDIT__INTERVAL_MS", "200".into()),
            ("LIQPASS__RECONCILE__PENDING_SWEEP_INTERVAL_S", "1".into()),
            ("LIQPASS__RECONCILE__PENDING_SWEEP_GRACE_S", "1".into()),
        ],
    );
    let (alice, bob) = (chain.buyers[0], chain.buyers[1]);
    db.insert_order("ord_paid", order_ref(1), alice, PREMIUM)
        .await;
    db.insert_order("ord_under", order_ref(3), alice, PREMIUM)
        .await;
    db.insert_order("ord_payer", order_ref(5), alice, PREMIUM)
        .await;
    db.insert_order("ord_orphan", order_ref(4), alice, PREMIUM)
        .await;
    let mut daemon = Daemon::spawn(&env);
    chain.pay(alice, order_ref(1), PREMIUM as u64).await;
    chain.pay(alice, order_ref(2), PREMIUM as u64).await; // no order yet
    chain.pay(alice, order_ref(3), PREMIUM as u64 - 1).await;
    chain.pay(bob, order_ref(5), PREMIUM as u64).await;
    let v1 = CheckoutV1::PremiumPaid::SIGNATURE_HASH;
    chain
        .emit_log(alice, vec![v1, order_ref(6)], vec![1, 2, 3])
        .await;
    chain.mine(3).await;
    db.wait_payment_status("ord_paid", "paid").await;

    // Late: the order of the unknown payment arrives.
    db.insert_order("ord_late", order_ref(2), alice, PREMIUM)
        .await;
    chain.mine(3).await;
    db.wait_payment_status("ord_late", "paid").await;

    // A reorg orphans a payment.
    chain.pay(alice, order_ref(4), PREMIUM as u64).await;
    db.wait_payment_status("ord_orphan", "confirming").await;
    chain.reorg(2, vec![]).await;
    chain.mine(1).await;
    db.wait_payment_status("ord_orphan", "pending").await;
    caught_up(chain, db).await;

    // The audit and the sweep have had their turns.
    daemon.logged("pending-order sweep planned", 1).await;
    wait_for("the audit's position", LONG, || async {
        let audited = db.count("SELECT COUNT(*) FROM audit_state").await;
        (audited > 0).then_some(())
    })
    .await;
    daemon.signal("TERM");
    assert!(daemon.wait_exit(LONG).await.success());
    assert_eq!(
        db.count("SELECT COUNT(*) FROM contract_events").await,
        HISTORY as i64 + 5
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM malformed_logs WHERE reason <> 'history'")
            .await,
        1
    );
    let statements = logged_statements(&daemon.logs());
    assert!(
        statements.len() > 40,
        "the daemon's statements were logged: {statements:#?}"
    );
    statements
}

/// Every statement of this database from now on has its plan logged
/// (`auto_explain`, nested ones too), and the plan is the generic one a
/// prepared statement keeps, which no parameter value shaped.
async fn log_generic_plans(db: &Db, cluster: &pg::Cluster) {
    assert!(cluster.log_path().exists(), "the server's log");
    // The library last: a connection opened meanwhile (a pool's) explains
    // nothing, or explains with every setting.
    for setting in [
        "auto_explain.log_min_duration = 0",
        "auto_explain.log_format = 'json'",
        "auto_explain.log_nested_statements = on",
        "plan_cache_mode = force_generic_plan",
        "session_preload_libraries = 'auto_explain'",
    ] {
        db.execute(&format!(
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET {}', current_database()); END $$",
            setting.replace('\'', "''")
        ))
        .await;
    }
}

/// The SQL of every `sqlx::query` event in the daemon's JSON log lines,
/// whitespace collapsed, each once; only statements a plan describes.
fn logged_statements(logs: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in logs.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["target"] != "sqlx::query" {
            continue;
        }
        let full = v["db.statement"].as_str().unwrap_or("").trim();
        let sql = if full.is_empty() {
            v["summary"].as_str().unwrap_or("")
        } else {
            full
        };
        let sql = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        let first = sql
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        if ["SELECT", "INSERT", "UPDATE", "DELETE", "WITH"].contains(&first.as_str()) {
            out.insert(sql);
        }
    }
    out
}

/// The names a statement gives its tables (`FROM orders o`: `o` and
/// `orders`), mapped to the table.
fn aliases(sql: &str) -> HashMap<String, String> {
    let words: Vec<String> = sql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let keywords = [
        "where",
        "on",
        "join",
        "set",
        "cross",
        "inner",
        "left",
        "indexed",
        "values",
        "select",
        "order",
        "group",
        "limit",
        "and",
        "using",
        "as",
        "default",
        "returning",
    ];
    let mut map = HashMap::new();
    for (i, w) in words.iter().enumerate() {
        if !HISTORY_TABLES.contains(&w.as_str()) {
            continue;
        }
        map.insert(w.clone(), w.clone());
        let mut next = i + 1;
        if words.get(next).map(String::as_str) == Some("as") {
            next += 1;
        }
        if let Some(alias) = words.get(next) {
            if !keywords.contains(&alias.as_str()) {
                map.insert(alias.clone(), w.clone());
            }
        }
    }
    map
}

/// Whether a search's conditions (`chain_id=? AND contract_address=?`)
/// name only the columns every row shares.
fn only_weak(columns: &[String]) -> bool {
    columns.iter().all(|c| WEAK_COLUMNS.contains(&c.as_str()))
}

/// The statements whose SQLite plan reads the history, each with its plan.
async fn sqlite_bad_plans(db: &Db, statements: &[String], when: &str) -> Vec<String> {
    let pool = db.store.sqlite_pool().expect("an SQLite store");
    let mut bad = Vec::new();
    for sql in statements {
        let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
            .fetch_all(pool)
            .await
            .unwrap_or_else(|e| panic!("EXPLAIN QUERY PLAN {sql}: {e}"));
        let plan: Vec<String> = rows.iter().map(|r| r.get::<String, _>("detail")).collect();
        let names = aliases(sql);
        let reads_history = plan.iter().any(|step| {
            let words: Vec<&str> = step.split_whitespace().collect();
            let (Some(&verb), Some(name)) = (words.first(), words.get(1)) else {
                return false;
            };
            let Some(table) = names.get(&name.to_ascii_lowercase()) else {
                return false;
            };
            let index = words
                .iter()
                .position(|w| *w == "INDEX")
                .and_then(|i| words.get(i + 1));
            // A waiting index holds only the rows still waiting.
            let waiting = index.is_some_and(|i| WAITING_INDEXES.contains(i));
            match verb {
                "SCAN" => HISTORY_TABLES.contains(&table.as_str()) && !waiting,
                "SEARCH" => {
                    let columns: Vec<String> = step
                        .split_once('(')
                        .map(|(_, c)| c.trim_end_matches(')'))
                        .unwrap_or("")
                        .split(" AND ")
                        .map(|c| {
                            c.split(|ch: char| "=<>".contains(ch))
                                .next()
                                .unwrap_or("")
                                .trim()
                                .to_owned()
                        })
                        .collect();
                    index.is_some() && !waiting && only_weak(&columns)
                }
                _ => false,
            }
        });
        if reads_history {
            bad.push(format!("[{when}] {sql}\n  {}", plan.join("\n  ")));
        }
    }
    bad
}

/// The statements whose PostgreSQL plan (as the server logged it for the
/// daemon's `statements`, and the order trigger's lookup, prepared
/// generic) reads the history.
async fn postgres_bad_plans(
    db: &Db,
    cluster: &pg::Cluster,
    statements: &BTreeSet<String>,
) -> Vec<String> {
    let pool = db.store.postgres_pool().expect("a PostgreSQL store");
    let mut conn = pool.acquire().await.expect("a connection");
    let indexes: HashMap<String, String> = sqlx::query(
        "SELECT indexname, tablename FROM pg_indexes WHERE schemaname = current_schema()",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("indexes")
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    let log = std::fs::read_to_string(cluster.log_path()).expect("the server's log");
    // The test's own statements are logged too: only the daemon's count.
    let mut plans = logged_plans(&log);
    plans.retain(|sql, _| statements.contains(sql));
    assert!(
        plans.len() > 40,
        "the daemon's plans were logged ({} plans):\n{log}",
        plans.len()
    );
    let mut tx = conn.begin().await.expect("begin");
    for sql in [
        "SET LOCAL plan_cache_mode = force_generic_plan".to_owned(),
        format!("PREPARE trigger_lookup (text) AS {TRIGGER_LOOKUP}"),
    ] {
        sqlx::raw_sql(&sql).execute(&mut *tx).await.expect(&sql);
    }
    let trigger: Value = sqlx::query_scalar("EXPLAIN (FORMAT JSON) EXECUTE trigger_lookup(NULL)")
        .fetch_one(&mut *tx)
        .await
        .expect("the trigger's plan");
    tx.rollback().await.expect("rollback");
    plans.insert(TRIGGER_LOOKUP.to_owned(), trigger[0]["Plan"].clone());

    let mut bad = Vec::new();
    for (sql, plan) in &plans {
        let mut reads = Vec::new();
        walk(plan, &indexes, &mut reads);
        if !reads.is_empty() {
            bad.push(format!("{sql}\n  {}", reads.join("\n  ")));
        }
    }
    bad
}

/// The plans `auto_explain` wrote into the server's log (each a JSON
/// document on the tab-indented lines after `plan:`), by query text.
fn logged_plans(log: &str) -> BTreeMap<String, Value> {
    let mut plans = BTreeMap::new();
    let mut lines = log.lines().peekable();
    while let Some(line) = lines.next() {
        if !line.trim_end().ends_with("plan:") {
            continue;
        }
        let mut json = String::new();
        while let Some(next) = lines.next_if(|l| l.starts_with('\t')) {
            json.push_str(&next[1..]);
            json.push('\n');
        }
        let doc: Value = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("auto_explain's JSON: {e}\n{json}"));
        let sql = doc["Query Text"].as_str().unwrap_or("");
        let sql = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        plans.insert(sql, doc["Plan"].clone());
    }
    plans
}

/// Collects the nodes of a PostgreSQL plan that read a history table
/// whole or by its shared columns only.
fn walk(node: &Value, indexes: &HashMap<String, String>, out: &mut Vec<String>) {
    let kind = node["Node Type"].as_str().unwrap_or("");
    let relation = node["Relation Name"].as_str();
    let index = node["Index Name"].as_str();
    let table = relation
        .map(str::to_owned)
        .or_else(|| index.and_then(|i| indexes.get(i)).cloned());
    if let Some(table) = table.filter(|t| HISTORY_TABLES.contains(&t.as_str())) {
        if kind == "Seq Scan" {
            out.push(format!("Seq Scan on {table}"));
        }
        if let Some(index) = index {
            let waiting = WAITING_INDEXES.contains(&index);
            let cond = node["Index Cond"].as_str().unwrap_or("");
            let columns: Vec<String> = cond
                .split(" AND ")
                .map(|c| {
                    let c = c.trim_start_matches('(');
                    let column = c.split(' ').next().unwrap_or("");
                    column.rsplit('.').next().unwrap_or("").to_owned()
                })
                .filter(|c| !c.is_empty())
                .collect();
            if !waiting && only_weak(&columns) {
                out.push(format!("{kind} using {index} on {table} ({cond})"));
            }
        }
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        walk(child, indexes, out);
    }
}
