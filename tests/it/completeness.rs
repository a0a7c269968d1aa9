//! Never trust an empty answer: a proxy of our own in front of anvil leaves
//! logs out of `eth_getLogs` answers without an error, as load-balanced
//! providers do ([`Omit`]), and every payment is still stored once and every
//! order paid. Each defence has a test that fails without it:
//!
//! - near the head, the bloom check and logs by block hash: a node behind
//!   (`a_node_behind_the_head_loses_no_live_payment`, audit and sweep off);
//! - the audit re-asking final ranges (`logs_left_out_of_their_first_answer_are_recovered_by_the_audit`);
//! - the pending-order sweep (`a_log_only_a_search_by_order_finds_is_recovered_by_the_sweep`);
//! - a verifier's completeness check (`a_log_a_verification_round_returns_is_stored_once_the_primary_confirms_it`);
//!
//! and all of them together repair a provider dropping logs at random, with
//! one endpoint or with a verifier. `audit --from --to` finds missing, extra
//! and altered rows on both backends and `--repair` heals only the missing.

use std::time::Duration;

use crate::support::chain::{order_ref, Chain};
use crate::support::daemon::{command, env_for, with, Daemon};
use crate::support::db::{Backend, Db};
use crate::support::proxy::{Omit, RpcProxy};
use crate::support::{caught_up, metric, wait_for};

const PREMIUM: u64 = 5_000_000;
const FIRST_REF: u64 = 22_000;
/// Payments older than `chain.reorg_window` (64 here) when the daemon
/// starts, within it, and made while it runs.
const OLD: u64 = 6;
const RECENT: u64 = 4;
const LIVE: u64 = 6;
const PAYMENTS: u64 = OLD + RECENT + LIVE;
const LONG: Duration = Duration::from_secs(90);

fn hex_ref(i: u64) -> String {
    format!("{:#x}", order_ref(FIRST_REF + i))
}

/// The defences, on (fast, for a test) or off.
#[derive(Clone, Copy)]
struct Defences {
    audit: bool,
    sweep: bool,
}

const ALL: Defences = Defences {
    audit: true,
    sweep: true,
};

/// The 16 payments, the chain, the database and the proxy the daemon asks.
struct Run {
    chain: Chain,
    db: Db,
    proxy: RpcProxy,
    daemon: Daemon,
    base: String,
}

/// Pays `OLD` orders, mines past the reorg window, pays `RECENT`, starts
/// the daemon behind a proxy omitting as `how` says (with the settings
/// `extra` gives for the chain), waits until it caught up, pays `LIVE` more
/// and mines a few blocks.
async fn run(
    how: Omit,
    defences: Defences,
    extra: impl FnOnce(&Chain, &RpcProxy) -> Vec<(&'static str, String)>,
) -> Run {
    let chain = Chain::start().await;
    let db = Db::new().await;
    db.insert_orders(&chain.buyers, FIRST_REF, PAYMENTS, PREMIUM as i64)
        .await;
    for i in 0..OLD {
        pay(&chain, i).await;
    }
    chain.mine(100).await;
    for i in OLD..OLD + RECENT {
        pay(&chain, i).await;
    }
    chain.mine(3).await;
    let proxy = RpcProxy::start(&chain.rpc_url()).await;
    proxy.omit(how);
    let mut pairs = vec![("LIQPASS__CHAIN__RPC_URL", proxy.url())];
    pairs.extend(fast(defences));
    pairs.extend(extra(&chain, &proxy));
    let env = with(&env_for(&chain, &db), &pairs);
    let daemon = Daemon::spawn(&env);
    let base = format!("http://{}", daemon.http_addr().await);
    caught_up(&chain, &db).await;
    for i in OLD + RECENT..PAYMENTS {
        pay(&chain, i).await;
    }
    chain.mine(5).await;
    Run {
        chain,
        db,
        proxy,
        daemon,
        base,
    }
}

/// Payment `i` of the run, by one of the buyers in turn.
async fn pay(chain: &Chain, i: u64) {
    let buyer = chain.buyers[i as usize % chain.buyers.len()];
    chain.pay(buyer, order_ref(FIRST_REF + i), PREMIUM).await;
}

/// The defences' settings, at a test's pace.
fn fast(defences: Defences) -> Vec<(&'static str, String)> {
    let on = |yes: bool, value: &str| if yes { value.to_owned() } else { "0".into() };
    vec![
        ("LIQPASS__AUDIT__INTERVAL_MS", on(defences.audit, "200")),
        ("LIQPASS__AUDIT__REQUEST_SHARE_PERCENT", "50".into()),
        (
            "LIQPASS__RECONCILE__PENDING_SWEEP_INTERVAL_S",
            on(defences.sweep, "1"),
        ),
        ("LIQPASS__RECONCILE__PENDING_SWEEP_GRACE_S", "1".into()),
    ]
}

/// anvil itself, honest, as the verifier (its URL carrying a key).
fn honest_verifier(chain: &Chain, _: &RpcProxy) -> Vec<(&'static str, String)> {
    let url = format!("{}/?key=VERIFIERKEY41c9", chain.rpc_url());
    vec![("LIQPASS__CHAIN__VERIFY_RPC_URLS", url)]
}

impl Run {
    /// Every order paid, by exactly one stored event.
    async fn all_paid_once(&self) {
        wait_for(&format!("{PAYMENTS} orders paid"), LONG, || async {
            let paid = self
                .db
                .count("SELECT COUNT(*) FROM orders WHERE payment_status = 'paid'")
                .await;
            (paid == PAYMENTS as i64).then_some(())
        })
        .await;
        let events = self
            .db
            .count("SELECT COUNT(*) FROM contract_events WHERE removed = 0")
            .await;
        assert_eq!(events, PAYMENTS as i64, "each log stored once");
        let matched = self
            .db
            .count("SELECT COUNT(*) FROM contract_events WHERE match_status = 'matched'")
            .await;
        assert_eq!(matched, PAYMENTS as i64, "each reconciled with its order");
    }

    async fn recovered(&self, path: &str) -> f64 {
        let series = format!("liqpass_indexer_logs_recovered_total{{path=\"{path}\"}}");
        metric(&self.base, &series).await.unwrap_or(0.0)
    }

    async fn recovered_total(&self) -> f64 {
        let mut total = 0.0;
        for path in ["audit", "verify", "sweep", "repair"] {
            total += self.recovered(path).await;
        }
        total
    }

    /// The sum of `recovered=N` over the daemon's WARN lines: each
    /// recovery logged once, as counted.
    fn recovered_in_log(&self) -> f64 {
        self.daemon
            .logs()
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("were found and stored"))
            .filter_map(|l| {
                let at = l.find("recovered=")? + "recovered=".len();
                l[at..].split_whitespace().next()?.parse::<f64>().ok()
            })
            .sum()
    }

    async fn ready(&self) {
        crate::support::until_ready(&self.base).await;
    }
}

#[tokio::test]
async fn a_node_behind_the_head_loses_no_live_payment() {
    let off = Defences {
        audit: false,
        sweep: false,
    };
    let r = run(Omit::Lagging { blocks: 3 }, off, |_, _| vec![]).await;
    r.all_paid_once().await;
    assert!(r.proxy.omitted() >= 1, "the lagging node answered");
    assert!(
        r.daemon
            .logs()
            .contains("the node does not have the block yet"),
        "a block asked for by hash on the node behind was asked for again"
    );
    assert_eq!(r.recovered_total().await, 0.0, "nothing to recover");
    let fetched = metric(
        &r.base,
        "liqpass_indexer_bloom_blocks_total{outcome=\"fetched\"}",
    )
    .await
    .unwrap_or(0.0);
    assert!(
        fetched >= (RECENT + LIVE) as f64,
        "blocks with payments near the head fetched by hash: {fetched}"
    );
    let skipped = metric(
        &r.base,
        "liqpass_indexer_bloom_blocks_total{outcome=\"skipped\"}",
    )
    .await
    .unwrap_or(0.0);
    assert!(skipped > 0.0, "empty blocks cost no getLogs: {skipped}");
    r.ready().await;
}

#[tokio::test]
async fn logs_left_out_of_their_first_answer_are_recovered_by_the_audit() {
    let audit_only = Defences {
        audit: true,
        sweep: false,
    };
    let r = run(Omit::FirstAnswer, audit_only, |_, _| vec![]).await;
    r.all_paid_once().await;
    // Every log's first answer was the indexer's own: each was missing, and
    // each was recovered once, by the audit.
    wait_for("the audit's count", LONG, || async {
        (r.recovered("audit").await == PAYMENTS as f64).then_some(())
    })
    .await;
    assert_eq!(r.recovered_total().await, PAYMENTS as f64);
    assert_eq!(r.recovered_in_log(), PAYMENTS as f64, "logged as counted");
    let head = r.chain.head().await;
    let audited = metric(&r.base, "liqpass_indexer_audited_block")
        .await
        .unwrap_or(0.0);
    assert!(audited >= (head - 2 - 5) as f64, "audited up to {audited}");
    // A recovered log is not an outage.
    r.ready().await;
}

#[tokio::test]
async fn a_log_only_a_search_by_order_finds_is_recovered_by_the_sweep() {
    // One old payment and one live one are left out of every answer that
    // does not name their order: only the sweep asks that way.
    let refs = vec![hex_ref(2), hex_ref(OLD + RECENT + 1)];
    let r = run(Omit::UnlessByOrder { refs }, ALL, |_, _| vec![]).await;
    r.all_paid_once().await;
    assert_eq!(r.recovered("sweep").await, 2.0);
    assert_eq!(r.recovered_total().await, 2.0);
    assert!(r.daemon.logs().contains("path=\"sweep\""));
}

#[tokio::test]
async fn logs_dropped_at_random_are_all_recovered() {
    let r = run(Omit::Random { p: 0.3, seed: 22 }, ALL, |_, _| vec![]).await;
    r.all_paid_once().await;
    let recovered = r.recovered_total().await;
    assert!(recovered >= 1.0, "some logs were dropped and recovered");
    assert!(recovered <= PAYMENTS as f64, "none recovered twice");
    let stored = metric(
        &r.base,
        "liqpass_indexer_events_indexed_total{version=\"v1\"}",
    )
    .await
    .unwrap_or(0.0);
    assert_eq!(
        stored, PAYMENTS as f64,
        "each log stored once, by whichever path"
    );
    assert_eq!(r.recovered_in_log(), recovered, "logged as counted");
}

#[tokio::test]
async fn a_verifier_repairs_logs_the_primary_drops_at_random() {
    // The audit asks the verifier (the only other endpoint); what it returns
    // is stored once the primary, asked by block hash, returns it too.
    let audit_only = Defences {
        audit: true,
        sweep: false,
    };
    let r = run(
        Omit::Random { p: 0.3, seed: 5 },
        audit_only,
        honest_verifier,
    )
    .await;
    r.all_paid_once().await;
    let recovered = r.recovered("audit").await + r.recovered("verify").await;
    assert!(
        recovered >= 1.0,
        "the verifier's answers repaired the drops"
    );
    assert_eq!(r.recovered_total().await, recovered);
    let logs = r.daemon.logs();
    assert!(
        logs.contains("a log another endpoint returned is not stored"),
        "found in the verifier's answers"
    );
    assert!(
        !logs.contains("VERIFIERKEY41c9"),
        "the verifier's key is never logged"
    );
}

#[tokio::test]
async fn a_log_a_verification_round_returns_is_stored_once_the_primary_confirms_it() {
    // The primary leaves one old payment out of its first two answers: the
    // indexer's, and its first confirmation by block hash. With the audit
    // and the sweep off, only the verification round of the payments around
    // it can find it.
    let off = Defences {
        audit: false,
        sweep: false,
    };
    let how = Omit::FirstAnswers {
        refs: vec![hex_ref(3)],
        n: 2,
    };
    let r = run(how, off, honest_verifier).await;
    r.all_paid_once().await;
    assert_eq!(r.recovered("verify").await, 1.0);
    assert_eq!(r.recovered_total().await, 1.0);
}

/// Kills the daemon in the middle of an audit pass: nothing is lost or
/// doubled (the database equals a clean run's: events, orders, audit rows,
/// outbox), and the next run resumes the audit where the stored position
/// says.
#[tokio::test]
async fn kill_9_in_the_middle_of_an_audit_pass_resumes_from_the_stored_position() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    db.insert_orders(&chain.buyers, FIRST_REF, PAYMENTS, PREMIUM as i64)
        .await;
    for i in 0..PAYMENTS {
        pay(&chain, i).await;
        chain.mine(20).await;
    }
    // Every log is left out of its first answer (the indexer's), so the
    // audit recovers each; slow, small ranges make its pass last seconds.
    let proxy = RpcProxy::start(&chain.rpc_url()).await;
    proxy.omit(Omit::FirstAnswer);
    proxy.slow(Duration::from_millis(40));
    let mut pairs = vec![
        ("LIQPASS__CHAIN__RPC_URL", proxy.url()),
        ("LIQPASS__CHAIN__MAX_BLOCK_RANGE", "5".into()),
    ];
    pairs.extend(fast(Defences {
        audit: true,
        sweep: false,
    }));
    let env = with(&env_for(&chain, &db), &pairs);
    let first = Daemon::spawn(&env);
    let head = chain.head().await as i64;
    let position = || async {
        db.count("SELECT COALESCE(MAX(audited_block), -1) FROM audit_state")
            .await
    };
    wait_for("the audit half way", LONG, || async {
        let p = position().await;
        (p >= 60 && p < head - 60).then_some(())
    })
    .await;
    let first_log = first.logs();
    first.kill9();
    let stored = position().await;
    let second = Daemon::spawn(&env);
    second
        .logged(
            &format!("completeness audit started audited=Some({stored})"),
            1,
        )
        .await;
    db.wait_paid_orders(PAYMENTS).await;
    wait_for("the audit at the final block", LONG, || async {
        (position().await >= head - 2).then_some(())
    })
    .await;
    assert!(
        first_log.contains("were found and stored"),
        "the first run recovered some before it was killed"
    );
    drop(second);
    crate::support::equals_a_clean_run(
        &chain,
        &db,
        db.backend(),
        &chain.buyers,
        (FIRST_REF, PAYMENTS, PREMIUM as i64),
    )
    .await;
}

/// A reorg deeper than the confirmations rolls the audit's position back
/// with the checkpoint, and the new branch is audited too: the payment it
/// re-includes, left out of its first answer there, is recovered.
#[tokio::test]
async fn a_reorg_below_the_audit_position_is_audited_again() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    db.insert_orders(&chain.buyers, FIRST_REF, 2, PREMIUM as i64)
        .await;
    pay(&chain, 0).await;
    let moved = chain
        .pay(chain.buyers[1], order_ref(FIRST_REF + 1), PREMIUM)
        .await;
    chain.mine(6).await;
    let proxy = RpcProxy::start(&chain.rpc_url()).await;
    proxy.omit(Omit::FirstAnswer);
    let mut pairs = vec![("LIQPASS__CHAIN__RPC_URL", proxy.url())];
    pairs.extend(fast(Defences {
        audit: true,
        sweep: false,
    }));
    let env = with(&env_for(&chain, &db), &pairs);
    let daemon = Daemon::spawn(&env);
    db.wait_paid_orders(2).await;
    let position = || async {
        db.count("SELECT COALESCE(MAX(audited_block), -1) FROM audit_state")
            .await
    };
    let head = chain.head().await as i64;
    wait_for("the audit at the final block", LONG, || async {
        (position().await >= head - 2).then_some(())
    })
    .await;
    // The second payment moves one block up, on a new branch of the last
    // seven blocks (its own block included): deeper than the
    // confirmations and than the audit's position.
    let raw = chain.raw_tx(moved.transaction_hash).await;
    chain.reorg(7, vec![(raw, 1)]).await;
    chain.mine(4).await;
    // Its log is left out of the first answer on the new branch too: only
    // an audit of the new branch stores it again.
    let new_block = moved.block_number.expect("mined") + 1;
    let sql = format!(
        "SELECT COUNT(*) FROM contract_events WHERE order_ref = '{}' AND removed = 0
           AND block_number = {new_block}",
        hex_ref(1)
    );
    wait_for(
        "the payment stored in its block of the new branch",
        LONG,
        || async { (db.count(&sql).await == 1).then_some(()) },
    )
    .await;
    db.wait_paid_orders(2).await;
    assert_eq!(
        metric(
            &format!("http://{}", daemon.http_addr().await),
            "liqpass_indexer_logs_recovered_total{path=\"audit\"}"
        )
        .await,
        Some(3.0),
        "the two payments, then the moved one on the new branch"
    );
    assert!(daemon
        .logs()
        .contains("a reorg rolled back below the audit's position"));
}

/// A node that takes too long to scan the audit's wide ranges: each that
/// times out is asked again smaller, as the indexer's own ranges are.
#[tokio::test]
async fn audit_ranges_that_time_out_are_asked_again_smaller() {
    let r = run(Omit::FirstAnswer, ALL, |_, proxy| {
        // Ranges over 20 blocks answer after 2 s: the indexer's and the
        // audit's alike time out, and shrink.
        proxy.slow_over(20, Duration::from_secs(2));
        vec![
            ("LIQPASS__CHAIN__REQUEST_TIMEOUT_MS", "500".into()),
            ("LIQPASS__RECONCILE__PENDING_SWEEP_INTERVAL_S", "0".into()),
        ]
    })
    .await;
    r.all_paid_once().await;
    assert_eq!(r.recovered("audit").await, PAYMENTS as f64);
}

both_backends!(
    audit_finds_missing_extra_and_altered_rows_and_repairs_only_the_missing,
    audit_command
);

/// `audit` after an incident: one payment's row lost, one row no log
/// stands for, one row altered.
async fn audit_command(backend: Backend) {
    let chain = Chain::start().await;
    let db = Db::on(backend).await;
    db.insert_orders(&chain.buyers, FIRST_REF, 3, PREMIUM as i64)
        .await;
    for i in 0..3 {
        pay(&chain, i).await;
    }
    // A payment of no order: its row can go without touching an order.
    let lost = FIRST_REF + 100;
    chain.pay(chain.buyers[0], order_ref(lost), PREMIUM).await;
    chain.mine(3).await;
    let env = with(
        &env_for(&chain, &db),
        &[("LIQPASS__AUDIT__INTERVAL_MS", "0".into())],
    );
    let mut daemon = Daemon::spawn(&env);
    db.wait_paid_orders(3).await;
    caught_up(&chain, &db).await;
    daemon.signal("TERM");
    daemon.wait_exit(LONG).await;

    let lost_ref = format!("{:#x}", order_ref(lost));
    db.execute(&format!(
        "DELETE FROM contract_events WHERE order_ref = '{lost_ref}'"
    ))
    .await;
    let fake_tx = format!("0x{}", "ab".repeat(32));
    db.execute(&format!(
        "INSERT INTO contract_events (chain_id, contract_address, tx_hash, log_index,
           block_number, block_hash, block_timestamp, event_name, event_version, order_ref,
           payer, amount_usdc, amount_raw, amount_overflow, quote_hash, args_json, match_status)
         SELECT chain_id, contract_address, '{fake_tx}', log_index, block_number, block_hash,
           block_timestamp, event_name, event_version, order_ref, payer, amount_usdc,
           amount_raw, amount_overflow, quote_hash, args_json, 'duplicate_payment'
         FROM contract_events WHERE order_ref = '{}'",
        hex_ref(1)
    ))
    .await;
    db.execute(&format!(
        "UPDATE contract_events SET amount_raw = '1', amount_usdc = 1 WHERE order_ref = '{}'",
        hex_ref(2)
    ))
    .await;

    let head = chain.head().await.to_string();
    let audit = |extra: &[&str]| {
        let mut args = vec!["audit", "--from", "0", "--to", head.as_str()];
        args.extend(extra);
        command(&env, &args)
    };
    let report = |out: &std::process::Output| -> serde_json::Value {
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "audit --json prints JSON ({e}): {}
{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    };
    let kinds = |r: &serde_json::Value| {
        ["missing", "extra", "altered"].map(|k| r[k].as_array().map_or(0, Vec::len))
    };

    let out = audit(&["--json"]);
    assert_eq!(out.status.code(), Some(1), "they disagree: exit 1");
    let r = report(&out);
    assert_eq!(kinds(&r), [1, 1, 1], "{r:#}");
    assert_eq!(r["missing"][0]["order_ref"], lost_ref.as_str());
    assert_eq!(r["extra"][0]["tx_hash"], fake_tx.as_str());
    assert_eq!(r["altered"][0]["order_ref"], hex_ref(2).as_str());
    assert!(r["altered"][0]["detail"]
        .as_str()
        .unwrap_or("")
        .contains("data"));

    let out = audit(&["--repair"]);
    assert_eq!(out.status.code(), Some(1), "extra and altered rows remain");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("repaired 1 missing log"), "{text}");
    let back = db
        .count(&format!(
            "SELECT COUNT(*) FROM contract_events WHERE order_ref = '{lost_ref}'
               AND match_status = 'unknown_order' AND removed = 0"
        ))
        .await;
    assert_eq!(back, 1, "the missing payment is stored again, reconciled");

    let r = report(&audit(&["--json"]));
    assert_eq!(
        kinds(&r),
        [0, 1, 1],
        "only the missing one was healed: {r:#}"
    );

    // Against another endpoint (a URL carrying a key, never printed), the
    // same findings.
    let other = format!("{}/?key=AUDITKEY9f3e", chain.rpc_url());
    let out = audit(&["--json", "--rpc-url", &other]);
    assert_eq!(kinds(&report(&out)), [0, 1, 1]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("AUDITKEY9f3e"), "the key is never printed");
}
