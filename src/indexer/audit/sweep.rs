//! The pending-order sweep: every `reconcile.pending_sweep_interval_s`, the
//! `PremiumPaid` logs whose orderId is one of the orders still pending more
//! than `reconcile.pending_sweep_grace_s` after they were created are asked
//! for by name (topic1 as an OR-list of up to [`REFS_PER_REQUEST`]). A log
//! found and not stored goes through the normal path (`Path::Sweep`).
//!
//! Bounded: the newest [`MAX_ORDERS`] such orders created within
//! [`LOOKBACK`], one request per 100 of them per getLogs range, out of the
//! audit's share, a few ranges per round (the sweep resumes next round).
//! An order is looked for over the blocks since its creation (less
//! [`CLOCK_MARGIN`]) the first time, then over the blocks since the last
//! sweep; every [`FULL_EVERY`]th sweep looks at every order's whole span
//! again (an answer may have left a log out the first time too). The block
//! of a time is found by interpolating on header timestamps, at most
//! [`MAX_PROBES`] headers, remembered for a while.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy::primitives::B256;
use tokio_util::sync::CancellationToken;

use super::{Auditor, Path, RANGES_PER_ROUND};
use crate::indexer::write::QueueLate;
use crate::indexer::writer::commit_with_retry;
use crate::indexer::Stop;
use crate::store::{audit, checkpoint, events};

/// orderIds per request.
pub const REFS_PER_REQUEST: usize = 100;
/// Pending orders one sweep looks for, at most (the newest).
pub const MAX_ORDERS: u32 = 1_000;
/// Only orders created this recently are looked for: older blocks have
/// long been re-asked by the audit.
pub const LOOKBACK: Duration = Duration::from_secs(24 * 3600);
/// Seconds the sweep starts before an order's creation: the order API's
/// clock and the chain's may disagree.
pub const CLOCK_MARGIN: u64 = 600;
/// Every this many sweeps, every order's whole span is looked at again.
pub const FULL_EVERY: u64 = 12;
/// Headers asked for at most to find the block of a time.
const MAX_PROBES: usize = 12;

/// One range still to be asked for some orders.
#[derive(Debug)]
struct Job {
    refs: Vec<B256>,
    next: u64,
    to: u64,
}

/// When the next sweep is due, what is left of the current one, and what
/// earlier ones learned.
#[derive(Debug)]
pub(super) struct Sweep {
    every: Option<Duration>,
    next_at: Option<Instant>,
    jobs: VecDeque<Job>,
    /// Sweeps planned so far.
    count: u64,
    /// The orders the last sweep looked for, and the last block it asked.
    seen: HashSet<B256>,
    swept_to: Option<u64>,
    /// Block number by timestamp, from the headers probed.
    probes: BTreeMap<u64, u64>,
}

impl Sweep {
    pub(super) fn new(every: Option<Duration>) -> Self {
        Self {
            every,
            next_at: every.map(|e| Instant::now() + e),
            jobs: VecDeque::new(),
            count: 0,
            seen: HashSet::new(),
            swept_to: None,
            probes: BTreeMap::new(),
        }
    }

    /// Now while a sweep is under way, else when the next one is due.
    pub(super) fn due_at(&self) -> Option<Instant> {
        if self.jobs.is_empty() {
            self.next_at
        } else {
            Some(Instant::now())
        }
    }
}

impl Auditor {
    /// A turn of the sweep: plans one when due, then asks a few ranges.
    pub(super) async fn run_sweep(&mut self, cancel: &CancellationToken) -> Result<(), Stop> {
        let Some(every) = self.sweep.every else {
            return Ok(());
        };
        if self.sweep.jobs.is_empty() {
            self.sweep.next_at = Some(Instant::now() + every);
            self.plan_sweep(cancel).await?;
        }
        let final_block = self.final_block(cancel).await?.unwrap_or(0);
        for _ in 0..RANGES_PER_ROUND {
            let Some(job) = self.sweep.jobs.front() else {
                break;
            };
            let (next, to, refs) = (job.next, job.to, job.refs.clone());
            let Some((span, logs)) = self.ask_range(next, to, Some(&refs), cancel).await? else {
                // Failing: the rest waits for the next sweep.
                self.sweep.jobs.clear();
                return Ok(());
            };
            let Some(logs) = logs else {
                continue;
            };
            self.found(&logs, span, Path::Sweep, false, final_block, cancel)
                .await?;
            let job = self.sweep.jobs.front_mut().expect("the job asked about");
            job.next = span.1 + 1;
            if job.next > job.to {
                self.sweep.jobs.pop_front();
            }
        }
        Ok(())
    }

    /// The ranges of one sweep: each pending order from its creation when
    /// it is new to the sweep (or on a full sweep), else from the last
    /// sweep's end, to the checkpoint.
    async fn plan_sweep(&mut self, cancel: &CancellationToken) -> Result<(), Stop> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let grace = self.settings.reconcile.pending_sweep_grace.as_secs();
        let since = now.saturating_sub(LOOKBACK.as_secs());
        let (pending, checkpoint, unqueued) = {
            let mut conn = self.store.read().await?;
            let until = now.saturating_sub(grace);
            let pending = audit::pending_orders(&mut conn.conn(), since, until, MAX_ORDERS).await?;
            let refs: Vec<B256> = pending.iter().map(|p| p.order_ref).collect();
            (
                pending,
                checkpoint::read(&mut conn.conn(), &self.scope).await?,
                events::unqueued_for(&mut conn.conn(), &self.scope, &refs).await?,
            )
        };
        if !unqueued.is_empty() {
            // Payments stored as paying no order while their order was
            // being inserted (PostgreSQL): matched by the next batch.
            let work = QueueLate {
                event_ids: &unqueued,
            };
            commit_with_retry(&self.store, &self.metrics, &self.health, cancel, &work).await?;
            tracing::warn!(
                events = unqueued.len(),
                "pending orders with payments stored as paying no order: queued for late matching"
            );
        }
        self.sweep.probes = self
            .sweep
            .probes
            .split_off(&since.saturating_sub(CLOCK_MARGIN));
        let Some(checkpoint) = checkpoint.map(|c| c.number) else {
            return Ok(());
        };
        let full = self.sweep.count.is_multiple_of(FULL_EVERY);
        self.sweep.count += 1;
        let (new, known): (Vec<_>, Vec<_>) = pending
            .iter()
            .partition(|p| full || !self.sweep.seen.contains(&p.order_ref));
        let mut plan = Vec::new();
        if let Some(oldest) = new.iter().map(|p| p.created_at).min() {
            let start = oldest.saturating_sub(CLOCK_MARGIN);
            let Some(from) = self.block_at(start, checkpoint, cancel).await? else {
                return Ok(());
            };
            plan.push((new.iter().map(|p| p.order_ref).collect::<Vec<_>>(), from));
        }
        if let (false, Some(swept)) = (known.is_empty(), self.sweep.swept_to) {
            plan.push((known.iter().map(|p| p.order_ref).collect(), swept + 1));
        }
        for (mut refs, from) in plan {
            refs.sort();
            for group in refs.chunks(REFS_PER_REQUEST) {
                if from <= checkpoint {
                    self.sweep.jobs.push_back(Job {
                        refs: group.to_vec(),
                        next: from,
                        to: checkpoint,
                    });
                }
            }
        }
        self.sweep.seen = pending.iter().map(|p| p.order_ref).collect();
        self.sweep.swept_to = Some(checkpoint);
        tracing::debug!(
            orders = pending.len(),
            full,
            requests_spent = self.share.spent(),
            "pending-order sweep planned"
        );
        Ok(())
    }

    /// A block at or before the time `ts` (unix seconds), at most `hi`:
    /// interpolated on header timestamps (`None` when a header could not be
    /// read; the sweep waits for its next turn).
    async fn block_at(
        &mut self,
        ts: u64,
        hi: u64,
        cancel: &CancellationToken,
    ) -> Result<Option<u64>, Stop> {
        let start = self.settings.chain.start_block.min(hi);
        // What earlier probes tell: the latest block known to be at or
        // before `ts`, and the earliest known to be after it.
        let below = self.sweep.probes.range(..=ts).next_back().map(|(_, &b)| b);
        let above = self.sweep.probes.range(ts + 1..).next().map(|(_, &b)| b);
        let mut lo = below.map_or(start, |b| b.max(start)).min(hi);
        let mut hi = above.map_or(hi, |b| b.min(hi)).max(lo);
        let Some(mut t_lo) = self.probe(lo, cancel).await? else {
            return Ok(None);
        };
        if t_lo > ts {
            return Ok(Some(lo));
        }
        let Some(mut t_hi) = self.probe(hi, cancel).await? else {
            return Ok(None);
        };
        if t_hi <= ts {
            return Ok(Some(hi));
        }
        for _ in 0..MAX_PROBES {
            if hi - lo <= 1 {
                break;
            }
            let span = (t_hi - t_lo).max(1);
            let guess = lo + ((ts - t_lo) as u128 * (hi - lo) as u128 / span as u128) as u64;
            let guess = guess.clamp(lo + 1, hi - 1);
            let Some(t) = self.probe(guess, cancel).await? else {
                return Ok(None);
            };
            if t <= ts {
                (lo, t_lo) = (guess, t);
            } else {
                (hi, t_hi) = (guess, t);
            }
        }
        Ok(Some(lo))
    }

    /// The timestamp of block `number` (remembered), from the primary.
    async fn probe(
        &mut self,
        number: u64,
        cancel: &CancellationToken,
    ) -> Result<Option<u64>, Stop> {
        if let Some((&t, _)) = self.sweep.probes.iter().find(|(_, &b)| b == number) {
            return Ok(Some(t));
        }
        Ok(self.primary_header(number, cancel).await?.map(|h| {
            // Several blocks may share a second: keep the latest for it.
            let b = self.sweep.probes.entry(h.timestamp).or_insert(number);
            *b = (*b).max(number);
            h.timestamp
        }))
    }
}
