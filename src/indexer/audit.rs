//! Completeness, after the fact (leader only): a task beside the indexer's
//! loop, started and stopped with the term, owning its position, its
//! endpoint and its share of requests. An answer can be empty or partial
//! without an error (a node behind its load balancer's others, a provider
//! dropping logs from a large answer), so what the checkpoint passed is
//! checked again:
//!
//! - **re-ask**: every `audit.interval_ms`, the blocks that became final
//!   since the position (`audit_state`) are asked for once more, from
//!   another endpoint of `chain.rpc_urls` when there is one (else the first
//!   verifier, else the same endpoint); the logs not stored are stored
//!   through the normal write path (`write::RecoverLogs`), the position
//!   moving with them in the same fenced transaction;
//! - **sweep** (`sweep`): the logs of still-pending orders, asked for by
//!   their orderId;
//! - **confirm**: a log that only a verifier returned (to the re-ask, the
//!   sweep, or a verification round: `verify`) is stored once the primary
//!   returns it too, asked for by its block hash; until then it waits and
//!   is asked again, so a verifier can reveal a missing payment but never
//!   make one up.
//!
//! Every recovery is counted (`liqpass_indexer_logs_recovered_total{path}`)
//! and logged at WARN with its blocks and the endpoint (redacted). It never
//! moves the checkpoint and never stores a log above it.

mod range;
mod share;
mod sweep;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::B256;
use alloy::rpc::types::Log;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::commit::{commit_with_retry, record_outcomes};
use super::fetch::decode_all;
use super::pace::Pacer;
use super::write::RecoverLogs;
use super::Stop;
use crate::chain::pool::{PoolError, RpcPool};
use crate::chain::range::RangeSizer;
use crate::chain::source::{ChainError, ChainSource};
use crate::config::{Finality, Settings};
use crate::domain::{BlockRef, LogKey, Payment, Scope};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::reconcile::Policy;
use crate::retry::Cancelled;
use crate::store::{audit, events, sync, Store};
pub use range::Report;
pub use share::Share;

/// Logs waiting for the primary's confirmation, at most; beyond, the
/// oldest are dropped (logged at ERROR: a person must look).
const MAX_SUSPECTS: usize = 1_000;
/// Blocks asked for by hash in one confirmation round.
const CONFIRM_BLOCKS_PER_ROUND: usize = 16;
/// Pause after a confirmation round that left logs waiting, doubling to
/// the longest.
const FIRST_CONFIRM_PAUSE: Duration = Duration::from_secs(1);
const LONGEST_CONFIRM_PAUSE: Duration = Duration::from_secs(60);
/// How often the share is looked at again while it is spent.
const SHARE_POLL: Duration = Duration::from_millis(100);

/// The defence that found a missing log (the `path` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Audit,
    Verify,
    Sweep,
    Repair,
}

impl Path {
    pub fn label(self) -> &'static str {
        match self {
            Self::Audit => "audit",
            Self::Verify => "verify",
            Self::Sweep => "sweep",
            Self::Repair => "repair",
        }
    }
}

/// The block the position may reach when the re-ask has passed `last`:
/// `last`, or the block before the oldest re-asked log still waiting for
/// the primary (`None` when that is block 0).
fn audited_below(suspects: &[Suspect], last: u64) -> Option<u64> {
    match suspects
        .iter()
        .filter(|s| s.path == Path::Audit)
        .map(|s| s.block.number)
        .min()
    {
        Some(0) => None,
        Some(b) => Some((b - 1).min(last)),
        None => Some(last),
    }
}

/// A log another endpoint returned that is not stored, waiting for the
/// primary to return it too.
#[derive(Debug, Clone)]
pub struct Suspect {
    pub key: LogKey,
    pub block: BlockRef,
    pub path: Path,
    /// The endpoint that returned it (redacted).
    pub found_by: String,
}

/// Where the re-ask and the sweep ask.
struct Asked {
    pool: Arc<RpcPool>,
    /// A verifier: what it returns is confirmed by the primary first.
    verifier: bool,
}

/// The completeness task of one term.
pub struct Auditor {
    settings: Settings,
    scope: Scope,
    policy: Policy,
    store: Store,
    metrics: Metrics,
    health: Health,
    /// The indexer's endpoints: they confirm what a verifier says.
    primary: Arc<RpcPool>,
    asked: Asked,
    main_requests: Arc<AtomicU64>,
    share: Share,
    sizer: RangeSizer,
    pacer: Pacer,
    /// The last audited block, as stored (`None`: nothing yet).
    position: Option<u64>,
    /// The next block to re-ask: past the position while logs a verifier
    /// returned wait for the primary (the position stays below them, so
    /// that a restart asks for them again).
    cursor: u64,
    suspects: Vec<Suspect>,
    inbox: mpsc::Receiver<Vec<Suspect>>,
    confirm_at: Instant,
    confirm_pause: Duration,
    sweep: sweep::Sweep,
    /// Inside an episode of failing requests (logged once).
    failing: bool,
}

/// What the indexer hands the auditor of its term.
pub(super) struct Parts {
    pub settings: Settings,
    pub scope: Scope,
    pub policy: Policy,
    pub store: Store,
    pub metrics: Metrics,
    pub health: Health,
    pub primary: Arc<RpcPool>,
    pub main_requests: Arc<AtomicU64>,
}

impl Auditor {
    /// The auditor, and where verification rounds send the logs they found
    /// missing. `None` when there is nothing to do: the audit and the sweep
    /// are off and no verifier is configured.
    pub(super) fn new(p: Parts) -> Option<(Self, mpsc::Sender<Vec<Suspect>>)> {
        let chain = &p.settings.chain;
        if p.settings.audit.interval.is_none()
            && p.settings.reconcile.pending_sweep_interval.is_none()
            && chain.verify_rpc_urls.is_empty()
        {
            return None;
        }
        let asked = match (p.primary.others_first(), chain.verify_rpc_urls.first()) {
            (Some(others), _) => Asked {
                pool: Arc::new(others),
                verifier: false,
            },
            (None, Some(verifier)) => Asked {
                pool: Arc::new(RpcPool::new(
                    std::slice::from_ref(verifier),
                    p.scope,
                    chain.request_timeout,
                )),
                verifier: true,
            },
            (None, None) => Asked {
                pool: p.primary.clone(),
                verifier: false,
            },
        };
        let (tx, inbox) = mpsc::channel(64);
        let main = p.main_requests.load(Ordering::Relaxed);
        let share = Share::new(p.settings.audit.request_share_percent, main, Instant::now());
        let sizer = RangeSizer::new(chain.max_block_range);
        let sweep = sweep::Sweep::new(p.settings.reconcile.pending_sweep_interval);
        Some((
            Self {
                scope: p.scope,
                policy: p.policy,
                store: p.store,
                metrics: p.metrics,
                health: p.health,
                primary: p.primary,
                asked,
                main_requests: p.main_requests,
                share,
                sizer,
                pacer: Pacer::unbounded(),
                position: None,
                cursor: 0,
                suspects: Vec::new(),
                inbox,
                confirm_at: Instant::now(),
                confirm_pause: FIRST_CONFIRM_PAUSE,
                sweep,
                failing: false,
                settings: p.settings,
            },
            tx,
        ))
    }

    /// Runs until `cancel` fires (the term ends) or the lease is lost.
    pub async fn run(mut self, cancel: CancellationToken) {
        match self.work(&cancel).await {
            Ok(()) | Err(Stop::Cancelled) => {}
            Err(Stop::Fatal(e)) => tracing::warn!(error = %e, "the completeness audit stopped"),
        }
    }

    async fn work(&mut self, cancel: &CancellationToken) -> Result<(), Stop> {
        let position = {
            let mut conn = self.store.conn().await?;
            audit::position(&mut conn.conn(), &self.scope).await?
        };
        self.position = position;
        self.cursor = position.map_or(self.settings.chain.start_block, |p| p + 1);
        if let Some(p) = position {
            self.metrics.audited_block.set(p as i64);
        }
        let every = self.settings.audit.interval;
        tracing::info!(
            audited = ?position,
            from = self.cursor,
            every_ms = every.map(|d| d.as_millis() as u64),
            endpoint = %self.asked.pool.endpoint(),
            confirmed_by_primary = self.asked.verifier,
            "completeness audit started"
        );
        let mut audit_at = every.map(|_| Instant::now());
        loop {
            let wake = [
                audit_at,
                self.sweep.due_at(),
                (!self.suspects.is_empty()).then_some(self.confirm_at),
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return Err(Stop::Cancelled),
                Some(found) = self.inbox.recv() => self.suspect(found),
                _ = sleep => {}
            }
            let now = Instant::now();
            if !self.suspects.is_empty() && self.confirm_at <= now {
                self.confirm(cancel).await?;
            }
            if let (Some(at), Some(every)) = (audit_at, every) {
                if at <= now {
                    self.reask(cancel).await?;
                    audit_at = Some(Instant::now() + every);
                }
            }
            if self.sweep.due_at().is_some_and(|at| at <= now) {
                self.run_sweep(cancel).await?;
            }
        }
    }

    /// Re-asks the blocks that became final since the position, range by
    /// range, moving the position with each.
    async fn reask(&mut self, cancel: &CancellationToken) -> Result<(), Stop> {
        let Some((upto, final_block)) = self.final_indexed(cancel).await? else {
            return Ok(());
        };
        while self.cursor <= upto {
            let Some((span, logs)) = self.ask_range(self.cursor, upto, None, cancel).await? else {
                return Ok(());
            };
            if let Some(logs) = logs {
                self.found(&logs, span, Path::Audit, true, final_block, cancel)
                    .await?;
                self.cursor = span.1 + 1;
            }
        }
        Ok(())
    }

    /// Asks the audit's endpoint for the logs of a range from `from` (at
    /// most to `upto`, sized like the deep ranges), of the orders `refs`
    /// only when given: the range and its logs; the range and `None` when
    /// it was refused (the next one is smaller); `None` when the endpoint
    /// failed (asked again next round).
    async fn ask_range(
        &mut self,
        from: u64,
        upto: u64,
        refs: Option<&[B256]>,
        cancel: &CancellationToken,
    ) -> Result<Option<((u64, u64), Option<Vec<Log>>)>, Stop> {
        self.sizer.set_cap(self.asked.pool.range_cap());
        let (from, to) = self.sizer.next_range(from, upto);
        self.take_share(cancel).await?;
        let pool = self.asked.pool.clone();
        let refs = refs.map(<[B256]>::to_vec);
        let answer = self
            .call(&pool, "eth_getLogs", |s| async move {
                match refs {
                    Some(refs) => s.logs_of_orders(from, to, &refs).await,
                    None => s.logs(from, to).await,
                }
            })
            .await;
        match answer {
            Ok(logs) => {
                self.sizer.accepted(to - from + 1, logs.len() as u64);
                Ok(Some(((from, to), Some(logs))))
            }
            Err(ChainError::RangeRefused {
                endpoint, refusal, ..
            }) => match self.sizer.refused(to - from + 1, &refusal) {
                Some(shrunk) => {
                    if let Some(cap) = shrunk.cap {
                        self.asked.pool.learn_range_cap(&endpoint, cap);
                    }
                    Ok(Some(((from, to), None)))
                }
                None => Ok(None),
            },
            Err(_) => Ok(None),
        }
    }

    /// The last block both final and indexed, and the final block; `None`
    /// while nothing new is.
    async fn final_indexed(
        &mut self,
        cancel: &CancellationToken,
    ) -> Result<Option<(u64, u64)>, Stop> {
        let checkpoint = {
            let mut conn = self.store.conn().await?;
            sync::checkpoint(&mut conn.conn(), &self.scope).await?
        };
        let Some(checkpoint) = checkpoint else {
            return Ok(None);
        };
        let Some(final_block) = self.final_block(cancel).await? else {
            return Ok(None);
        };
        let upto = final_block.min(checkpoint.number);
        Ok((upto >= self.cursor).then_some((upto, final_block)))
    }

    /// The newest final block (`None`: unknown for now).
    async fn final_block(&mut self, cancel: &CancellationToken) -> Result<Option<u64>, Stop> {
        let chain = &self.settings.chain;
        let tag = match chain.finality {
            Finality::Depth => {
                let head = self.health.head();
                return Ok((head > 0).then(|| head.saturating_sub(chain.confirmations)));
            }
            Finality::Safe => BlockNumberOrTag::Safe,
            Finality::Finalized => BlockNumberOrTag::Finalized,
        };
        self.take_share(cancel).await?;
        let primary = self.primary.clone();
        let tagged = self
            .call(&primary, "eth_getBlockByNumber", |s| async move {
                s.tagged(tag).await
            })
            .await;
        Ok(tagged.ok())
    }

    /// Logs an endpoint returned for `span`: those not stored are stored
    /// (or, from a verifier, wait for the primary). With `audits`, `span`
    /// is a re-asked range and the position moves past it (but never past a
    /// re-asked log still waiting for the primary).
    async fn found(
        &mut self,
        logs: &[Log],
        span: (u64, u64),
        path: Path,
        audits: bool,
        final_block: u64,
        cancel: &CancellationToken,
    ) -> Result<(), Stop> {
        let missing = self.not_stored(logs, span).await?;
        let endpoint = self.asked.pool.endpoint();
        if self.asked.verifier {
            let found: Vec<Suspect> = missing
                .iter()
                .map(|p| Suspect {
                    key: p.key,
                    block: p.block,
                    path,
                    found_by: endpoint.clone(),
                })
                .collect();
            self.suspect(found);
            let audited = audits
                .then(|| audited_below(&self.suspects, span.1))
                .flatten();
            self.recover(&[], audited, path, span, &endpoint, final_block, cancel)
                .await
        } else {
            let audited = audits.then_some(span.1);
            self.recover(
                &missing,
                audited,
                path,
                span,
                &endpoint,
                final_block,
                cancel,
            )
            .await
        }
    }

    /// The payments of `logs` that are not stored and live.
    async fn not_stored(&self, logs: &[Log], span: (u64, u64)) -> Result<Vec<Payment>, Stop> {
        let last = BlockRef {
            number: span.1,
            hash: B256::ZERO,
        };
        let payments = decode_all(span.0, last, Vec::new(), logs).payments;
        if payments.is_empty() {
            return Ok(payments);
        }
        let keys: Vec<LogKey> = payments.iter().map(|p| p.key).collect();
        let live = {
            let mut conn = self.store.conn().await?;
            events::live_keys(&mut conn.conn(), &self.scope, &keys).await?
        };
        Ok(payments
            .into_iter()
            .filter(|p| !live.contains(&p.key))
            .collect())
    }

    /// Stores `payments` through the normal write path (moving the position
    /// to `audited`, if given), then counts and logs what was recovered.
    #[allow(clippy::too_many_arguments)]
    async fn recover(
        &mut self,
        payments: &[Payment],
        audited: Option<u64>,
        path: Path,
        span: (u64, u64),
        endpoint: &str,
        final_block: u64,
        cancel: &CancellationToken,
    ) -> Result<(), Stop> {
        if payments.is_empty() && audited.is_none() {
            return Ok(());
        }
        let mut payments = payments.to_vec();
        self.fill_timestamps(&mut payments, cancel).await?;
        let work = RecoverLogs {
            scope: &self.scope,
            policy: &self.policy,
            payments: &payments,
            final_block,
            verify: !self.settings.chain.verify_rpc_urls.is_empty(),
            audited,
        };
        let cancel = cancel.clone();
        let out = commit_with_retry(
            &self.store,
            &self.metrics,
            &self.health,
            &mut self.pacer,
            &cancel,
            &work,
        )
        .await?;
        if let Some(block) = audited {
            self.position = Some(block);
            self.metrics.audited_block.set(block as i64);
        }
        let n = out.stored.len() as u64;
        if n > 0 {
            self.metrics.record_recovered(path.label(), n);
            record_outcomes(&self.metrics, &out.written);
            let refs: Vec<String> = payments
                .iter()
                .filter(|p| out.stored.contains(&p.key))
                .take(5)
                .map(|p| format!("{:#x}", p.order_ref))
                .collect();
            tracing::warn!(
                path = path.label(),
                recovered = n,
                from = span.0,
                to = span.1,
                endpoint,
                order_refs = %refs.join(","),
                "logs an answer had left out were found and stored (completeness)"
            );
        }
        Ok(())
    }

    /// Block times for payments whose logs lack them, from the primary's
    /// headers (one request per block).
    async fn fill_timestamps(
        &mut self,
        payments: &mut [Payment],
        cancel: &CancellationToken,
    ) -> Result<(), Stop> {
        let blocks: HashSet<u64> = payments
            .iter()
            .filter(|p| p.block_timestamp.is_none())
            .map(|p| p.block.number)
            .collect();
        for number in blocks {
            self.take_share(cancel).await?;
            let primary = self.primary.clone();
            let header = self
                .call(&primary, "eth_getBlockByNumber", |s| async move {
                    s.header(number).await
                })
                .await;
            // Without it the payment is stored without a time, as the
            // indexer does when a node gives none.
            if let Ok(h) = header {
                for p in payments.iter_mut().filter(|p| p.block.number == number) {
                    p.block_timestamp = Some(h.timestamp);
                }
            }
        }
        Ok(())
    }

    /// Logs another endpoint returned that are not stored: they wait for
    /// the primary (asked at once).
    fn suspect(&mut self, found: Vec<Suspect>) {
        let known: HashSet<LogKey> = self.suspects.iter().map(|s| s.key).collect();
        for s in found.into_iter().filter(|s| !known.contains(&s.key)) {
            tracing::warn!(
                path = s.path.label(),
                block = s.block.number,
                tx = %s.key.tx_hash,
                log_index = s.key.log_index,
                endpoint = %s.found_by,
                "a log another endpoint returned is not stored; asking the primary for its block"
            );
            self.suspects.push(s);
        }
        if self.suspects.len() > MAX_SUSPECTS {
            let dropped: Vec<Suspect> = self
                .suspects
                .drain(..self.suspects.len() - MAX_SUSPECTS)
                .collect();
            for s in dropped {
                tracing::error!(block = s.block.number, tx = %s.key.tx_hash, log_index = s.key.log_index,
                    endpoint = %s.found_by, "too many unconfirmed logs; no longer asking the primary for this one: \
                    run `liqpass-indexer audit` over its block");
            }
        }
        self.confirm_at = Instant::now();
        self.confirm_pause = FIRST_CONFIRM_PAUSE;
    }

    /// Asks the primary for the blocks of the waiting logs, by hash: the
    /// unstored logs of its answers are stored; a waiting log it did not
    /// return waits for the next round.
    async fn confirm(&mut self, cancel: &CancellationToken) -> Result<(), Stop> {
        let mut blocks: BTreeMap<u64, BlockRef> = BTreeMap::new();
        for s in &self.suspects {
            blocks.entry(s.block.number).or_insert(s.block);
        }
        let final_block = self.final_block(cancel).await?.unwrap_or(0);
        let mut confirmed = HashSet::new();
        for block in blocks.into_values().take(CONFIRM_BLOCKS_PER_ROUND) {
            self.take_share(cancel).await?;
            let primary = self.primary.clone();
            let hash = block.hash;
            let answer = self
                .call(
                    &primary,
                    "eth_getLogs",
                    |s| async move { s.logs_at(hash).await },
                )
                .await;
            let Ok(logs) = answer else {
                continue;
            };
            let returned: HashSet<LogKey> = logs
                .iter()
                .filter_map(|l| {
                    Some(LogKey {
                        tx_hash: l.transaction_hash?,
                        log_index: l.log_index?,
                    })
                })
                .collect();
            let path = self
                .suspects
                .iter()
                .find(|s| s.block.hash == hash)
                .map_or(Path::Audit, |s| s.path);
            let span = (block.number, block.number);
            let missing = self.not_stored(&logs, span).await?;
            let endpoint = primary.endpoint();
            self.recover(&missing, None, path, span, &endpoint, final_block, cancel)
                .await?;
            confirmed.extend(returned);
        }
        let before = self.suspects.len();
        self.suspects.retain(|s| !confirmed.contains(&s.key));
        if self.suspects.len() < before {
            self.confirm_pause = FIRST_CONFIRM_PAUSE;
            // The position may now pass the blocks of the confirmed logs.
            let audited = self.cursor.checked_sub(1).and_then(|last| {
                audited_below(&self.suspects, last).filter(|&a| Some(a) > self.position)
            });
            if audited.is_some() {
                let span = (audited.unwrap_or(0), audited.unwrap_or(0));
                self.recover(&[], audited, Path::Audit, span, "", final_block, cancel)
                    .await?;
            }
        } else {
            self.confirm_pause = (self.confirm_pause * 2).min(LONGEST_CONFIRM_PAUSE);
        }
        self.confirm_at = Instant::now() + self.confirm_pause;
        Ok(())
    }

    /// Waits until the share allows one more request, then spends it.
    async fn take_share(&mut self, cancel: &CancellationToken) -> Result<(), Cancelled> {
        loop {
            let main = self.main_requests.load(Ordering::Relaxed);
            if self.share.allows(main, Instant::now()) {
                self.share.spend();
                return Ok(());
            }
            tokio::select! {
                _ = cancel.cancelled() => return Err(Cancelled),
                _ = tokio::time::sleep(SHARE_POLL) => {}
            }
        }
    }

    /// One request to `pool`'s current endpoint, recorded in the metrics;
    /// a failure is logged once per episode and left to the next round.
    async fn call<T, F, Fut>(
        &mut self,
        pool: &RpcPool,
        method: &'static str,
        op: F,
    ) -> Result<T, ChainError>
    where
        F: FnOnce(ChainSource) -> Fut,
        Fut: std::future::Future<Output = Result<T, ChainError>>,
    {
        let endpoint = pool.endpoint();
        let started = Instant::now();
        let result = match pool.source().await {
            Ok(source) => op(source).await,
            Err(PoolError::Chain(e)) => Err(e),
            Err(e @ PoolError::WrongChain { .. }) => Err(ChainError::Connect {
                endpoint: endpoint.clone(),
                message: e.to_string(),
            }),
        };
        self.metrics
            .record_rpc(method, &endpoint, started.elapsed(), result.is_ok());
        match &result {
            Ok(_) | Err(ChainError::RangeRefused { .. }) | Err(ChainError::UnknownBlock { .. }) => {
                pool.succeeded();
                if std::mem::take(&mut self.failing) {
                    tracing::info!(endpoint, "completeness checks: RPC recovered");
                }
            }
            Err(e) => {
                pool.failed();
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(endpoint, error = %e,
                        "completeness checks: RPC failing; asking again next round");
                }
            }
        }
        result
    }
}
