//! `liqpass-indexer audit --from --to`: a block range asked for again and
//! compared with `contract_events`, log by log: **missing** (on chain, not
//! stored), **extra** (stored and live, not on chain) and **altered** (the
//! same tx hash and log index, another block hash, topic or data). With
//! `repair`, the missing logs are stored through the normal write path (the
//! caller holds the write lease); extra and altered rows are only reported:
//! a person must look. Range by range, so memory follows one range.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alloy::primitives::B256;
use alloy::rpc::types::Log;
use serde::Serialize;

use super::Path;
use crate::chain::decode;
use crate::domain::{BlockRef, LogKey, Payment};
use crate::indexer::batch::decode_all;
use crate::indexer::fetch::Fetcher;
use crate::indexer::write::RecoverLogs;
use crate::indexer::writer::{commit_with_retry, record_outcomes, Writer};
use crate::indexer::{IndexerError, Stop};
use crate::store::{checkpoint, events};

/// How often a long audit says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// One difference between the chain and the table.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub block: u64,
    pub tx_hash: String,
    pub log_index: u64,
    pub order_ref: String,
    pub detail: String,
}

/// What `audit` found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub from: u64,
    /// The range's end (capped at the node's head).
    pub to: u64,
    /// The endpoint asked (redacted).
    pub endpoint: String,
    /// `PremiumPaid` logs on chain in the range.
    pub on_chain: u64,
    /// Live events stored in the range.
    pub stored: u64,
    pub missing: Vec<Difference>,
    pub extra: Vec<Difference>,
    pub altered: Vec<Difference>,
    /// Missing logs stored by `--repair`.
    pub repaired: u64,
    /// Missing logs `--repair` left alone: above the checkpoint (the
    /// indexer stores them when it gets there), or of another branch than
    /// the block hash stored for their block.
    pub not_repaired: u64,
}

impl Report {
    /// True when the table holds exactly what the chain does (after the
    /// repair, if one ran).
    pub fn agrees(&self) -> bool {
        self.extra.is_empty()
            && self.altered.is_empty()
            && self.missing.len() as u64 == self.repaired
    }
}

fn difference(p: &Payment, detail: impl Into<String>) -> Difference {
    Difference {
        block: p.block.number,
        tx_hash: format!("{:#x}", p.key.tx_hash),
        log_index: p.key.log_index,
        order_ref: format!("{:#x}", p.order_ref),
        detail: detail.into(),
    }
}

/// A range audit's means: the node, and the writer's store it compares
/// with and repairs through.
pub(crate) struct RangeAudit<'a> {
    pub fetcher: &'a Fetcher,
    pub writer: &'a Writer,
}

impl RangeAudit<'_> {
    /// Audits `from..=to` (see the module); with `repair`, stores what is
    /// missing.
    pub async fn run(&self, from: u64, to: u64, repair: bool) -> Result<Report, IndexerError> {
        let cancelled = |_| IndexerError::Cancelled;
        let head = self.fetcher.head().await.map_err(cancelled)?;
        let mut report = Report {
            from,
            to: to.min(head),
            endpoint: self.fetcher.pool.endpoint(),
            ..Report::default()
        };
        let mut missing = Vec::new();
        let mut next = from;
        let mut said = Instant::now();
        while next <= report.to {
            let (a, b) = {
                let mut sizer = self.fetcher.sizer();
                sizer.set_cap(self.fetcher.pool.range_cap());
                sizer.next_range(next, report.to)
            };
            match self.fetcher.logs(a, b).await.map_err(cancelled)? {
                Ok(logs) => {
                    self.fetcher.sizer().accepted(b - a + 1, logs.len() as u64);
                    missing.extend(self.compare(&logs, (a, b), &mut report).await?);
                    next = b + 1;
                }
                Err(refused) => self
                    .fetcher
                    .refused(a, b, refused)
                    .await
                    .map_err(cancelled)?,
            }
            if said.elapsed() >= PROGRESS_EVERY {
                said = Instant::now();
                tracing::info!(
                    block = next,
                    to = report.to,
                    missing = report.missing.len(),
                    extra = report.extra.len(),
                    altered = report.altered.len(),
                    "auditing"
                );
            }
        }
        if repair && !missing.is_empty() {
            self.repair(missing, head, &mut report).await?;
        }
        Ok(report)
    }

    /// Compares the logs of `span` with the live events stored for it;
    /// returns the missing payments.
    async fn compare(
        &self,
        logs: &[Log],
        span: (u64, u64),
        report: &mut Report,
    ) -> Result<Vec<Payment>, IndexerError> {
        let last = BlockRef {
            number: span.1,
            hash: B256::ZERO,
        };
        let chain = decode_all(span.0, last, Vec::new(), logs).payments;
        let raw: HashMap<LogKey, &Log> = logs
            .iter()
            .filter(|l| !l.removed)
            .filter_map(|l| {
                let key = LogKey {
                    tx_hash: l.transaction_hash?,
                    log_index: l.log_index?,
                };
                Some((key, l))
            })
            .collect();
        let stored = {
            let mut conn = self.writer.store.read().await?;
            events::live_in_range(&mut conn.conn(), &self.writer.scope, span.0, span.1).await?
        };
        report.on_chain += chain.len() as u64;
        report.stored += stored.len() as u64;
        let mut seen = std::collections::HashSet::new();
        for s in &stored {
            seen.insert(s.key);
            match raw.get(&s.key) {
                None => report.extra.push(difference(s, "stored, but not on chain")),
                Some(log) => {
                    let differs = decode::differences(s, log);
                    if !differs.is_empty() {
                        report.altered.push(difference(s, differs.join(", ")));
                    }
                }
            }
        }
        let missing: Vec<Payment> = chain
            .into_iter()
            .filter(|p| !seen.contains(&p.key))
            .collect();
        report.missing.extend(
            missing
                .iter()
                .map(|p| difference(p, "on chain, not stored")),
        );
        Ok(missing)
    }

    /// Stores the missing payments through the normal write path.
    async fn repair(
        &self,
        mut missing: Vec<Payment>,
        head: u64,
        report: &mut Report,
    ) -> Result<(), IndexerError> {
        let stop = |s: Stop| match s {
            Stop::Fatal(e) => e,
            Stop::Cancelled => IndexerError::Cancelled,
        };
        self.fetcher
            .fill_timestamps(&mut missing)
            .await
            .map_err(|_| IndexerError::Cancelled)?;
        let final_block = self
            .fetcher
            .final_block(head)
            .await
            .map_err(|_| IndexerError::Cancelled)?;
        let work = RecoverLogs {
            scope: &self.writer.scope,
            policy: &self.writer.policy,
            payments: &missing,
            final_block,
            verify: !self.writer.settings.chain.verify_rpc_urls.is_empty(),
            audited: None,
        };
        let w = self.writer;
        let out = commit_with_retry(&w.store, &w.metrics, &w.health, &w.cancel, &work)
            .await
            .map_err(stop)?;
        record_outcomes(&w.metrics, &out.written);
        w.metrics
            .record_recovered(Path::Repair.label(), out.stored.len() as u64);
        report.repaired = out.stored.len() as u64;
        report.not_repaired = missing.len() as u64 - report.repaired;
        let checkpoint = {
            let mut conn = self.writer.store.read().await?;
            checkpoint::read(&mut conn.conn(), &self.writer.scope).await?
        };
        tracing::warn!(
            repaired = report.repaired,
            not_repaired = report.not_repaired,
            checkpoint = checkpoint.map(|c| c.number),
            "missing logs stored (audit --repair)"
        );
        Ok(())
    }
}
