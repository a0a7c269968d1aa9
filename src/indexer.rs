//! The only module that knows every stage. One loop, checkpoint-driven:
//!
//! 1. read the head (`fetch`);
//! 2. far behind: fetch the next deep range (adaptive getLogs) while the
//!    previous one commits; near the head: fetch each new header, check it
//!    builds on the checkpoint (`chain::window`), else roll the reorg back;
//! 3. decode, then in one `BEGIN IMMEDIATE` transaction insert events,
//!    reconcile them with their orders, late-match, record block hashes,
//!    advance the checkpoint, promote final payments (`write`); commit;
//! 4. after the commit only: metrics, readiness, logs;
//! 5. caught up: wait for a new head (websocket push or polling).
//!
//! The checkpoint in the database, never a subscription, decides what has
//! been indexed; cancellation is honoured between batches only.

mod fetch;
mod write;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alloy::eips::BlockNumberOrTag;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;

pub use fetch::Batch;
use fetch::{Fetcher, Near};
use write::Written;

use crate::chain::pool::{PoolError, RpcPool};
use crate::chain::range::RangeSizer;
use crate::chain::window::common_ancestor;
use crate::config::{Finality, Settings};
use crate::domain::{BlockHeader, BlockRef, Scope};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::reconcile::Policy;
use crate::retry::{self, Cancelled};
use crate::store::{incidents, sync, Store, StoreError};

/// Blocks fetched header by header near the head, at most, per batch.
const NEAR_BATCH: u64 = 64;
/// How often catch-up progress is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Errors that stop the indexer (everything else is retried).
#[derive(Debug, thiserror::Error)]
pub enum IndexerError {
    /// An endpoint failed, or serves the wrong chain.
    #[error(transparent)]
    Rpc(#[from] PoolError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stopped before indexing started")]
    Cancelled,
}

/// Where indexing stands, for progress logs.
struct Progress {
    started: Instant,
    start_block: u64,
    events: u64,
    last_log: Instant,
}

/// Follows the contract and writes what it sees.
pub struct Indexer {
    settings: Settings,
    scope: Scope,
    policy: Policy,
    store: Store,
    fetcher: Fetcher,
    metrics: Metrics,
    health: Health,
    cancel: CancellationToken,
    checkpoint: Option<BlockRef>,
    /// New-head subscription (websocket only). In a Mutex only to make the
    /// indexer `Sync`; it is reached through `get_mut`, never locked.
    heads: Option<std::sync::Mutex<BoxStream<'static, BlockHeader>>>,
    /// The head the subscription announced last, until the poll timer next
    /// wakes the loop: the head, without a round trip to ask the node. Set
    /// only while `heads` is; cleared with it (`unsubscribe`).
    announced: Option<u64>,
    /// Inside a stall episode (see [`Health::stalled`]).
    in_stall: bool,
}

impl Indexer {
    /// Connects to the first RPC endpoint and checks its chain id.
    pub async fn connect(
        settings: Settings,
        store: Store,
        metrics: Metrics,
        health: Health,
        cancel: CancellationToken,
    ) -> Result<Self, IndexerError> {
        let chain = &settings.chain;
        let scope = chain.scope();
        let pool = RpcPool::new(&chain.rpc_urls, scope, chain.request_timeout)
            .with_rate_budget(chain.max_requests_per_second);
        verify_endpoints(&pool, &cancel).await?;
        health.set_rpc_ok(true);
        let policy = Policy {
            overpayment: settings.reconcile.overpayment,
            chain_id: chain.chain_id,
            token: chain.token,
            treasury: chain.treasury,
        };
        let fetcher = Fetcher {
            pool,
            sizer: RangeSizer::new(chain.max_block_range),
            metrics: metrics.clone(),
            health: health.clone(),
            cancel: cancel.clone(),
            head_read: None,
        };
        let checkpoint = sync::checkpoint(
            &mut *store.pool().acquire().await.map_err(StoreError::from)?,
            &scope,
        )
        .await?;
        if let Some(cp) = checkpoint {
            health.set_indexed(cp.number);
            metrics.indexed_block.set(cp.number as i64);
        }
        Ok(Self {
            settings,
            scope,
            policy,
            store,
            fetcher,
            metrics,
            health,
            cancel,
            checkpoint,
            heads: None,
            announced: None,
            in_stall: false,
        })
    }

    /// Indexes until `cancel` fires; returns after the batch in hand is
    /// committed or rolled back.
    pub async fn run(mut self) -> Result<(), IndexerError> {
        self.metrics.up.set(1);
        let result = self.follow(None).await;
        self.metrics.up.set(0);
        match result {
            Ok(()) | Err(Stop::Cancelled) => Ok(()),
            Err(Stop::Fatal(e)) => Err(e),
        }
    }

    /// Re-indexes `from..=to` (idempotent) without moving the checkpoint
    /// backwards; returns when done.
    pub async fn backfill(mut self, from: u64, to: u64) -> Result<(), IndexerError> {
        let saved = self.checkpoint;
        self.checkpoint = None;
        let result = self.follow(Some((from, to))).await;
        // A re-scan must not rewind the live checkpoint.
        if let (Some(saved), Some(now)) = (saved, self.checkpoint) {
            if now.number < saved.number {
                let mut tx = self.store.begin_immediate().await?;
                sync::set_checkpoint(&mut tx, &self.scope, &saved).await?;
                tx.commit().await.map_err(StoreError::from)?;
            }
        }
        match result {
            Ok(()) | Err(Stop::Cancelled) => Ok(()),
            Err(Stop::Fatal(e)) => Err(e),
        }
    }

    async fn follow(&mut self, range: Option<(u64, u64)>) -> Result<(), Stop> {
        let first = match range {
            Some((from, _)) => from,
            None => self
                .checkpoint
                .map_or(self.settings.chain.start_block, |c| c.number + 1),
        };
        let mut progress = Progress {
            started: Instant::now(),
            start_block: first,
            events: 0,
            last_log: Instant::now(),
        };
        let mut next = first;
        self.refresh_incidents().await?;
        loop {
            if self.cancel.is_cancelled() {
                return Err(Stop::Cancelled);
            }
            if self.health.deep_reorgs() > 0 {
                self.refresh_incidents().await?;
            }
            self.check_stall();
            let chain_head = match self.announced {
                Some(head) => head,
                None => self.fetcher.head().await?,
            };
            self.observe_head(chain_head);
            let head = range.map_or(chain_head, |(_, to)| to.min(chain_head));
            if range.is_none() {
                next = self
                    .checkpoint
                    .map_or(self.settings.chain.start_block, |c| c.number + 1);
            }
            if next > head {
                if let Some((_, to)) = range {
                    if next > to {
                        return Ok(());
                    }
                }
                self.wait_for_head().await?;
                continue;
            }
            let window = self.settings.chain.reorg_window;
            let written = if head - next + 1 > window || range.is_some() {
                let limit = if range.is_some() { head } else { head - window };
                self.deep_phase(next, limit, chain_head, &mut progress)
                    .await?
            } else {
                let to = head.min(next + NEAR_BATCH - 1);
                let checkpoint = self.checkpoint;
                match self.fetcher.near(checkpoint.as_ref(), next, to).await? {
                    Near::Reorg => {
                        self.roll_back_reorg().await?;
                        continue;
                    }
                    Near::Batch(batch) => self.commit(batch, chain_head).await?,
                }
            };
            progress.events += written;
            next = self.checkpoint.map_or(next, |c| c.number + 1);
            self.log_progress(&mut progress, next, head);
        }
    }

    /// Commits deep ranges up to `limit`, fetching the next range while the
    /// previous one commits. Returns the events written.
    async fn deep_phase(
        &mut self,
        from: u64,
        limit: u64,
        head: u64,
        progress: &mut Progress,
    ) -> Result<u64, Stop> {
        let mut batch = self.fetcher.deep(from, limit).await?;
        let final_block = self.final_block(head).await?;
        let mut events = 0;
        loop {
            let next = batch.last.number + 1;
            let more = next <= limit && !self.cancel.is_cancelled();
            let (written, fetched) = {
                let Self {
                    fetcher,
                    store,
                    scope,
                    policy,
                    settings,
                    metrics,
                    health,
                    cancel,
                    checkpoint,
                    ..
                } = self;
                let mut writer = Writer {
                    store,
                    scope,
                    policy,
                    settings,
                    metrics,
                    health,
                    cancel,
                    checkpoint,
                };
                let every = fetch::head_refresh_interval(settings.chain.stall_after);
                let fetch = async {
                    if !more {
                        return None;
                    }
                    if let Err(c) = fetcher.refresh_head(every).await {
                        return Some(Err(c));
                    }
                    Some(fetcher.deep(next, limit).await)
                };
                tokio::join!(writer.commit(batch, head, final_block), fetch)
            };
            events += written?;
            match fetched {
                Some(b) => batch = b?,
                None => return Ok(events),
            }
            self.check_stall();
            self.log_progress(progress, next, limit);
        }
    }

    async fn commit(&mut self, batch: Batch, head: u64) -> Result<u64, Stop> {
        let final_block = self.final_block(head).await?;
        let Self {
            store,
            scope,
            policy,
            settings,
            metrics,
            health,
            cancel,
            checkpoint,
            ..
        } = self;
        Writer {
            store,
            scope,
            policy,
            settings,
            metrics,
            health,
            cancel,
            checkpoint,
        }
        .commit(batch, head, final_block)
        .await
    }

    /// The newest block whose payments count as final.
    async fn final_block(&self, head: u64) -> Result<u64, Stop> {
        let chain = &self.settings.chain;
        let tag = match chain.finality {
            Finality::Depth => return Ok(head.saturating_sub(chain.confirmations)),
            Finality::Safe => BlockNumberOrTag::Safe,
            Finality::Finalized => BlockNumberOrTag::Finalized,
        };
        let tagged = self
            .fetcher
            .rpc(
                "eth_getBlockByNumber",
                |_| false,
                |s| async move { s.tagged(tag).await },
            )
            .await?;
        Ok(tagged.expect("no error is given back"))
    }

    fn observe_head(&self, head: u64) {
        self.health.set_head(head);
        self.metrics.head_block.set(head as i64);
        let lag = head.saturating_sub(self.checkpoint.map_or(0, |c| c.number));
        self.metrics.lag_blocks.set(lag as i64);
    }

    /// Waits for the next head: a websocket push, or the poll interval,
    /// whichever comes first.
    async fn wait_for_head(&mut self) -> Result<(), Stop> {
        let poll = self.settings.chain.poll_interval;
        if self.fetcher.pool.is_ws() && self.heads.is_none() {
            let subscribed = match self.fetcher.pool.source().await {
                Ok(source) => source.new_heads().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match subscribed {
                Ok(stream) => self.heads = Some(std::sync::Mutex::new(stream)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot subscribe to new heads; polling meanwhile")
                }
            }
        }
        let heads = self
            .heads
            .as_mut()
            .map(|m| m.get_mut().unwrap_or_else(|e| e.into_inner()));
        let Some(heads) = heads else {
            return tokio::select! {
                _ = self.cancel.cancelled() => Err(Stop::Cancelled),
                _ = tokio::time::sleep(poll) => Ok(()),
            };
        };
        tokio::select! {
            _ = self.cancel.cancelled() => Err(Stop::Cancelled),
            item = heads.next() => {
                match item {
                    Some(mut head) => {
                        // Only the latest of the heads already queued matters.
                        while let Some(Some(later)) = heads.next().now_or_never() {
                            head = later;
                        }
                        self.announced = Some(head.number);
                    }
                    None => {
                        tracing::warn!("new-heads subscription ended; resubscribing");
                        self.unsubscribe();
                    }
                }
                Ok(())
            }
            // A provider may skip heads (some coalesce them under load): poll
            // as well, and ask the node for its head after a quiet interval.
            _ = tokio::time::sleep(poll) => {
                self.announced = None;
                Ok(())
            }
        }
    }

    /// Starts or ends a stall episode: on a stall the connection is rebuilt
    /// (a websocket can go quiet without closing) and the subscription renewed.
    fn check_stall(&mut self) {
        let stalled = self.health.stalled();
        if stalled == self.in_stall {
            return;
        }
        self.in_stall = stalled;
        self.metrics.stalled.set(i64::from(stalled));
        if stalled {
            tracing::warn!(
                endpoint = %self.fetcher.pool.endpoint(),
                stall_after_s = self.settings.chain.stall_after.as_secs(),
                "stalled: no new head or no commit while behind; rebuilding the connection"
            );
            self.fetcher.pool.rebuild();
            self.unsubscribe();
        } else {
            tracing::info!("stall over");
        }
    }

    /// Drops the new-heads subscription and the head it announced: the next
    /// wait subscribes again, the next round asks the node for its head.
    fn unsubscribe(&mut self) {
        self.heads = None;
        self.announced = None;
    }

    /// Finds the common ancestor of the stored blocks and the node's chain,
    /// and rolls everything above it back in one transaction.
    async fn roll_back_reorg(&mut self) -> Result<(), Stop> {
        let cp = self
            .checkpoint
            .expect("a reorg is only detected against a checkpoint");
        let window = self.settings.chain.reorg_window;
        let stored = {
            let mut conn = self
                .store
                .pool()
                .acquire()
                .await
                .map_err(StoreError::from)?;
            sync::recent_blocks(&mut conn, &self.scope, cp.number, window).await?
        };
        let mut ancestor = None;
        for chunk in stored.chunks(16) {
            let mut canonical = HashMap::new();
            for b in chunk {
                canonical.insert(b.number, self.fetcher.header(b.number).await?.hash);
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
                self.fetcher.header(below).await?.block_ref()
            }
        };
        let depth = cp.number - ancestor.number;
        let Self {
            store,
            scope,
            metrics,
            health,
            cancel,
            checkpoint,
            ..
        } = self;
        let work = write::RollBack {
            scope,
            ancestor,
            old_checkpoint: cp.number,
        };
        let rolled = commit_with_retry(store, metrics, cancel, &work).await?;
        *checkpoint = Some(ancestor);
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
    async fn refresh_incidents(&self) -> Result<(), Stop> {
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(StoreError::from)?;
        let open = incidents::open_count(&mut conn, &self.scope).await?;
        self.health.set_deep_reorgs(open);
        self.metrics.unacknowledged_deep_reorgs.set(open);
        Ok(())
    }

    fn log_progress(&self, p: &mut Progress, next: u64, target: u64) {
        if p.last_log.elapsed() < PROGRESS_EVERY || next > target {
            return;
        }
        p.last_log = Instant::now();
        let done = next.saturating_sub(p.start_block);
        let total = target.saturating_sub(p.start_block) + 1;
        let secs = p.started.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / secs;
        let eta = if rate > 0.0 {
            (total - done.min(total)) as f64 / rate
        } else {
            f64::INFINITY
        };
        tracing::info!(
            block = next,
            done,
            total,
            events_per_s = (p.events as f64 / secs).round(),
            eta_s = eta.round(),
            "catching up"
        );
    }
}

impl IndexerError {
    /// True when the error is the configuration's fault (an endpoint on
    /// another chain), not a runtime failure.
    pub fn is_configuration(&self) -> bool {
        matches!(self, IndexerError::Rpc(PoolError::WrongChain { .. }))
    }
}

/// Why the loop stopped.
enum Stop {
    Cancelled,
    Fatal(IndexerError),
}

impl From<Cancelled> for Stop {
    fn from(_: Cancelled) -> Self {
        Stop::Cancelled
    }
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Fatal(e.into())
    }
}

/// The parts of the indexer a commit needs, borrowed apart from the fetcher
/// so that fetching the next range can overlap the commit.
struct Writer<'a> {
    store: &'a Store,
    scope: &'a Scope,
    policy: &'a Policy,
    settings: &'a Settings,
    metrics: &'a Metrics,
    health: &'a Health,
    cancel: &'a CancellationToken,
    checkpoint: &'a mut Option<BlockRef>,
}

impl Writer<'_> {
    async fn commit(&mut self, batch: Batch, head: u64, final_block: u64) -> Result<u64, Stop> {
        let started = Instant::now();
        let work = write::WriteBatch {
            scope: self.scope,
            policy: self.policy,
            batch: &batch,
            final_block,
            reorg_window: self.settings.chain.reorg_window,
        };
        let written: Written =
            commit_with_retry(self.store, self.metrics, self.cancel, &work).await?;
        *self.checkpoint = Some(batch.last);
        self.after_commit(&batch, &written, head, started.elapsed());
        Ok(written.rows)
    }

    fn after_commit(&self, batch: &Batch, written: &Written, head: u64, elapsed: Duration) {
        let m = self.metrics;
        m.record_commit(elapsed, written.rows);
        m.ignored_logs.inc_by(batch.ignored);
        m.indexed_block.set(batch.last.number as i64);
        m.lag_blocks
            .set(head.saturating_sub(batch.last.number) as i64);
        if let Some(last) = batch.headers.iter().find(|h| h.number == batch.last.number) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            m.lag_seconds.set(now.saturating_sub(last.timestamp) as i64);
        }
        self.health.set_indexed(batch.last.number);
        let mut per_version = HashMap::new();
        for (status, order_id, version) in &written.outcomes {
            m.record_payment(*status);
            *per_version.entry(*version).or_insert(0u64) += 1;
            if *status != crate::domain::MatchStatus::Matched {
                tracing::warn!(order = order_id.as_deref().unwrap_or("-"), reason = %status, "payment needs review");
            }
        }
        for (version, n) in per_version {
            m.record_events(version, n);
        }
        m.record_transition("confirming", written.confirming);
        m.record_transition("paid", written.paid);
        tracing::debug!(
            from = batch.first,
            to = batch.last.number,
            rows = written.rows,
            confirming = written.confirming,
            paid = written.paid,
            ignored = batch.ignored,
            "batch committed"
        );
    }
}

/// Runs `work` in a `BEGIN IMMEDIATE` transaction and commits; on any
/// failure the transaction rolls back and the whole thing is retried with
/// backoff, so nothing (in particular the checkpoint) is ever half written.
async fn commit_with_retry<W: write::TxWork>(
    store: &Store,
    metrics: &Metrics,
    cancel: &CancellationToken,
    work: &W,
) -> Result<W::Output, Stop> {
    let mut backoff = retry::policy(Duration::from_secs(5));
    let mut failures = 0u32;
    loop {
        let attempt = async {
            let mut tx = store.begin_immediate().await?;
            let out = work.run(&mut tx).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(out)
        };
        match attempt.await {
            Ok(out) => {
                if failures > 0 {
                    tracing::info!(failures, "database writes recovered");
                }
                return Ok(out);
            }
            Err(e) => {
                failures += 1;
                metrics.sqlite_busy_retries.inc();
                if failures == 1 {
                    tracing::error!(error = %e, busy = e.is_busy(), "batch not committed; rolled back, retrying");
                }
                // A shutdown during a failure episode leaves the batch uncommitted: fine.
                retry::pause(&mut backoff, cancel).await?;
            }
        }
    }
}

/// Checks every reachable endpoint's chain id at start-up: a wrong one is a
/// configuration error. Unreachable endpoints are checked when first used;
/// if none answers, the first is retried until it does (or until shutdown).
async fn verify_endpoints(pool: &RpcPool, cancel: &CancellationToken) -> Result<(), IndexerError> {
    let mut reachable = None;
    for i in (0..pool.len()).rev() {
        match pool.verify(i).await {
            Ok(()) => reachable = Some(i),
            Err(e @ PoolError::WrongChain { .. }) => return Err(e.into()),
            Err(PoolError::Chain(e)) => {
                tracing::warn!(error = %e, "endpoint unreachable at start; it is checked when first used");
            }
        }
    }
    let first = reachable.unwrap_or(0);
    loop {
        match pool.verify(first).await {
            Ok(()) => return Ok(()),
            Err(e @ PoolError::WrongChain { .. }) => return Err(e.into()),
            Err(PoolError::Chain(_)) => {
                let mut backoff = retry::policy(Duration::from_secs(10));
                retry::pause(&mut backoff, cancel)
                    .await
                    .map_err(|Cancelled| IndexerError::Cancelled)?;
            }
        }
    }
}
