//! The pending-order sweep: every `reconcile.pending_sweep_interval_s`, the
//! `PremiumPaid` logs whose orderId is one of the orders still pending more
//! than `reconcile.pending_sweep_grace_s` after they were created are asked
//! for by name (topic1 as an OR-list of up to [`REFS_PER_REQUEST`]), over
//! the blocks from the oldest one's creation (less [`CLOCK_MARGIN`]) to the
//! checkpoint. A log found and not stored goes through the normal path
//! (`Path::Sweep`). Bounded: the newest [`MAX_ORDERS`] such orders created
//! within [`LOOKBACK`], so a sweep asks one request per 100 of them per
//! getLogs range of those blocks, out of the audit's share. The block an
//! order was created at is found from headers (interpolating on their
//! timestamps, at most [`MAX_PROBES`] of them, remembered between sweeps).

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy::primitives::B256;
use tokio_util::sync::CancellationToken;

use super::{Auditor, Path};
use crate::indexer::Stop;
use crate::store::{audit, sync};

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
/// Headers asked for at most to find the block of a time.
const MAX_PROBES: usize = 12;

/// When the next sweep is due, and the block times learned so far.
#[derive(Debug)]
pub(super) struct Sweep {
    every: Option<Duration>,
    next_at: Option<Instant>,
    /// Block number by timestamp, from the headers probed.
    probes: BTreeMap<u64, u64>,
}

impl Sweep {
    pub(super) fn new(every: Option<Duration>) -> Self {
        Self {
            every,
            next_at: every.map(|e| Instant::now() + e),
            probes: BTreeMap::new(),
        }
    }

    pub(super) fn due_at(&self) -> Option<Instant> {
        self.next_at
    }
}

impl Auditor {
    /// One sweep over the pending orders.
    pub(super) async fn run_sweep(&mut self, cancel: &CancellationToken) -> Result<(), Stop> {
        let Some(every) = self.sweep.every else {
            return Ok(());
        };
        self.sweep.next_at = Some(Instant::now() + every);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let grace = self.settings.reconcile.pending_sweep_grace.as_secs();
        let (pending, checkpoint) = {
            let mut conn = self.store.conn().await?;
            let since = now.saturating_sub(LOOKBACK.as_secs());
            let until = now.saturating_sub(grace);
            let pending = audit::pending_orders(&mut conn.conn(), since, until, MAX_ORDERS).await?;
            (
                pending,
                sync::checkpoint(&mut conn.conn(), &self.scope).await?,
            )
        };
        let (Some(oldest), Some(checkpoint)) =
            (pending.iter().map(|p| p.created_at).min(), checkpoint)
        else {
            return Ok(());
        };
        let start = oldest.saturating_sub(CLOCK_MARGIN);
        let Some(from) = self.block_at(start, checkpoint.number, cancel).await? else {
            return Ok(());
        };
        let final_block = self.final_block(cancel).await?.unwrap_or(0);
        let mut refs: Vec<B256> = pending.iter().map(|p| p.order_ref).collect();
        refs.sort();
        let mut requests = 0u64;
        for group in refs.chunks(REFS_PER_REQUEST) {
            let mut next = from;
            while next <= checkpoint.number {
                requests += 1;
                let asked = self.ask_range(next, checkpoint.number, Some(group), cancel);
                let Some((span, logs)) = asked.await? else {
                    return Ok(());
                };
                if let Some(logs) = logs {
                    self.found(&logs, span, Path::Sweep, false, final_block, cancel)
                        .await?;
                    next = span.1 + 1;
                }
            }
        }
        tracing::debug!(
            orders = refs.len(),
            from,
            to = checkpoint.number,
            requests,
            spent = self.share.spent(),
            "pending-order sweep done"
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
        self.take_share(cancel).await?;
        let primary = self.primary.clone();
        let header = self
            .call(&primary, "eth_getBlockByNumber", |s| async move {
                s.header(number).await
            })
            .await;
        Ok(header.ok().map(|h| {
            // Several blocks may share a second: keep the latest for it.
            let b = self.sweep.probes.entry(h.timestamp).or_insert(number);
            *b = (*b).max(number);
            h.timestamp
        }))
    }
}
