//! The wiring of the stages; reading it top to bottom shows the whole path.
//! Two stages and the tasks beside them:
//!
//! - the **fetch stage** (`fetch`, `flight`, `batch`), a task of its own
//!   for each phase: far behind, it keeps up to
//!   `chain.max_concurrent_requests` deep ranges (adaptive getLogs) in
//!   flight, parses, decodes and times their logs and merges them into
//!   fronts in block order (`flight`); near the head, it fetches the new
//!   headers in runs, checks each run builds on the last block it handed
//!   over (`chain::window`; at first the writer's checkpoint), and asks by
//!   block hash for the logs of the blocks whose bloom may hold ours
//!   (`fetch`). Either way it hands decoded batches, or a reorg, over a
//!   bounded channel (`hand_over`), and fetches on while the writer commits.
//! - the **writer stage** (`writer`): owns the store and the checkpoint. It
//!   cuts each batch at block boundaries into transactions of the size the
//!   store says fits (`batch::split_first`; on SQLite `database.max_write_ms`,
//!   spaced by `store::pace` inside `Store::write`), and in each inserts
//!   events, reconciles them with their orders, late-matches, records block
//!   hashes, advances the checkpoint and promotes final payments (`write`);
//!   it rolls a reorg back the same way. After the commits only: metrics,
//!   readiness, logs; while catching up, progress every
//!   `log.progress_interval_ms` (`progress`).
//! - caught up, the loop waits for a new head (websocket push or polling).
//!
//! The checkpoint in the database, never a subscription, decides what has
//! been indexed; cancellation is honoured between batches only. Beside the
//! stages, for each term of the lease, leader-only tasks own their state and
//! write through the same store (`writer::commit_with_retry`): the
//! completeness audit (`audit`), the second opinion (`verify`) and the
//! outbox's retention (`retention`); `app` starts and stops them with the
//! term, beside the webhook dispatcher.

mod audit;
mod batch;
mod fetch;
mod flight;
mod progress;
mod retention;
mod verify;
mod write;
mod writer;

use std::future::Future;
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use audit::{Auditor, Report as AuditReport};
pub use batch::Batch;
use batch::Fetched;
use fetch::{Fetcher, NearPlan};
use progress::{Counters, Progress};
pub use retention::Retention;
pub use verify::Verifying;
use writer::Writer;

use crate::chain::pool::{PoolError, RpcPool};
use crate::chain::range::RangeSizer;
use crate::config::Settings;
use crate::domain::BlockHeader;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::reconcile::Policy;
use crate::retry::{self, Cancelled};
use crate::store::{Store, StoreError};

/// Fetched batches waiting for the writer, at most: while the writer
/// commits one, the next may wait here and the fetch stage goes on (with
/// the range window, the memory bound far behind).
const FETCHED_WAITING: usize = 1;

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

/// Follows the contract and writes what it sees.
pub struct Indexer {
    settings: Settings,
    /// The fetch side: the node, the range sizer, the requests counted.
    fetcher: std::sync::Arc<Fetcher>,
    /// The writer stage: the store and the checkpoint.
    writer: Writer,
    metrics: Metrics,
    health: Health,
    cancel: CancellationToken,
    /// New-head subscription (websocket only). In a Mutex only to make the
    /// indexer `Sync`; it is reached through `get_mut`, never locked.
    heads: Option<std::sync::Mutex<BoxStream<'static, BlockHeader>>>,
    /// The head the subscription announced last, until the poll timer next
    /// wakes the loop: the head, without a round trip to ask the node. Set
    /// only while `heads` is; cleared with it (`unsubscribe`).
    announced: Option<u64>,
    /// Inside a stall episode (see [`Health::stalled`]).
    in_stall: bool,
    /// `chain.verify_rpc_urls`, when set (see `verify`).
    verifiers: Option<verify::Verifiers>,
    /// Where verification rounds send logs a verifier returned that are
    /// not stored (to the term's `audit::Auditor`).
    suspects: Option<tokio::sync::mpsc::UnboundedSender<Vec<audit::Suspect>>>,
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
        let pool = RpcPool::new(&chain.rpc_urls, scope, chain.requests)
            .with_rate_budget(chain.max_requests_per_second, |endpoint| {
                metrics.rate_limited(endpoint)
            });
        check_endpoints(&pool, &cancel).await?;
        health.set_rpc_ok(true);
        let verifiers = verify::Verifiers::connect(chain, &metrics).await?;
        let policy = Policy {
            overpayment: settings.reconcile.overpayment,
            chain_id: chain.chain_id,
            token: chain.token,
            treasury: crate::domain::Treasuries {
                initial: chain.treasury,
                changes: Vec::new(),
            },
        };
        let fetcher = std::sync::Arc::new(Fetcher {
            pool: std::sync::Arc::new(pool),
            sizer: std::sync::Mutex::new(RangeSizer::new(chain.max_block_range)),
            metrics: metrics.clone(),
            health: health.clone(),
            cancel: cancel.clone(),
            head_read: std::sync::Mutex::new(None),
            contract: chain.contract,
            requests: Default::default(),
            finality: chain.finality,
            confirmations: chain.confirmations,
        });
        let writer = Writer::open(
            store,
            scope,
            policy,
            settings.clone(),
            metrics.clone(),
            health.clone(),
            cancel.clone(),
        )
        .await?;
        Ok(Self {
            settings,
            fetcher,
            writer,
            metrics,
            health,
            cancel,
            heads: None,
            announced: None,
            in_stall: false,
            verifiers,
            suspects: None,
        })
    }

    /// The outbox's retention task of this term (`retention`), to run beside
    /// [`Indexer::run`] until the term ends.
    pub fn retention(&self) -> Retention {
        Retention {
            store: self.writer.store.clone(),
            metrics: self.metrics.clone(),
            health: self.health.clone(),
            settings: self.settings.clone(),
        }
    }

    /// The verification task of this term (`verify`), to run beside
    /// [`Indexer::run`] until the term ends; `None` without verifiers. After
    /// [`Indexer::auditor`]: its findings go to the completeness task.
    pub fn verification(&mut self) -> Option<Verifying> {
        Some(Verifying {
            verifiers: self.verifiers.take()?,
            store: self.writer.store.clone(),
            scope: self.writer.scope,
            settings: self.settings.clone(),
            metrics: self.metrics.clone(),
            health: self.health.clone(),
            primary: self.fetcher.pool.clone(),
            suspects: self.suspects.clone(),
            cancel: self.cancel.child_token(),
        })
    }

    /// The completeness task of this term (`audit`), to run beside
    /// [`Indexer::run`] until the term ends; `None` when it is off.
    pub fn auditor(&mut self) -> Option<Auditor> {
        let (auditor, suspects) = Auditor::new(audit::Parts {
            settings: self.settings.clone(),
            scope: self.writer.scope,
            policy: self.writer.policy.clone(),
            store: self.writer.store.clone(),
            metrics: self.metrics.clone(),
            health: self.health.clone(),
            primary: self.fetcher.pool.clone(),
            main_requests: self.fetcher.requests.clone(),
        })?;
        self.suspects = Some(suspects);
        Some(auditor)
    }

    /// Asks the node for `from..=to` again and compares it with the stored
    /// events (`audit::RangeAudit`); with `repair`, stores what is missing.
    pub async fn audit_range(
        self,
        from: u64,
        to: u64,
        repair: bool,
    ) -> Result<AuditReport, IndexerError> {
        let (fetcher, writer) = (&self.fetcher, &self.writer);
        audit::RangeAudit { fetcher, writer }
            .run(from, to, repair)
            .await
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
        let saved = self.writer.forget_checkpoint();
        let result = self.follow(Some((from, to))).await;
        self.writer.restore(saved).await?;
        match result {
            Ok(()) | Err(Stop::Cancelled) => Ok(()),
            Err(Stop::Fatal(e)) => Err(e),
        }
    }

    async fn follow(&mut self, range: Option<(u64, u64)>) -> Result<(), Stop> {
        let first = match range {
            Some((from, _)) => from,
            None => self
                .writer
                .checkpoint()
                .map_or(self.settings.chain.start_block, |c| c.number + 1),
        };
        let mut progress = None;
        let mut next = first;
        self.writer.refresh_incidents().await?;
        loop {
            if self.cancel.is_cancelled() {
                return Err(Stop::Cancelled);
            }
            if self.health.deep_reorgs() > 0 {
                self.writer.refresh_incidents().await?;
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
                    .writer
                    .checkpoint()
                    .map_or(self.settings.chain.start_block, |c| c.number + 1);
            }
            if next > head {
                self.finish_progress(&mut progress, next);
                if let Some((_, to)) = range {
                    if next > to {
                        return Ok(());
                    }
                }
                self.wait_for_head().await?;
                continue;
            }
            let window = self.settings.chain.reorg_window;
            if head - next + 1 > window || range.is_some() {
                let limit = if range.is_some() { head } else { head - window };
                let progress = progress.get_or_insert_with(|| {
                    progress::start(&self.metrics, next);
                    let counters = Counters::read(&self.metrics);
                    let every = self.settings.log.progress_interval;
                    Progress::new(next, every, Instant::now(), counters)
                });
                self.deep_phase(next, limit, chain_head, range, progress)
                    .await?;
            } else {
                let plan = NearPlan {
                    after: self.writer.checkpoint(),
                    from: next,
                    head,
                };
                let fetcher = self.fetcher.clone();
                let fetch = |out, stop| fetcher.near_runs(plan, out, stop);
                hand_over(&self.fetcher, &mut self.writer, fetch, |written, _| {
                    if let Some(p) = progress.as_mut() {
                        p.add_events(written);
                    }
                })
                .await?;
            }
            next = self.writer.checkpoint().map_or(next, |c| c.number + 1);
            if let Some(p) = progress.as_mut() {
                self.report_progress(p, next, range);
            }
        }
    }

    /// Commits deep ranges up to `limit`, with up to
    /// `chain.max_concurrent_requests` of them in flight, in block order
    /// (`flight`); counts their events into `progress`. Returns early, for
    /// the loop to handle it, when a stall begins.
    async fn deep_phase(
        &mut self,
        from: u64,
        limit: u64,
        head: u64,
        range: Option<(u64, u64)>,
        progress: &mut Progress,
    ) -> Result<(), Stop> {
        let chain = &self.settings.chain;
        let plan = flight::Plan {
            from,
            limit,
            head,
            final_block: self.fetcher.final_block(head).await?,
            width: chain.max_concurrent_requests,
            refresh_every: fetch::head_refresh_interval(chain.stall_after),
        };
        let fetch = |out, stop| flight::deep_ranges(self.fetcher.clone(), plan, out, stop);
        let (fetcher, metrics, health) = (&self.fetcher, &self.metrics, &self.health);
        hand_over(fetcher, &mut self.writer, fetch, |written, next| {
            progress.add_events(written);
            report_progress(fetcher, metrics, health, progress, next, range);
        })
        .await?;
        self.check_stall();
        Ok(())
    }

    fn observe_head(&self, head: u64) {
        self.health.set_head(head);
        self.metrics.head_block.set(head as i64);
        let lag = head.saturating_sub(self.writer.checkpoint().map_or(0, |c| c.number));
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
                Ok(stream) => {
                    tracing::debug!("subscribed to new heads");
                    self.heads = Some(std::sync::Mutex::new(stream));
                }
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

    fn report_progress(&self, p: &mut Progress, next: u64, range: Option<(u64, u64)>) {
        report_progress(&self.fetcher, &self.metrics, &self.health, p, next, range);
    }

    /// Ends the catch-up in progress, if any: `next` is the next block.
    fn finish_progress(&self, progress: &mut Option<Progress>, next: u64) {
        if let Some(p) = progress.take() {
            progress::finish(&self.metrics, &p.summary(next, Instant::now()));
        }
    }
}

impl IndexerError {
    /// True when the error is the configuration's fault (an endpoint on
    /// another chain), not a runtime failure.
    pub fn is_configuration(&self) -> bool {
        matches!(self, IndexerError::Rpc(PoolError::WrongChain { .. }))
    }
}

/// Reports catch-up progress when an interval is over. The target is the
/// head last read (a back-fill's end, if sooner).
fn report_progress(
    fetcher: &Fetcher,
    metrics: &Metrics,
    health: &Health,
    p: &mut Progress,
    next: u64,
    range: Option<(u64, u64)>,
) {
    let now = Instant::now();
    if !p.due(now) {
        return;
    }
    // Set by every read of the head (`observe_head`, `Fetcher::refresh_head`).
    let head = health.head();
    let target = range.map_or(head, |(_, to)| to.min(head));
    let counters = Counters::read(metrics);
    let line = p.line(next, target, counters, now);
    let budget = fetcher.pool.budget().map(|b| b.describe());
    let size = fetcher.sizer().size();
    progress::report(metrics, &line, size, budget);
}

/// The joint of the two stages: runs `fetch` (the fetch stage: deep ranges
/// or near-head runs) as a task of its own, handing what it fetched in
/// block order over a bounded channel to `writer`, which commits it here,
/// in the caller's task, or rolls a reorg back (which ends the phase);
/// `committed(events, next)` runs after each commit. Returns when the fetch
/// stage is done, when cancelled (after the commit under way), or when it
/// stopped for a stall; the fetch stage is stopped first.
async fn hand_over<Fut>(
    fetcher: &Fetcher,
    writer: &mut Writer,
    fetch: impl FnOnce(mpsc::Sender<Fetched>, CancellationToken) -> Fut,
    mut committed: impl FnMut(u64, u64),
) -> Result<(), Stop>
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let (out, mut fetched) = mpsc::channel(FETCHED_WAITING);
    let stop = CancellationToken::new();
    let fetching = tokio::spawn(fetch(out, stop.clone()));
    let written = async {
        while let Some(item) = fetched.recv().await {
            match item {
                Fetched::Batch {
                    batch,
                    head,
                    final_block,
                } => {
                    let next = batch.last.number + 1;
                    let written = writer.commit(batch, head, final_block).await?;
                    committed(written, next);
                }
                Fetched::Reorg => {
                    writer.roll_back_reorg(fetcher).await?;
                    break;
                }
            }
        }
        Ok(())
    }
    .await;
    stop.cancel();
    // It ends at once on `stop`; a panic in it is a bug worth its message.
    if let Err(e) = fetching.await {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    written
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

/// Checks every reachable endpoint's chain id at start-up: a wrong one is a
/// configuration error. Unreachable endpoints are checked when first used;
/// if none answers, the first is retried until it does (or until shutdown).
async fn check_endpoints(pool: &RpcPool, cancel: &CancellationToken) -> Result<(), IndexerError> {
    let mut reachable = None;
    for i in (0..pool.len()).rev() {
        match pool.check_chain_id(i).await {
            Ok(()) => reachable = Some(i),
            Err(e @ PoolError::WrongChain { .. }) => return Err(e.into()),
            Err(PoolError::Chain(e)) => {
                tracing::warn!(error = %e, "endpoint unreachable at start; it is checked when first used");
            }
        }
    }
    let first = reachable.unwrap_or(0);
    loop {
        match pool.check_chain_id(first).await {
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
