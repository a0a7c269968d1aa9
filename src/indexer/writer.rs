//! The writer stage: it owns the store and the checkpoint. It commits the
//! batches the fetch stage hands it, each cut into transactions of whole
//! blocks (`batch::split_first`), and rolls reorgs back; finality is
//! promoted in the same transactions (`write`). Each transaction goes
//! through [`Store::write`] (which paces it on SQLite) and is retried whole
//! until it commits or the daemon stops (`commit_with_retry`, which the
//! leader-only tasks use too); only after a commit are metrics, readiness
//! and logs updated. A failure episode names its cause on `/readyz` and in a
//! metric, and logs each new kind of error once, never every attempt.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::batch::{self, Batch};
use super::fetch::Fetcher;
use super::write::{self, Outcome, Written};
use super::{IndexerError, Stop};
use crate::chain::window::common_ancestor;
use crate::config::Settings;
use crate::domain::{BlockRef, MatchStatus, Scope};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::reconcile::Policy;
use crate::retry;
use crate::store::failure::WriteFailure;
use crate::store::{blocks, checkpoint, incidents, Store, StoreError, TxWork};

/// Order refs named in a batch's review line; the rows hold every one.
const REVIEW_REFS_SHOWN: usize = 5;
/// Longest wait between two attempts of a failing commit: once the cause is
/// gone (space freed) the next commit is at most this far off.
const LONGEST_COMMIT_PAUSE: Duration = Duration::from_secs(4);
/// The pause after a commit that ended waiting on another session's lock:
/// the wait itself was the pause, and the next attempt must be waiting
/// again when the lock goes (commits resume within a second of it).
const LOCK_WAIT_AGAIN: Duration = Duration::from_millis(50);

/// The writer stage: the store, and the checkpoint it has committed.
pub(super) struct Writer {
    pub store: Store,
    pub scope: Scope,
    pub policy: Policy,
    pub settings: Settings,
    pub metrics: Metrics,
    pub health: Health,
    pub cancel: CancellationToken,
    /// The last block committed (`None` before the first one): changed
    /// only by a commit, a reorg's rollback or a back-fill's restore.
    checkpoint: Option<BlockRef>,
}

/// The blocks a committed batch covered, for metrics and logs.
struct Span {
    first: u64,
    last: BlockRef,
    ignored: u64,
    /// The last block's time, when its header was fetched.
    last_timestamp: Option<u64>,
}

impl Writer {
    /// The writer of `scope`, from the checkpoint stored (shown in
    /// readiness and metrics).
    pub async fn open(
        store: Store,
        scope: Scope,
        policy: Policy,
        settings: Settings,
        metrics: Metrics,
        health: Health,
        cancel: CancellationToken,
    ) -> Result<Self, IndexerError> {
        let checkpoint = read_with_retry(&cancel, "the checkpoint", || async {
            checkpoint::read(&mut store.read().await?.conn(), &scope).await
        })
        .await
        .map_err(|stop| match stop {
            Stop::Cancelled => IndexerError::Cancelled,
            Stop::Fatal(e) => e,
        })?;
        if let Some(cp) = checkpoint {
            health.set_indexed(cp.number);
            metrics.indexed_block.set(cp.number as i64);
        }
        Ok(Self {
            store,
            scope,
            policy,
            settings,
            metrics,
            health,
            cancel,
            checkpoint,
        })
    }

    /// The last block committed.
    pub fn checkpoint(&self) -> Option<BlockRef> {
        self.checkpoint
    }

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
            let (part, more) = batch::split_first(batch, rows);
            rest = more;
            tracing::debug!(from = part.first, to = part.last.number, "writing batch");
            let work = write::WriteBatch {
                scope: &self.scope,
                policy: &self.policy,
                batch: &part,
                after: self.checkpoint,
                final_block,
                reorg_window: self.settings.chain.reorg_window,
                late_limit: (rows as u32).clamp(1, write::LATE_MATCH_LIMIT),
                verify: !self.settings.chain.verify_rpc_urls.is_empty(),
                finish: rest.is_none(),
            };
            let written: Written = commit_with_retry(
                &self.store,
                &self.metrics,
                &self.health,
                &self.cancel,
                &work,
            )
            .await?;
            self.checkpoint = Some(part.last);
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
        let m = &self.metrics;
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

impl Writer {
    /// Rolls a reorg back: finds the common ancestor of the stored block
    /// hashes and the node's chain (headers through `fetcher`), and undoes
    /// everything above it in one transaction (events removed, orders put
    /// back or reversed, checkpoint moved back).
    pub async fn roll_back_reorg(&mut self, fetcher: &Fetcher) -> Result<(), Stop> {
        let cp = self
            .checkpoint
            .expect("a reorg is only detected against a checkpoint");
        let window = self.settings.chain.reorg_window;
        let stored = read_with_retry(&self.cancel, "the stored block hashes", || async {
            let mut tx = self.store.read().await?;
            blocks::recent(&mut tx.conn(), &self.scope, cp.number, window).await
        })
        .await?;
        let mut ancestor = None;
        for chunk in stored.chunks(16) {
            let mut canonical = HashMap::new();
            for b in chunk {
                canonical.insert(b.number, fetcher.header(b.number).await?.hash);
            }
            if let Some(found) = common_ancestor(chunk, &canonical) {
                ancestor = Some(found);
                break;
            }
        }
        let ancestor = match ancestor {
            Some(a) => a,
            None => {
                let below = stored
                    .last()
                    .map_or(cp.number, |b| b.number)
                    .saturating_sub(1);
                tracing::error!(
                    checkpoint = cp.number,
                    below,
                    "reorg deeper than the stored window; rolling back below it"
                );
                fetcher.header(below).await?.block_ref()
            }
        };
        let depth = cp.number - ancestor.number;
        let work = write::RollBack {
            scope: &self.scope,
            ancestor,
            old_checkpoint: cp.number,
        };
        let (metrics, health) = (&self.metrics, &self.health);
        let rolled = commit_with_retry(&self.store, metrics, health, &self.cancel, &work).await?;
        self.checkpoint = Some(ancestor);
        health.set_indexed(ancestor.number);
        metrics.indexed_block.set(ancestor.number as i64);
        metrics.record_reorg(depth);
        metrics.record_transition("pending", rolled.reverted);
        if rolled.reversed.is_empty() {
            tracing::warn!(
                depth,
                ancestor = ancestor.number,
                events_removed = rolled.events_removed,
                orders_reverted = rolled.reverted,
                "reorg rolled back"
            );
        } else {
            metrics.deep_reorgs.inc();
            metrics.record_transition("reversed", rolled.reversed.len() as u64);
            tracing::error!(depth, ancestor = ancestor.number, orders = ?rolled.reversed,
                "deep reorg: payments already counted as paid were reversed");
        }
        self.refresh_incidents().await
    }

    /// Re-reads the open deep-reorg incidents into readiness and metrics.
    pub async fn refresh_incidents(&self) -> Result<(), Stop> {
        let open = read_with_retry(&self.cancel, "the open deep-reorg incidents", || async {
            incidents::open_count(&mut self.store.read().await?.conn(), &self.scope).await
        })
        .await?;
        self.health.set_deep_reorgs(open);
        self.metrics.unacknowledged_deep_reorgs.set(open);
        Ok(())
    }

    /// A back-fill's end: the checkpoint goes back to `saved` if the
    /// re-scan left it behind (a re-scan must not rewind the live
    /// checkpoint). Through the fence: a back-fill that lost its lease
    /// meanwhile must not move the new leader's checkpoint.
    pub async fn restore(&mut self, saved: Option<BlockRef>) -> Result<(), StoreError> {
        if let (Some(saved), Some(now)) = (saved, self.checkpoint) {
            if now.number < saved.number {
                let restore = write::RestoreCheckpoint {
                    scope: &self.scope,
                    block: saved,
                };
                self.store.write(&restore).await?;
                self.checkpoint = Some(saved);
            }
        }
        Ok(())
    }

    /// Forgets the checkpoint for a back-fill's re-scan (see `restore`);
    /// gives back the one it had.
    pub fn forget_checkpoint(&mut self) -> Option<BlockRef> {
        self.checkpoint.take()
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
                metrics.db_writes_alone.set(i64::from(store.writes_alone()));
                health.write_committed();
                tracing::debug!(
                    held_ms = held.as_secs_f64() * 1e3,
                    rows = work.rows(),
                    "write lock held"
                );
                if failures > 0 {
                    let kinds: Vec<_> = kinds.iter().map(|k: &WriteFailure| k.label()).collect();
                    tracing::info!(failures, causes = ?kinds, "database writes recovered");
                }
                return Ok(out);
            }
            // Another replica leads now, or the database lost what this
            // writer committed: never retried; the term ends.
            Err(e @ (StoreError::Fenced { .. } | StoreError::CheckpointMoved { .. })) => {
                return Err(Stop::Fatal(e.into()))
            }
            Err(e) => {
                failures += 1;
                let cause = WriteFailure::of(&e);
                metrics.db_write_retries.inc();
                metrics.record_write_failure(cause);
                health.write_failed(cause.describe().to_owned());
                if kinds.insert(cause) {
                    tracing::error!(error = %e, cause = cause.label(), failures,
                        "batch not committed; rolled back, retrying");
                } else {
                    tracing::debug!(error = %e, failures, "batch still not committed");
                }
                // A shutdown during a failure episode leaves the batch uncommitted: fine.
                if cause == WriteFailure::LockWait {
                    // It waited already (the busy timeout, `lock_timeout`):
                    // at once again, so that it takes the lock the moment
                    // the other session lets it go, and without backing
                    // off, however long that session holds it.
                    retry::pause_for(LOCK_WAIT_AGAIN, cancel).await?;
                } else {
                    retry::pause(&mut backoff, cancel).await?;
                }
            }
        }
    }
}

/// Runs `read` (its own bounded read transaction: `Store::read`) until it
/// answers, backing off between tries: a database that restarts, or a
/// lock the order API holds, holds the writer up and is logged (once per
/// episode, and the recovery), never ends the term.
pub(super) async fn read_with_retry<T, F, Fut>(
    cancel: &CancellationToken,
    what: &'static str,
    read: F,
) -> Result<T, Stop>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut backoff = retry::policy(LONGEST_COMMIT_PAUSE);
    let mut failures = 0u32;
    loop {
        match read().await {
            Ok(out) => {
                if failures > 0 {
                    tracing::info!(what, failures, "database reads recovered");
                }
                return Ok(out);
            }
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(error = %e, what, cause = WriteFailure::of(&e).label(),
                        "reading the database failed; retrying");
                }
                failures += 1;
                retry::pause(&mut backoff, cancel).await?;
            }
        }
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
