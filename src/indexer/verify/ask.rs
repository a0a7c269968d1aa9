//! Asking one verifier: one `eth_getLogs` per run of candidate blocks; its
//! head, then the logs again, only when a log is missing; a run the verifier
//! refuses as too wide is halved (by payments). Failures become
//! [`Verdict::NotYet`], never disputes. Every log it returned is handed
//! back too: one it returned and we never stored is a completeness finding.

use std::time::Instant;

use alloy::rpc::types::Log;

use super::compare::{judge, runs, Verdict};
use crate::chain::pool::RpcPool;
use crate::chain::source::{ChainError, ChainSource};
use crate::metrics::Metrics;
use crate::store::verify::Unverified;

/// One verifying endpoint.
pub(super) struct Endpoint {
    pub(super) pool: RpcPool,
    /// Redacted, for logs, metrics and the stored detail.
    pub(super) name: String,
}

impl Endpoint {
    /// This verifier's verdict on each candidate (sorted by block), and
    /// every log it returned (checked for completeness by the caller).
    pub(super) async fn ask(
        &self,
        candidates: &[Unverified],
        max_range: u64,
        metrics: &Metrics,
    ) -> (Vec<Verdict>, Vec<Log>) {
        let mut verdicts = vec![Verdict::NotYet("not asked".into()); candidates.len()];
        let mut returned = Vec::new();
        let source = match self.pool.source().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(verifier = %self.name, error = %e, "verifier unavailable; asked again later");
                self.pool.failed();
                return (
                    vec![Verdict::NotYet(e.to_string()); candidates.len()],
                    returned,
                );
            }
        };
        let blocks: Vec<u64> = candidates.iter().map(|c| c.payment.block.number).collect();
        let mut work = runs(&blocks, max_range);
        while let Some(run) = work.pop() {
            let part = &candidates[run.clone()];
            match self.judge_run(&source, part, metrics).await {
                Ok((found, logs)) => {
                    self.pool.succeeded();
                    verdicts[run].clone_from_slice(&found);
                    returned.extend(logs);
                }
                // A verifier with smaller caps: halve the run (by payments).
                Err(ChainError::RangeRefused { .. }) if run.len() > 1 => {
                    let mid = run.start + run.len() / 2;
                    work.push(run.start..mid);
                    work.push(mid..run.end);
                }
                Err(e) => {
                    tracing::warn!(verifier = %self.name, error = %e, "verifier failed; asked again later");
                    self.pool.failed();
                    let why = Verdict::NotYet(e.to_string());
                    verdicts[run].fill(why);
                }
            }
        }
        (verdicts, returned)
    }

    /// Verdicts on `part`, a run of candidates sorted by block, and the
    /// logs the verifier returned for it.
    async fn judge_run(
        &self,
        source: &ChainSource,
        part: &[Unverified],
        metrics: &Metrics,
    ) -> Result<(Vec<Verdict>, Vec<Log>), ChainError> {
        let from = part.first().map_or(0, |c| c.payment.block.number);
        let to = part.last().map_or(0, |c| c.payment.block.number);
        let logs = self.logs(source, from, to, metrics).await?;
        let first: Vec<_> = part
            .iter()
            .map(|c| judge(&c.payment, &logs, None))
            .collect();
        if !first.iter().any(|v| matches!(v, Verdict::NotYet(_))) {
            return Ok((first, logs));
        }
        // Something is missing: its head first, then the logs again.
        let started = Instant::now();
        let head = source.head().await;
        metrics.record_rpc(
            "eth_blockNumber",
            &self.name,
            started.elapsed(),
            head.is_ok(),
        );
        let head = head?;
        let logs = self.logs(source, from, to, metrics).await?;
        let verdicts = part
            .iter()
            .map(|c| judge(&c.payment, &logs, Some(head)))
            .collect();
        Ok((verdicts, logs))
    }

    async fn logs(
        &self,
        source: &ChainSource,
        from: u64,
        to: u64,
        metrics: &Metrics,
    ) -> Result<Vec<Log>, ChainError> {
        let started = Instant::now();
        let logs = source.logs(from, to).await;
        metrics.record_rpc("eth_getLogs", &self.name, started.elapsed(), logs.is_ok());
        logs
    }
}
