//! Fetching from the node: deep ranges with adaptive `eth_getLogs` (kept in
//! flight and committed in order by `flight`), and near-head runs of
//! headers whose blocks' logs are asked for by block hash when the header's
//! bloom may hold ours. RPC errors are retried here (with `crate::retry`); range
//! refusals shrink the range, and a block limit a provider states is
//! remembered for its endpoint (`RpcPool::learn_range_cap`). Far behind, the
//! head is re-read every few seconds between ranges, so that a long catch-up
//! shows a live head (it is not a stall).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address, B256};
use alloy::rpc::types::Log;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::batch::{decode_all, Batch, Fetched};
use crate::chain::bloom;
use crate::chain::pool::{PoolError, RpcPool};
use crate::chain::range::RangeSizer;
use crate::chain::refusal::{Limit, Refusal};
use crate::chain::source::{ChainError, ChainSource};
use crate::chain::window::{linkage, Linkage};
use crate::config::Finality;
use crate::domain::{BlockHeader, BlockRef, Payment};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::retry::{self, Cancelled};

/// Blocks fetched header by header near the head, at most, per run.
pub const NEAR_RUN: u64 = 64;

/// Header requests in flight at once (near the head, and for blocks whose
/// logs lack a timestamp): a near-head run of 64 headers takes one round
/// trip, not eight; the rate budget, not this, paces them.
const HEADER_CONCURRENCY: usize = 64;

/// Longest pause before a near-head run is fetched again because a node
/// did not have one of its blocks (a node behind its load balancer's
/// others), or its answers did not fit together: short, since the block
/// is usually there a moment later.
const UNKNOWN_BLOCK_LONGEST_PAUSE: Duration = Duration::from_secs(2);

/// How often a deep phase re-reads the head: well within the stall bound
/// (a head quiet for `stall_after` is a stall), and at most every 5 s.
pub fn head_refresh_interval(stall_after: Duration) -> Duration {
    (stall_after / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

/// What fetching a near-head run found.
#[derive(Debug)]
pub enum Near {
    Batch(Batch),
    /// The first new block does not build on the checkpoint.
    Reorg,
}

/// Talks to the node on behalf of the indexer. Shared (`&self`) by the
/// deep ranges in flight (`flight`); the sizer and the time of the last
/// head read sit behind locks held only between awaits, never across one.
#[derive(Debug)]
pub struct Fetcher {
    /// Shared with the completeness audit (`audit`), which confirms with it
    /// what other endpoints say.
    pub pool: Arc<RpcPool>,
    pub sizer: Mutex<RangeSizer>,
    pub metrics: Metrics,
    pub health: Health,
    pub cancel: CancellationToken,
    /// When the head was last read during a deep phase.
    pub head_read: Mutex<Option<Instant>>,
    /// The checkout contract: what a header's bloom is checked for.
    pub contract: Address,
    /// Requests sent (each attempt): the completeness audit may spend a
    /// share of them (`audit::Share`).
    pub requests: Arc<AtomicU64>,
    /// What makes a payment final (`chain.finality`), and the depth that
    /// does under `Finality::Depth` (`chain.confirmations`).
    pub finality: Finality,
    pub confirmations: u64,
}

/// A near-head phase: blocks `from..=head`, the first of which must build
/// on `after` (the writer's checkpoint).
#[derive(Debug, Clone, Copy)]
pub struct NearPlan {
    pub after: Option<BlockRef>,
    pub from: u64,
    pub head: u64,
}

/// A refused range: which endpoint refused it, and what it said.
pub struct Refused {
    endpoint: String,
    refusal: Refusal,
    /// It timed out rather than being refused.
    timed_out: bool,
}

impl Fetcher {
    /// The range sizer (locked briefly: never held across an await).
    pub fn sizer(&self) -> MutexGuard<'_, RangeSizer> {
        self.sizer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one RPC call on the current endpoint, recording metrics and RPC
    /// health. Failures are retried: at once on the next endpoint when the
    /// current one is rested, else after a backoff; one log line per failure
    /// episode. `give_back` lets the caller take some errors (e.g. range
    /// refusals) instead of retrying them.
    pub async fn rpc<T, F, Fut>(
        &self,
        method: &'static str,
        give_back: fn(&ChainError) -> bool,
        op: F,
    ) -> Result<Result<T, ChainError>, Cancelled>
    where
        F: Fn(ChainSource) -> Fut,
        Fut: std::future::Future<Output = Result<T, ChainError>>,
    {
        let mut backoff = retry::policy(std::time::Duration::from_secs(10));
        let mut failures = 0u32;
        let mut kinds = std::collections::HashSet::new();
        loop {
            if self.cancel.is_cancelled() {
                return Err(Cancelled);
            }
            let endpoint = self.pool.endpoint();
            let started = Instant::now();
            self.requests.fetch_add(1, Ordering::Relaxed);
            let result = match self.pool.source().await {
                Ok(source) => tokio::select! {
                    _ = self.cancel.cancelled() => return Err(Cancelled),
                    r = op(source) => r,
                },
                Err(PoolError::Chain(e)) => Err(e),
                Err(e @ PoolError::WrongChain { .. }) => {
                    tracing::error!(error = %e, "endpoint disabled");
                    self.pool.disable();
                    continue;
                }
            };
            self.metrics
                .record_rpc(method, &endpoint, started.elapsed(), result.is_ok());
            if let Some(rate) = self.pool.budget_rate(&endpoint) {
                self.metrics.record_budget(&endpoint, rate);
            }
            let error = match result {
                Ok(v) => {
                    self.pool.succeeded();
                    self.health.set_rpc_ok(true);
                    if failures > 0 {
                        tracing::info!(method, endpoint, failures, kinds = ?kinds, "RPC recovered");
                    }
                    return Ok(Ok(v));
                }
                Err(e) if give_back(&e) => {
                    if matches!(e, ChainError::Timeout { .. }) {
                        // Slow answers count against the endpoint too: after
                        // a few in a row another one takes over.
                        self.pool.failed();
                    } else {
                        self.pool.succeeded();
                        self.health.set_rpc_ok(true);
                    }
                    return Ok(Err(e));
                }
                Err(e) => e,
            };
            failures += 1;
            if kinds.insert(error.kind()) {
                tracing::warn!(method, kind = error.kind(), error = %error, failures,
                    "RPC failing; retrying with backoff");
            } else {
                tracing::debug!(method, error = %error, failures, "RPC still failing");
            }
            if !self.pool.failed() {
                self.health.set_rpc_ok(false);
                retry::pause(&mut backoff, &self.cancel).await?;
            }
        }
    }

    /// The node's latest block number.
    pub async fn head(&self) -> Result<u64, Cancelled> {
        let head = self
            .rpc("eth_blockNumber", never, |s| async move { s.head().await })
            .await?;
        Ok(head.expect("never() gives no error back"))
    }

    /// The newest block whose payments count as final, with `head` the
    /// chain's head.
    pub async fn final_block(&self, head: u64) -> Result<u64, Cancelled> {
        let tag = match self.finality {
            Finality::Depth => return Ok(head.saturating_sub(self.confirmations)),
            Finality::Safe => BlockNumberOrTag::Safe,
            Finality::Finalized => BlockNumberOrTag::Finalized,
        };
        let tagged = self
            .rpc("eth_getBlockByNumber", never, |s| async move {
                s.tagged(tag).await
            })
            .await?;
        Ok(tagged.expect("never() gives no error back"))
    }

    /// The header of block `number`.
    pub async fn header(&self, number: u64) -> Result<BlockHeader, Cancelled> {
        let h = self
            .rpc("eth_getBlockByNumber", never, |s| async move {
                s.header(number).await
            })
            .await?;
        Ok(h.expect("never() gives no error back"))
    }

    async fn headers(
        &self,
        numbers: impl Iterator<Item = u64>,
    ) -> Result<Vec<BlockHeader>, Cancelled> {
        futures::stream::iter(numbers.map(|n| self.header(n)))
            .buffered(HEADER_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Logs of `from..=to`, or what the node said when it refused the range.
    /// A range that times out is taken as refused for its size (a node
    /// scanning 100,000 blocks may need longer than `request_timeout_ms`):
    /// sent again unchanged, it would time out again.
    pub async fn logs(&self, from: u64, to: u64) -> Result<Result<Vec<Log>, Refused>, Cancelled> {
        let refused = |e: &ChainError| {
            matches!(
                e,
                ChainError::RangeRefused { .. }
                    | ChainError::Timeout {
                        method: "eth_getLogs",
                        ..
                    }
            )
        };
        match self
            .rpc(
                "eth_getLogs",
                refused,
                |s| async move { s.logs(from, to).await },
            )
            .await?
        {
            Ok(logs) => {
                self.metrics.record_range(to - from + 1);
                Ok(Ok(logs))
            }
            Err(ChainError::RangeRefused {
                endpoint,
                refusal,
                message,
                ..
            }) => {
                tracing::info!(from, to, error = %message, "range refused; shrinking it");
                Ok(Err(Refused {
                    endpoint,
                    refusal,
                    timed_out: false,
                }))
            }
            Err(ChainError::Timeout {
                endpoint, timeout, ..
            }) => {
                tracing::info!(from, to, ?timeout, "getLogs timed out; shrinking the range");
                let refusal = Refusal {
                    limit: Limit::Results,
                    max: None,
                    suggested: None,
                };
                Ok(Err(Refused {
                    endpoint,
                    refusal,
                    timed_out: true,
                }))
            }
            Err(e) => unreachable!("rpc() gives back range refusals and timeouts only, not {e}"),
        }
    }

    /// Reads the head when it was last read more than `every` ago, so that
    /// health and metrics see it move while a long deep phase runs. One
    /// cheap request every few seconds, made while a batch commits.
    pub async fn refresh_head(&self, every: Duration) -> Result<(), Cancelled> {
        let last = *self.head_read.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < every) {
            return Ok(());
        }
        let head = self.head().await?;
        *self.head_read.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.health.set_head(head);
        self.metrics.head_block.set(head as i64);
        Ok(())
    }

    /// Fetches `from..=to` near the head: every header, checked to extend
    /// `checkpoint`; then, for each block whose `logsBloom` may hold our
    /// logs (`chain::bloom`), its logs by block hash (EIP-234). Blocks the
    /// bloom excludes cost nothing more, and an empty answer is never taken
    /// for a block the node does not have: that node fails, and the run is
    /// fetched again after a pause (with its headers: the block may have
    /// been orphaned meanwhile), so the checkpoint never passes a block whose
    /// logs did not come from a node that has it.
    pub async fn near(
        &self,
        checkpoint: Option<&BlockRef>,
        from: u64,
        to: u64,
    ) -> Result<Near, Cancelled> {
        let mut backoff = retry::policy(UNKNOWN_BLOCK_LONGEST_PAUSE);
        loop {
            let headers = self.headers(from..=to).await?;
            match linkage(checkpoint, &headers) {
                Linkage::Reorg => return Ok(Near::Reorg),
                Linkage::Broken(at) => {
                    tracing::debug!(
                        block = from + at as u64,
                        "headers changed while fetching; again"
                    );
                    retry::pause(&mut backoff, &self.cancel).await?;
                    continue;
                }
                Linkage::Extends => {}
            }
            let wanted: Vec<&BlockHeader> = headers
                .iter()
                .filter(|h| bloom::may_hold_ours(&h.logs_bloom, self.contract))
                .collect();
            let hashes: Vec<B256> = wanted.iter().map(|h| h.hash).collect();
            let answers = self.logs_of_blocks(hashes).await?;
            if let Some(i) = answers.iter().position(Option::is_none) {
                tracing::debug!(
                    block = wanted[i].number,
                    "the node does not have the block yet; fetching the run again"
                );
                retry::pause(&mut backoff, &self.cancel).await?;
                continue;
            }
            let per_block: Vec<Vec<Log>> = answers.into_iter().flatten().collect();
            let from_those_blocks = wanted.iter().zip(&per_block).all(|(h, logs)| {
                logs.iter()
                    .all(|l| l.block_hash == Some(h.hash) && l.block_number == Some(h.number))
            });
            if !from_those_blocks {
                tracing::debug!(from, to, "logs from another block; fetching again");
                retry::pause(&mut backoff, &self.cancel).await?;
                continue;
            }
            let empty = per_block.iter().filter(|l| l.is_empty()).count() as u64;
            self.metrics
                .record_bloom("skipped", (headers.len() - wanted.len()) as u64);
            self.metrics.record_bloom("fetched", wanted.len() as u64);
            self.metrics.record_bloom("empty", empty);
            let logs: Vec<Log> = per_block.into_iter().flatten().collect();
            let by_number: HashMap<u64, &BlockHeader> =
                headers.iter().map(|h| (h.number, h)).collect();
            let last = headers
                .last()
                .expect("from..=to is never empty")
                .block_ref();
            let mut batch = decode_all(from, last, headers.clone(), &logs);
            for p in &mut batch.payments {
                p.block_timestamp = by_number.get(&p.block.number).map(|h| h.timestamp);
            }
            return Ok(Near::Batch(batch));
        }
    }

    /// The fetch stage near the head, run as a task of its own: `plan`'s
    /// blocks in runs of up to [`NEAR_RUN`], each checked to build on the
    /// last block handed over (at first the writer's checkpoint) and handed
    /// to the writer over `out`; the next run is fetched while one commits.
    /// Ends when every block is handed over, at a reorg (handed over too: the
    /// writer rolls it back), when `stop` fires or the writer is gone.
    pub async fn near_runs(
        self: Arc<Self>,
        plan: NearPlan,
        out: mpsc::Sender<Fetched>,
        stop: CancellationToken,
    ) {
        let (mut tip, mut next) = (plan.after, plan.from);
        while next <= plan.head {
            let to = plan.head.min(next + NEAR_RUN - 1);
            let fetched = async {
                let item = match self.near(tip.as_ref(), next, to).await? {
                    Near::Reorg => Fetched::Reorg,
                    Near::Batch(batch) => Fetched::Batch {
                        batch,
                        head: plan.head,
                        final_block: self.final_block(plan.head).await?,
                    },
                };
                Ok::<_, Cancelled>(item)
            };
            let item = tokio::select! {
                _ = stop.cancelled() => return,
                item = fetched => item,
            };
            let Ok(item) = item else { return };
            let reorg = matches!(item, Fetched::Reorg);
            if let Fetched::Batch { batch, .. } = &item {
                tip = Some(batch.last);
            }
            next = to + 1;
            if out.send(item).await.is_err() || reorg {
                return;
            }
        }
    }

    /// Our logs of each block in `hashes` (`None` where the node does not
    /// have it), up to [`HEADER_CONCURRENCY`] asked at once.
    async fn logs_of_blocks(&self, hashes: Vec<B256>) -> Result<Vec<Option<Vec<Log>>>, Cancelled> {
        futures::stream::iter(hashes.into_iter().map(|h| self.logs_at(h)))
            .buffered(HEADER_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Our logs of the block `hash`, or `None` when the node does not have
    /// that block (it is behind, or the block was orphaned).
    pub async fn logs_at(&self, hash: B256) -> Result<Option<Vec<Log>>, Cancelled> {
        let unknown = |e: &ChainError| matches!(e, ChainError::UnknownBlock { .. });
        let answer = self
            .rpc(
                "eth_getLogs",
                unknown,
                |s| async move { s.logs_at(hash).await },
            )
            .await?;
        match answer {
            Ok(logs) => Ok(Some(logs)),
            Err(_) => Ok(None),
        }
    }

    /// The node refused `from..=to`: shrink the range as the node said
    /// (remembering a block limit for its endpoint), or, when a single block
    /// was refused, wait and try again (nothing smaller exists).
    pub async fn refused(&self, from: u64, to: u64, why: Refused) -> Result<(), Cancelled> {
        let shrunk = self.sizer().refused(to - from + 1, &why.refusal);
        let limit = match (why.timed_out, why.refusal.limit) {
            (true, _) => "timeout",
            (false, Limit::Blocks) => "blocks",
            (false, Limit::Results) => "results",
        };
        let cap = shrunk.and_then(|s| s.cap);
        self.metrics.record_refusal(&why.endpoint, limit, cap);
        match shrunk {
            Some(shrunk) => {
                if let Some(cap) = shrunk.cap {
                    if self.pool.range_cap().is_none_or(|known| cap < known) {
                        tracing::warn!(endpoint = %why.endpoint, blocks = cap,
                            "the endpoint limits getLogs ranges; keeping ranges within it");
                    }
                    self.pool.learn_range_cap(&why.endpoint, cap);
                }
                tracing::debug!(from, to, next = shrunk.next, "next range after the refusal");
            }
            None => {
                tracing::error!(
                    block = from,
                    "the node refuses (or times out on) getLogs even for one block; retrying"
                );
                let mut backoff = retry::policy(Duration::from_secs(30));
                retry::pause(&mut backoff, &self.cancel).await?;
            }
        }
        Ok(())
    }

    /// Sets the time of payments whose logs lack `blockTimestamp`, from
    /// the headers of their blocks only (one request per such block).
    pub async fn fill_timestamps(&self, payments: &mut [Payment]) -> Result<(), Cancelled> {
        let missing: BTreeSet<u64> = payments
            .iter()
            .filter(|p| p.block_timestamp.is_none())
            .map(|p| p.block.number)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let headers = self.headers(missing.into_iter()).await?;
        let times: HashMap<u64, u64> = headers.iter().map(|h| (h.number, h.timestamp)).collect();
        for p in payments.iter_mut().filter(|p| p.block_timestamp.is_none()) {
            p.block_timestamp = times.get(&p.block.number).copied();
        }
        Ok(())
    }
}

fn never(_: &ChainError) -> bool {
    false
}
