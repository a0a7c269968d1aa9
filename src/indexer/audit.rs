//! Completeness, after the fact (leader only): a task beside the indexer's
//! loop, started and stopped with the term, owning its position, its
//! endpoint and its share of requests. An answer can be empty or partial
//! without an error (a node behind its load balancer's others, a provider
//! dropping logs from a large answer), so what the checkpoint passed is
//! checked again:
//!
//! - **re-ask** (`reask`): every `audit.interval_ms`, the blocks that became
//!   final since the position (`audit_state`) are asked for once more, from
//!   another endpoint of `chain.rpc_urls` when there is one (else the first
//!   verifier, else the same endpoint); the logs not stored are stored
//!   through the normal write path (`write::RecoverLogs`), the position
//!   moving with them in the same fenced transaction;
//! - **sweep** (`sweep`): the logs of still-pending orders, asked for by
//!   their orderId;
//! - **confirm** (`confirm`): a log that only a verifier returned (to the
//!   re-ask, the sweep, or a verification round: `verify`) is stored once
//!   the primary returns it too, from a block on its canonical chain; until
//!   then it waits, holding the position below it, so a verifier can reveal
//!   a missing payment but never make one up.
//!
//! Each round does a bounded amount of each, so none starves the others.
//! Every recovery is counted (`liqpass_indexer_logs_recovered_total{path}`)
//! and logged at WARN with its blocks and the endpoint (redacted). It never
//! moves the checkpoint, never stores a log above it or off the primary's
//! canonical chain, and never moves the position past what it checked.

mod ask;
mod confirm;
mod range;
mod reask;
mod share;
mod sweep;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::B256;
use alloy::rpc::types::Log;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::batch::decode_all;
use super::write::{Advance, RecoverLogs, Recovered};
use super::writer::{commit_with_retry, record_outcomes};
use super::{IndexerError, Stop};
use crate::chain::pool::RpcPool;
use crate::chain::range::RangeSizer;
use crate::config::{Finality, Settings};
use crate::domain::{BlockRef, LogKey, Payment, Scope};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::reconcile::Policy;
use crate::store::{events, Store, StoreError};
pub(super) use range::RangeAudit;
pub use range::Report;
pub use share::Share;

/// Ranges (re-asked, or swept) one round asks at most: the rest waits for
/// the next round, which comes at once, after the other work's turn.
const RANGES_PER_ROUND: usize = 16;
/// Pause after a round whose database work failed.
const STORE_RETRY: Duration = Duration::from_secs(1);

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
    /// The indexer's endpoints: their canonical chain is the truth.
    primary: Arc<RpcPool>,
    asked: Asked,
    main_requests: Arc<AtomicU64>,
    share: Share,
    sizer: RangeSizer,
    /// The last audited block as this task last wrote or read it (`None`:
    /// nothing yet). Lower in the database: a reorg rolled back below it.
    position: Option<u64>,
    /// The next block to re-ask: past the position while logs a verifier
    /// returned wait for the primary (the position stays below them, so
    /// that a restart asks for them again).
    cursor: u64,
    confirm: confirm::Waiting,
    inbox: mpsc::UnboundedReceiver<Vec<Suspect>>,
    sweep: sweep::Sweep,
    /// Inside an episode of failing requests, or of failing database work
    /// (each logged once).
    failing: bool,
    store_failing: bool,
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
    pub(super) fn new(p: Parts) -> Option<(Self, mpsc::UnboundedSender<Vec<Suspect>>)> {
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
                pool: Arc::new(
                    RpcPool::new(std::slice::from_ref(verifier), p.scope, chain.requests)
                        .with_rate_budget(None, |endpoint| p.metrics.rate_limited(endpoint)),
                ),
                verifier: true,
            },
            (None, None) => Asked {
                pool: p.primary.clone(),
                verifier: false,
            },
        };
        let (tx, inbox) = mpsc::unbounded_channel();
        let main = p.main_requests.load(Ordering::Relaxed);
        let share = Share::new(p.settings.audit.request_share_percent, main, Instant::now());
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
                sizer: RangeSizer::new(chain.max_block_range),
                position: None,
                cursor: chain.start_block,
                confirm: confirm::Waiting::default(),
                inbox,
                sweep: sweep::Sweep::new(p.settings.reconcile.pending_sweep_interval),
                failing: false,
                store_failing: false,
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
        let every = self.settings.audit.interval;
        let mut audit_at = every.map(|_| Instant::now());
        let mut started = false;
        loop {
            let wake = [audit_at, self.sweep.due_at(), self.confirm.due_at()]
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
                Some(found) = self.inbox.recv() => {
                    // Refused when too many wait: logged at ERROR, for a
                    // person to run `audit` over their blocks.
                    self.suspect(found);
                }
                _ = sleep => {}
            }
            let round = async {
                if !started {
                    self.start().await?;
                    started = true;
                }
                let now = Instant::now();
                if self.confirm.due_at().is_some_and(|at| at <= now) {
                    self.confirm(cancel).await?;
                }
                if let (Some(at), Some(every)) = (audit_at, every) {
                    if at <= now {
                        let more = self.reask(cancel).await?;
                        audit_at = Some(if more { Instant::now() } else { now + every });
                    }
                }
                if self.sweep.due_at().is_some_and(|at| at <= now) {
                    self.run_sweep(cancel).await?;
                }
                Ok::<(), Stop>(())
            };
            match round.await {
                Ok(()) => {
                    if std::mem::take(&mut self.store_failing) {
                        tracing::info!("completeness checks: database recovered");
                    }
                }
                Err(Stop::Fatal(IndexerError::Store(e)))
                    if !matches!(e, StoreError::Fenced { .. }) =>
                {
                    if !std::mem::replace(&mut self.store_failing, true) {
                        tracing::warn!(error = %e, "completeness checks: database failing; again next round");
                    }
                    audit_at = audit_at.map(|_| Instant::now() + STORE_RETRY);
                }
                Err(stop) => return Err(stop),
            }
        }
    }

    /// Reads the stored position: where the re-ask starts.
    async fn start(&mut self) -> Result<(), Stop> {
        let position = self.stored_position().await?;
        self.position = position;
        self.cursor = position.map_or(self.settings.chain.start_block, |p| p + 1);
        if let Some(p) = position {
            self.metrics.audited_block.set(p as i64);
        }
        tracing::info!(
            audited = ?position,
            from = self.cursor,
            every_ms = self.settings.audit.interval.map(|d| d.as_millis() as u64),
            endpoint = %self.asked.pool.endpoint(),
            confirmed_by_primary = self.asked.verifier,
            "completeness audit started"
        );
        Ok(())
    }

    async fn stored_position(&self) -> Result<Option<u64>, Stop> {
        let mut conn = self.store.read().await?;
        Ok(crate::store::audit::position(&mut conn.conn(), &self.scope).await?)
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
            let mut conn = self.store.read().await?;
            events::live_keys(&mut conn.conn(), &self.scope, &keys).await?
        };
        Ok(payments
            .into_iter()
            .filter(|p| !live.contains(&p.key))
            .collect())
    }

    /// Stores `payments` through the normal write path (moving the position
    /// to `audited`, if given, from where this task last saw it), then counts
    /// and logs what was recovered and what was skipped. Returns what the
    /// transaction did; the position is taken from it.
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
    ) -> Result<Recovered, Stop> {
        let audited = audited.filter(|a| Some(*a) > self.position);
        if payments.is_empty() && audited.is_none() {
            return Ok(Recovered {
                position: self.position,
                ..Recovered::default()
            });
        }
        let mut payments = payments.to_vec();
        self.fill_timestamps(&mut payments, cancel).await?;
        let work = RecoverLogs {
            scope: &self.scope,
            policy: &self.policy,
            payments: &payments,
            final_block,
            verify: !self.settings.chain.verify_rpc_urls.is_empty(),
            audited: audited.map(|to| Advance {
                expected: self.position,
                to,
            }),
        };
        let cancel = cancel.clone();
        let out =
            commit_with_retry(&self.store, &self.metrics, &self.health, &cancel, &work).await?;
        self.settle_position(out.position);
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
        if !out.skipped.is_empty() {
            tracing::warn!(
                path = path.label(),
                skipped = out.skipped.len(),
                from = span.0,
                to = span.1,
                endpoint,
                "logs an answer had left out are above the checkpoint or of another branch; not stored"
            );
        }
        Ok(out)
    }

    /// Takes the position the database holds: lower than this task's, a
    /// reorg rolled back below it, and the re-ask starts again from there.
    fn settle_position(&mut self, stored: Option<u64>) {
        if stored < self.position {
            let from = stored.map_or(self.settings.chain.start_block, |p| p + 1);
            tracing::info!(
                audited = ?stored,
                "a reorg rolled back below the audit's position; auditing again from block {from}"
            );
            self.cursor = self.cursor.min(from);
            self.confirm.forget_above(stored.unwrap_or(0));
        }
        self.position = stored;
        if let Some(p) = stored {
            self.metrics.audited_block.set(p as i64);
        }
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
            // Without it the payment is stored without a time, as the
            // indexer does when a node gives none.
            if let Some(h) = self.primary_header(number, cancel).await? {
                for p in payments.iter_mut().filter(|p| p.block.number == number) {
                    p.block_timestamp = Some(h.timestamp);
                }
            }
        }
        Ok(())
    }
}
