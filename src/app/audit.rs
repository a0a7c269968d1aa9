//! `liqpass-indexer audit --from N --to M [--rpc-url URL] [--json]
//! [--repair]`: for operators after an incident. Asks the node for the
//! range again and compares it with `contract_events` (see
//! `indexer::AuditReport`); prints a table, or JSON. With `--repair` it
//! holds the write lease, like `backfill`, and stores the missing logs
//! through the normal write path.

use anyhow::Context;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use super::{as_leader, open_store};
use crate::chain::pool::{PoolError, RpcPool};
use crate::config::{SecretUrl, Settings};
use crate::health::Health;
use crate::indexer::{AuditReport, Indexer, IndexerError};
use crate::metrics::Metrics;

/// Runs the audit; fails (exit 1) unless the table and the chain agree
/// (after the repair, when one ran).
pub async fn audit(
    mut settings: Settings,
    from: u64,
    to: u64,
    rpc_url: Option<SecretUrl>,
    json: bool,
    repair: bool,
) -> anyhow::Result<()> {
    if let Some(url) = rpc_url {
        settings.chain.rpc_urls = vec![url];
    }
    reachable(&settings).await?;
    let report = if repair {
        as_leader(settings, "audit --repair", |indexer| {
            indexer.audit_range(from, to, true)
        })
        .await?
        .0
    } else {
        let store = open_store(&settings.database).await?;
        let metrics = Metrics::new(&Registry::new())?;
        let indexer = Indexer::connect(
            settings,
            store.clone(),
            metrics,
            Health::default(),
            CancellationToken::new(),
        )
        .await
        .context("connecting to the RPC endpoint")?;
        let report = indexer.audit_range(from, to, false).await;
        store.close().await;
        report?
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    let differences = report.missing.len() + report.extra.len() + report.altered.len();
    anyhow::ensure!(
        report.agrees(),
        "blocks {}..={}: the chain and contract_events disagree ({differences} difference(s), {} repaired)",
        report.from,
        report.to,
        report.repaired
    );
    Ok(())
}

/// Fails at once, naming the endpoint (redacted), when the first endpoint
/// does not answer or serves another chain: a one-shot command must not wait
/// for it forever as the daemon does.
async fn reachable(settings: &Settings) -> anyhow::Result<()> {
    let chain = &settings.chain;
    let pool = RpcPool::new(&chain.rpc_urls[..1], chain.scope(), chain.requests);
    pool.check_chain_id(0).await.map_err(|e| match e {
        e @ PoolError::WrongChain { .. } => IndexerError::Rpc(e).into(),
        e => anyhow::anyhow!("cannot ask the RPC endpoint: {e}"),
    })
}

fn print_table(r: &AuditReport) {
    println!(
        "audit of blocks {}..={} against {}: {} PremiumPaid log(s) on chain, {} stored",
        r.from, r.to, r.endpoint, r.on_chain, r.stored
    );
    let rows = [
        ("missing", &r.missing),
        ("extra", &r.extra),
        ("altered", &r.altered),
    ];
    if rows.iter().all(|(_, d)| d.is_empty()) {
        println!("they agree");
        return;
    }
    println!(
        "{:<8} {:>10} {:<66} {:>5} {:<66} detail",
        "kind", "block", "tx_hash", "log", "order_ref"
    );
    for (kind, differences) in rows {
        for d in differences {
            println!(
                "{kind:<8} {:>10} {:<66} {:>5} {:<66} {}",
                d.block, d.tx_hash, d.log_index, d.order_ref, d.detail
            );
        }
    }
    if r.repaired + r.not_repaired > 0 {
        println!(
            "repaired {} missing log(s); {} left to the indexer (above the checkpoint, or of another branch)",
            r.repaired, r.not_repaired
        );
    }
}
