//! Committing: a batch (or a reorg rollback) is written in one transaction
//! through [`Store::write`], retried whole until it commits or the daemon
//! stops; only after the commit are metrics, readiness and logs updated.
//! A failure episode names its cause on `/readyz` and in a metric, and logs
//! each new kind of error once, never every attempt.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::fetch::Batch;
use super::split;
use super::write::{self, Outcome, Written};
use super::Stop;
use crate::config::Settings;
use crate::domain::{BlockRef, MatchStatus, Scope};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::reconcile::Policy;
use crate::retry;
use crate::store::failure::WriteFailure;
use crate::store::{Store, StoreError, TxWork};

/// Order refs named in a batch's review line; the rows hold every one.
const REVIEW_REFS_SHOWN: usize = 5;
/// Longest wait between two attempts of a failing commit: once the cause is
/// gone (space freed, lock released) the next commit is at most this far off.
const LONGEST_COMMIT_PAUSE: Duration = Duration::from_secs(4);

/// The parts of the indexer a commit needs, borrowed apart from the fetcher
/// so that fetching the next range can overlap the commit.
pub(super) struct Writer<'a> {
    pub store: &'a Store,
    pub scope: &'a Scope,
    pub policy: &'a Policy,
    pub settings: &'a Settings,
    pub metrics: &'a Metrics,
    pub health: &'a Health,
    pub cancel: &'a CancellationToken,
    pub checkpoint: &'a mut Option<BlockRef>,
}

/// The blocks a committed batch covered, for metrics and logs.
struct Span {
    first: u64,
    last: BlockRef,
    ignored: u64,
    /// The last block's time, when its header was fetched.
    last_timestamp: Option<u64>,
}

impl Writer<'_> {
    /// Commits `batch` as one or more transactions of whole blocks, each
    /// sized to what the store says fits (`Store::rows_per_write`) and
    /// spaced by it (`store::pace`);
    /// the checkpoint advances with each. Returns the events written.
    pub async fn commit(&mut self, batch: Batch, head: u64, final_block: u64) -> Result<u64, Stop> {
        let started = Instant::now();
        let span = Span {
            first: batch.first,
            last: batch.last,
            ignored: batch.ignored,
            last_timestamp: batch
                .headers
                .iter()
                .find(|h| h.number == batch.last.number)
                .map(|h| h.timestamp),
        };
        let mut total = Written::default();
        let mut rest = Some(batch);
        while let Some(batch) = rest {
            let rows = self.store.rows_per_write();
            let (part, more) = split::split_first(batch, rows);
            rest = more;
            tracing::debug!(from = part.first, to = part.last.number, "writing batch");
            let work = write::WriteBatch {
                scope: self.scope,
                policy: self.policy,
                batch: &part,
                final_block,
                reorg_window: self.settings.chain.reorg_window,
                late_limit: (rows as u32).clamp(1, write::LATE_MATCH_LIMIT),
                verify: !self.settings.chain.verify_rpc_urls.is_empty(),
                finish: rest.is_none(),
            };
            let written: Written =
                commit_with_retry(self.store, self.metrics, self.health, self.cancel, &work)
                    .await?;
            *self.checkpoint = Some(part.last);
            self.metrics.indexed_block.set(part.last.number as i64);
            self.health.set_indexed(part.last.number);
            tracing::debug!(
                from = part.first,
                to = part.last.number,
                rows = written.rows,
                confirming = written.confirming,
                paid = written.paid,
                "transaction committed"
            );
            total.absorb(written);
        }
        self.after_commit(&span, &total, head, started.elapsed());
        Ok(total.rows)
    }

    fn after_commit(&self, batch: &Span, written: &Written, head: u64, elapsed: Duration) {
        let m = self.metrics;
        m.record_commit(elapsed, written.rows);
        m.ignored_logs.inc_by(batch.ignored);
        m.lag_blocks
            .set(head.saturating_sub(batch.last.number) as i64);
        record_outcomes(m, written);
        if written.treasury_moves > 0 {
            tracing::info!(
                from = batch.first,
                to = batch.last.number,
                moves = written.treasury_moves,
                "the contract moved its treasury (TreasuryUpdated): v2 payments after it must name the new one"
            );
        }
        if written.malformed > 0 {
            tracing::warn!(
                from = batch.first,
                to = batch.last.number,
                malformed = written.malformed,
                "logs with a PremiumPaid topic0 that no emit can produce were kept, not paid \
                 (`liqpass-indexer review` lists them; malformed_logs holds each)"
            );
        }
        if let Some(review) = Review::of(&written.outcomes) {
            tracing::warn!(
                from = batch.first,
                to = batch.last.number,
                total = review.total,
                by_reason = %review.by_reason(),
                order_refs = %review.first_refs.join(","),
                "payments need review (`liqpass-indexer status` counts them; contract_events holds each)"
            );
        }
        tracing::debug!(
            from = batch.first,
            to = batch.last.number,
            rows = written.rows,
            confirming = written.confirming,
            paid = written.paid,
            ignored = batch.ignored,
            "batch committed"
        );
        if let Some(timestamp) = batch.last_timestamp {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            m.lag_seconds.set(now.saturating_sub(timestamp) as i64);
        }
    }
}

/// Counts what a committed transaction stored: each outcome, the events by
/// version, the orders it moved.
pub(super) fn record_outcomes(m: &Metrics, written: &Written) {
    m.malformed_logs.inc_by(written.malformed);
    let mut per_version = HashMap::new();
    for o in &written.outcomes {
        m.record_payment(o.status);
        *per_version.entry(o.version).or_insert(0u64) += 1;
        if o.status != MatchStatus::Matched {
            tracing::debug!(order = o.order_id.as_deref().unwrap_or("-"),
                order_ref = %o.order_ref, reason = %o.status, "payment needs review");
        }
    }
    for (version, n) in per_version {
        m.record_events(version, n);
    }
    m.record_transition("confirming", written.confirming);
    m.record_transition("paid", written.paid);
}

/// The payments of one batch that need a person, summed up for one log line.
#[derive(Debug, PartialEq, Eq)]
struct Review {
    total: u64,
    counts: BTreeMap<&'static str, u64>,
    /// The first few order refs, in the batch's order.
    first_refs: Vec<String>,
}

impl Review {
    fn of(outcomes: &[Outcome]) -> Option<Review> {
        let mut review = Review {
            total: 0,
            counts: BTreeMap::new(),
            first_refs: Vec::new(),
        };
        for o in outcomes.iter().filter(|o| o.status != MatchStatus::Matched) {
            review.total += 1;
            *review.counts.entry(o.status.as_str()).or_default() += 1;
            if review.first_refs.len() < REVIEW_REFS_SHOWN {
                review.first_refs.push(format!("{:#x}", o.order_ref));
            }
        }
        (review.total > 0).then_some(review)
    }

    /// `underpaid=2 unknown_order=17`.
    fn by_reason(&self) -> String {
        let parts: Vec<_> = self
            .counts
            .iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect();
        parts.join(" ")
    }
}

/// Runs `work` through [`Store::write`] until it commits (in its turn:
/// `store::pace`): on any failure the transaction rolls back and the whole
/// thing is retried with backoff, so nothing (in particular the checkpoint)
/// is ever half written. While it fails, `/readyz` names the cause and a
/// metric counts it; each new kind of error is logged once per episode, and
/// the recovery once.
pub(super) async fn commit_with_retry<W: TxWork>(
    store: &Store,
    metrics: &Metrics,
    health: &Health,
    cancel: &CancellationToken,
    work: &W,
) -> Result<W::Output, Stop> {
    let mut backoff = retry::policy(LONGEST_COMMIT_PAUSE);
    let mut failures = 0u32;
    let mut kinds = HashSet::new();
    loop {
        let written = store.write(work).await;
        match written {
            Ok((out, held)) => {
                metrics.record_lock_hold(held);
                if failures > 0 {
                    health.set_db_failing(None);
                    let kinds: Vec<_> = kinds.iter().map(|k: &WriteFailure| k.label()).collect();
                    tracing::info!(failures, causes = ?kinds, "database writes recovered");
                }
                return Ok(out);
            }
            // Another replica leads now: never retried, never written.
            Err(e @ StoreError::Fenced { .. }) => return Err(Stop::Fatal(e.into())),
            Err(e) => {
                failures += 1;
                let cause = WriteFailure::of(&e);
                metrics.db_write_retries.inc();
                metrics.record_write_failure(cause);
                health.set_db_failing(Some(cause.describe(&e)));
                if kinds.insert(cause) {
                    tracing::error!(error = %e, cause = cause.label(), failures,
                        "batch not committed; rolled back, retrying");
                } else {
                    tracing::debug!(error = %e, failures, "batch still not committed");
                }
                // A shutdown during a failure episode leaves the batch uncommitted: fine.
                retry::pause(&mut backoff, cancel).await?;
            }
        }
    }
}

#[cfg(test)]
#[path = "commit_tests.rs"]
mod tests;
