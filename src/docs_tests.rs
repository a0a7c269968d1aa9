//! The docs against the code: every metric family the registry exports and
//! every alert is in docs/operations.md, every `/readyz` reason in
//! docs/troubleshooting.md, every command in docs/commands.md; and no doc
//! names a metric, alert, setting or command the code does not have. (The
//! settings' table is checked against `config::KEYS` in `config_tests`.)

use std::collections::BTreeSet;
use std::time::Duration;

use crate::domain::WriteFailure;
use crate::health::NotReady;
use crate::metrics::Metrics;
use crate::store::waits::LockWait;

const DOCS: &[(&str, &str)] = &[
    ("README.md", include_str!("../README.md")),
    (
        "docs/architecture.md",
        include_str!("../docs/architecture.md"),
    ),
    ("docs/commands.md", include_str!("../docs/commands.md")),
    (
        "docs/configuration.md",
        include_str!("../docs/configuration.md"),
    ),
    (
        "docs/database-contract.md",
        include_str!("../docs/database-contract.md"),
    ),
    ("docs/operations.md", include_str!("../docs/operations.md")),
    (
        "docs/outbox-and-webhooks.md",
        include_str!("../docs/outbox-and-webhooks.md"),
    ),
    (
        "docs/performance.md",
        include_str!("../docs/performance.md"),
    ),
    ("docs/providers.md", include_str!("../docs/providers.md")),
    (
        "docs/troubleshooting.md",
        include_str!("../docs/troubleshooting.md"),
    ),
    ("deploy/README.md", include_str!("../deploy/README.md")),
];
const OPERATIONS: &str = include_str!("../docs/operations.md");
const TROUBLESHOOTING: &str = include_str!("../docs/troubleshooting.md");
const COMMANDS: &str = include_str!("../docs/commands.md");
const ALERTS: &str = include_str!("../deploy/prometheus/alerts.yml");

/// Runs of `[a-z0-9_]` (or `[A-Za-z]` for alerts) that start with `prefix`.
fn words_from(text: &str, prefix: &str, part: fn(char) -> bool) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !part(c)).unwrap_or(tail.len());
        // `liqpass_indexer_catchup_*`: a pattern, not a name.
        if !tail[end..].starts_with('*') {
            found.insert(tail[..end].to_owned());
        }
        rest = &tail[end.max(1)..];
    }
    found
}

fn metric_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
}

/// Every family the registry exports once each kind of label has a value.
fn families() -> BTreeSet<String> {
    let registry = prometheus::Registry::new();
    let m = Metrics::new(&registry).expect("metrics");
    m.init_labels();
    m.record_rpc("eth_getLogs", "ep", Duration::from_millis(1), true);
    m.record_rpc("eth_getLogs", "ep", Duration::from_millis(1), false);
    m.rate_limited("ep");
    m.record_budget("ep", 1.0);
    m.record_refusal("ep", "blocks", Some(1));
    m.record_reorg(1);
    m.record_lock_hold(Duration::from_millis(1));
    m.record_range(1);
    m.record_commit(Duration::from_millis(1), 1);
    registry
        .gather()
        .iter()
        .map(|f| f.name().to_owned())
        .collect()
}

#[test]
fn every_metric_family_is_in_operations_and_no_doc_names_another() {
    let families = families();
    let documented = words_from(OPERATIONS, "liqpass_indexer_", metric_char);
    let missing: Vec<_> = families.difference(&documented).collect();
    assert!(missing.is_empty(), "docs/operations.md lacks {missing:?}");
    for (doc, text) in DOCS {
        for name in words_from(text, "liqpass_indexer_", metric_char) {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|b| families.contains(*b))
                .unwrap_or(&name);
            assert!(
                families.contains(base) || name == "liqpass_indexer_",
                "{doc} names {name}, which the registry does not export"
            );
        }
    }
}

#[test]
fn every_alert_is_in_operations_and_no_doc_names_another() {
    let alert_char = |c: char| c.is_ascii_alphanumeric();
    let alerts: BTreeSet<String> = ALERTS
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(str::to_owned)
        .collect();
    assert!(alerts.len() > 10, "{alerts:?}");
    let documented = words_from(OPERATIONS, "LiqpassIndexer", alert_char);
    let missing: Vec<_> = alerts.difference(&documented).collect();
    assert!(missing.is_empty(), "docs/operations.md lacks {missing:?}");
    for (doc, text) in DOCS {
        for name in words_from(text, "LiqpassIndexer", alert_char) {
            assert!(
                alerts.contains(&name),
                "{doc} names the alert {name}, which alerts.yml does not have"
            );
        }
    }
}

/// Each reason `/readyz` can give, its numbers written as `N`.
fn readiness_reasons() -> Vec<String> {
    let since = std::time::Instant::now();
    let mut reasons = vec![
        NotReady::Starting,
        NotReady::Stopping,
        NotReady::RpcUnreachable,
        NotReady::WaitingOnLock(LockWait {
            since,
            blockers: vec![4242],
        }),
        NotReady::WaitingOnLock(LockWait {
            since,
            blockers: vec![],
        }),
        NotReady::Stalled,
        NotReady::Lagging { lag: 30, max: 20 },
        NotReady::DeepReorg { count: 1 },
    ];
    reasons.extend(WriteFailure::ALL.map(|f| NotReady::DbWritesFailing {
        cause: f.describe().to_owned(),
    }));
    // A new reason must be added above (and to the troubleshooting table).
    for r in &reasons {
        match r {
            NotReady::Starting
            | NotReady::Stopping
            | NotReady::RpcUnreachable
            | NotReady::WaitingOnLock(_)
            | NotReady::DbWritesFailing { .. }
            | NotReady::Stalled
            | NotReady::Lagging { .. }
            | NotReady::DeepReorg { .. } => {}
        }
    }
    let mut texts: Vec<String> = reasons.iter().map(ToString::to_string).collect();
    texts.push(crate::http::DB_DOES_NOT_ANSWER.to_owned());
    texts.iter().map(|t| numbers_as_n(t)).collect()
}

fn numbers_as_n(text: &str) -> String {
    let mut out = String::new();
    let mut in_number = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('N');
            }
            in_number = true;
        } else {
            out.push(c);
            in_number = false;
        }
    }
    out
}

#[test]
fn every_readiness_reason_is_in_troubleshooting() {
    let doc = numbers_as_n(TROUBLESHOOTING);
    for reason in readiness_reasons() {
        assert!(
            doc.contains(&reason),
            "docs/troubleshooting.md lacks the /readyz reason {reason:?}"
        );
    }
}

#[test]
fn every_command_is_in_commands_and_no_other() {
    use clap::CommandFactory;
    let code: BTreeSet<String> = crate::cli::Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .filter(|n| n != "help")
        .collect();
    let documented: BTreeSet<String> = COMMANDS
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split([' ', '`']).next())
        .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        documented, code,
        "docs/commands.md's table against the CLI's commands"
    );
}
