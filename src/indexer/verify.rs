//! A second opinion before money counts (`chain.verify_rpc_urls`). With
//! verifiers configured, the batch write never makes an order `paid`
//! (`write::WriteBatch::verify`); this step does, for final payments only,
//! once `chain.verify_quorum` independent endpoints return the same log (tx
//! hash, log index, block hash, topics, data) and none contradicts it.
//!
//! Each round reads the final, unverified events of `confirming` orders,
//! splits their blocks into runs of at most `chain.max_block_range`, and asks
//! every verifier (concurrently) for one `eth_getLogs` per run, filtered like
//! `ChainSource::logs`. Why ranged logs and not receipts: one request covers
//! any number of payments (a back-fill finalises thousands at once; receipts
//! would cost one request each), and it is the call every provider serves.
//! Only when a log is missing does a verifier get asked for its head, then
//! for the logs again (head first: a block it received in between must not
//! look like a missing log). Head below the block, or any error: not a
//! dispute, asked again in a later round (backing off while nothing moves).
//! A dispute is sticky: the event keeps `verification = 'disputed'` until a
//! person looks (a reorg that re-includes the log resets it).
//!
//! Outcomes are written in one short transaction that also promotes the
//! verified orders; metrics and logs follow the commit. It must not trust
//! anything the primary endpoint says about what verifiers see. It does not
//! check depth: which block is final still comes from the primary's head.

mod ask;
mod compare;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::rpc::types::Log;

use alloy::eips::BlockNumberOrTag;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::audit::{Path, Suspect};
use super::writer::commit_with_retry;
use super::{IndexerError, Stop};
use crate::chain::decode;
use crate::chain::pool::{PoolError, RpcPool};
use crate::config::{ChainSettings, Finality, Settings};
use crate::domain::Scope;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::store::verify::{self, Unverified, Verification};
use crate::store::{checkpoint, events, orders, outbox, Conn, Store, StoreError};
use ask::Endpoint;
use compare::{combine, Outcome, Verdict};

/// Most payments checked in one round (bounded work; the rest next round).
const ROUND_LIMIT: u32 = 512;
/// Pause after a round that left payments unconfirmed, doubling to the longest.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(30);

/// The verifying endpoints and the pace of their rounds.
pub struct Verifiers {
    endpoints: Vec<Endpoint>,
    quorum: usize,
    max_range: u64,
    /// Not before this instant (after a round that left payments waiting).
    retry_at: Option<Instant>,
    delay: Duration,
}

impl Verifiers {
    /// The verifiers of `chain`, or `None` when verification is off. Each
    /// reachable one must serve `chain.chain_id` (else a configuration error);
    /// an unreachable one is checked when first asked.
    pub async fn connect(
        chain: &ChainSettings,
        metrics: &Metrics,
    ) -> Result<Option<Self>, PoolError> {
        if chain.verify_rpc_urls.is_empty() {
            return Ok(None);
        }
        let mut endpoints = Vec::new();
        for url in &chain.verify_rpc_urls {
            // A budget of its own, learned from its rate limits (counted).
            let pool = RpcPool::new(std::slice::from_ref(url), chain.scope(), chain.requests)
                .with_rate_budget(None, |endpoint| metrics.rate_limited(endpoint));
            match pool.check_chain_id(0).await {
                Ok(()) => {}
                Err(e @ PoolError::WrongChain { .. }) => return Err(e),
                Err(PoolError::Chain(e)) => tracing::warn!(verifier = %url, error = %e,
                    "verifier unreachable at start; it is asked again when payments are final"),
            }
            endpoints.push(Endpoint {
                pool,
                name: url.redacted(),
            });
        }
        Ok(Some(Self {
            endpoints,
            quorum: chain.verify_quorum,
            max_range: chain.max_block_range,
            retry_at: None,
            delay: FIRST_RETRY,
        }))
    }

    fn names(&self) -> String {
        let names: Vec<_> = self.endpoints.iter().map(|e| e.name.as_str()).collect();
        names.join(", ")
    }

    /// Every verifier's verdict on each candidate (`[verifier][candidate]`),
    /// and the logs each returned (by its name).
    async fn ask(
        &self,
        candidates: &[Unverified],
        metrics: &Metrics,
    ) -> (Vec<Vec<Verdict>>, Vec<(String, Vec<Log>)>) {
        let asks = self
            .endpoints
            .iter()
            .map(|ep| ep.ask(candidates, self.max_range, metrics));
        let answers = futures::future::join_all(asks).await;
        let mut verdicts = Vec::with_capacity(answers.len());
        let mut returned = Vec::with_capacity(answers.len());
        for (ep, (v, logs)) in self.endpoints.iter().zip(answers) {
            verdicts.push(v);
            returned.push((ep.name.clone(), logs));
        }
        (verdicts, returned)
    }

    /// Paces the rounds: soon again while payments wait, else at once.
    fn paced(&mut self, waiting: bool) {
        if waiting {
            self.retry_at = Some(Instant::now() + self.delay);
            self.delay = (self.delay * 2).min(LONGEST_RETRY);
        } else {
            self.retry_at = None;
            self.delay = FIRST_RETRY;
        }
    }
}

/// Writing a round's outcomes, and promoting what they verified.
struct Record<'a> {
    scope: &'a Scope,
    outcomes: &'a [(Unverified, Verification)],
    final_block: u64,
}

/// What a committed round changed.
struct Recorded {
    disputed: u64,
    promoted: u64,
    open_disputes: i64,
}

impl crate::store::TxWork for Record<'_> {
    type Output = Recorded;
    fn run<'t>(
        &'t self,
        tx: &'t mut Conn<'t>,
    ) -> impl std::future::Future<Output = Result<Recorded, StoreError>> + Send + 't {
        record_round(tx, self)
    }
}

async fn record_round(tx: &mut Conn<'_>, work: &Record<'_>) -> Result<Recorded, StoreError> {
    let mark = outbox::mark(tx).await?;
    let disputed = verify::record(tx, work.outcomes).await?;
    let promoted = orders::promote_final(tx, work.scope, work.final_block, true).await?;
    let open_disputes = verify::disputed_count(tx, work.scope).await?;
    let announced = outbox::announce_audit(tx, mark).await?;
    if promoted > 0 || announced > 0 {
        crate::store::notify::changed(tx, Some((work.scope, work.final_block))).await?;
    }
    Ok(Recorded {
        disputed,
        promoted,
        open_disputes,
    })
}

/// The verification task of one term: a leader-only task beside the
/// indexer, with the term's fenced store, the verifiers and the primary's
/// endpoints (for a `safe`/`finalized` head).
pub struct Verifying {
    pub(super) verifiers: Verifiers,
    pub(super) store: Store,
    pub(super) scope: Scope,
    pub(super) settings: Settings,
    pub(super) metrics: Metrics,
    pub(super) health: Health,
    pub(super) primary: Arc<RpcPool>,
    pub(super) suspects: Option<mpsc::UnboundedSender<Vec<Suspect>>>,
    pub(super) cancel: CancellationToken,
}

impl Verifying {
    /// Runs rounds until the term ends (`cancel`) or the lease is lost: one
    /// every `chain.poll_interval_ms`, or later while payments wait for
    /// verifiers that have not seen them (1 s doubling to 30 s).
    pub async fn run(mut self) {
        let mut failing = false;
        loop {
            let poll = self.settings.chain.poll_interval;
            let wait = self.verifiers.retry_at.map_or(poll, |t| {
                t.saturating_duration_since(Instant::now()).max(poll)
            });
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            match self.verify_final().await {
                Ok(()) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!("verification: database recovered");
                    }
                }
                Err(Stop::Cancelled) => return,
                Err(Stop::Fatal(IndexerError::Store(e)))
                    if !matches!(e, StoreError::Fenced { .. }) =>
                {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(error = %e, "verification: database failing; again next round");
                    }
                }
                Err(Stop::Fatal(e)) => {
                    tracing::warn!(error = %e, "verification stopped");
                    return;
                }
            }
        }
    }

    /// The newest final block: `chain.confirmations` below the head the
    /// indexer last read, or the primary's `safe`/`finalized` block
    /// (`None`: unknown for now).
    async fn final_block(&self) -> Option<u64> {
        let chain = &self.settings.chain;
        let tag = match chain.finality {
            Finality::Depth => {
                let head = self.health.head();
                return (head > 0).then(|| head.saturating_sub(chain.confirmations));
            }
            Finality::Safe => BlockNumberOrTag::Safe,
            Finality::Finalized => BlockNumberOrTag::Finalized,
        };
        let source = self.primary.source().await.ok()?;
        source.tagged(tag).await.ok()
    }

    /// One verification round, when verifiers are configured and not
    /// pausing: asks them about final, unverified payments and records what
    /// they say. Without verifiers it returns at once.
    async fn verify_final(&mut self) -> Result<(), Stop> {
        let Some((candidates, final_block)) = self.final_unverified().await? else {
            return Ok(());
        };
        let v = &self.verifiers;
        let (verdicts, returned) = tokio::select! {
            _ = self.cancel.cancelled() => return Err(Stop::Cancelled),
            answers = v.ask(&candidates, &self.metrics) => answers,
        };
        self.check_completeness(&returned).await?;
        let (outcomes, waiting) = self.outcomes(candidates, &verdicts);
        self.record_verification(outcomes, final_block).await?;
        self.metrics.record_verifications("unconfirmed", waiting);
        self.verifiers.paced(waiting > 0);
        Ok(())
    }

    /// Verifiers check completeness too: a log one returned (for a range it
    /// was asked about) that is not stored goes to the completeness task,
    /// which stores it once the primary returns it as well.
    async fn check_completeness(&self, returned: &[(String, Vec<Log>)]) -> Result<(), Stop> {
        let Some(suspects) = &self.suspects else {
            return Ok(());
        };
        let mut found: Vec<Suspect> = Vec::new();
        let mut seen = HashSet::new();
        for (name, logs) in returned {
            for log in logs.iter().filter(|l| !l.removed) {
                let Ok(p) = decode::decode(log) else { continue };
                if seen.insert(p.key) {
                    found.push(Suspect {
                        key: p.key,
                        block: p.block,
                        path: Path::Verify,
                        found_by: name.clone(),
                    });
                }
            }
        }
        if found.is_empty() {
            return Ok(());
        }
        let keys: Vec<_> = found.iter().map(|s| s.key).collect();
        let live = {
            let mut conn = self.store.read().await?;
            events::live_keys(&mut conn.conn(), &self.scope, &keys).await?
        };
        found.retain(|s| !live.contains(&s.key));
        // Unsent only when the term's completeness task has ended: the term
        // is ending too.
        if !found.is_empty() && suspects.send(found).is_err() {
            tracing::debug!(
                "the completeness task has ended; a verifier's finding waits for the next term"
            );
        }
        Ok(())
    }

    /// The final, unverified events of `confirming` orders and the final
    /// block, or `None` when there is nothing to ask (or no verifier, or a
    /// pause). Also refreshes the disputed-payments gauge.
    async fn final_unverified(&self) -> Result<Option<(Vec<Unverified>, u64)>, Stop> {
        if self.verifiers.retry_at.is_some_and(|t| Instant::now() < t) {
            return Ok(None);
        }
        let mut conn = self.store.read().await?;
        let Some(checkpoint) = checkpoint::read(&mut conn.conn(), &self.scope).await? else {
            return Ok(None);
        };
        // From the database: right after a restart, and after a reorg
        // removed a disputed event (a partial index of the few disputes).
        let open = verify::disputed_count(&mut conn.conn(), &self.scope).await?;
        self.metrics.disputed_payments.set(open);
        // Read first (no RPC): a `safe`/`finalized` head costs a request.
        let mut candidates = verify::unverified_final(
            &mut conn.conn(),
            &self.scope,
            checkpoint.number,
            ROUND_LIMIT,
        )
        .await?;
        drop(conn);
        if candidates.is_empty() {
            return Ok(None);
        }
        let Some(final_block) = self.final_block().await else {
            return Ok(None);
        };
        candidates.retain(|c| c.payment.block.number <= final_block);
        Ok((!candidates.is_empty()).then_some((candidates, final_block)))
    }

    /// Each candidate's outcome over every verifier (`verdicts[verifier][i]`);
    /// the pending ones are only counted.
    fn outcomes(
        &self,
        candidates: Vec<Unverified>,
        verdicts: &[Vec<Verdict>],
    ) -> (Vec<(Unverified, Verification)>, u64) {
        let v = &self.verifiers;
        let mut outcomes = Vec::new();
        let mut waiting = 0u64;
        for (i, c) in candidates.into_iter().enumerate() {
            let per: Vec<(&str, &Verdict)> = v
                .endpoints
                .iter()
                .zip(verdicts)
                .map(|(ep, vs)| (ep.name.as_str(), &vs[i]))
                .collect();
            match combine(&per, v.quorum) {
                Outcome::Verified(detail) => outcomes.push((c, Verification::Verified { detail })),
                Outcome::Disputed(detail) => {
                    let primary = self.primary.endpoint();
                    let detail = format!("{detail}; the log came from {primary}");
                    outcomes.push((c, Verification::Disputed { detail }));
                }
                Outcome::Pending(why) => {
                    waiting += 1;
                    tracing::debug!(order = %c.order_id, block = c.payment.block.number, why, "payment not verified yet");
                }
            }
        }
        (outcomes, waiting)
    }

    async fn record_verification(
        &mut self,
        outcomes: Vec<(Unverified, Verification)>,
        final_block: u64,
    ) -> Result<(), Stop> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let work = Record {
            scope: &self.scope,
            outcomes: &outcomes,
            final_block,
        };
        let done = commit_with_retry(
            &self.store,
            &self.metrics,
            &self.health,
            &self.cancel,
            &work,
        )
        .await?;
        let m = &self.metrics;
        let verified = outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Verification::Verified { .. }))
            .count() as u64;
        m.record_verifications("verified", verified);
        m.record_verifications("disputed", done.disputed);
        m.record_transition("paid", done.promoted);
        m.disputed_payments.set(done.open_disputes);
        let primary = self.primary.endpoint();
        let verifiers = self.verifiers.names();
        for (c, outcome) in &outcomes {
            if let Verification::Disputed { detail } = outcome {
                tracing::error!(
                    order = %c.order_id,
                    tx = %c.payment.key.tx_hash,
                    log_index = c.payment.key.log_index,
                    block = c.payment.block.number,
                    primary = %primary,
                    verifiers = %verifiers,
                    detail = %detail,
                    "payment disputed: an independent endpoint contradicts the primary's log; the order stays confirming"
                );
            }
        }
        tracing::debug!(
            verified,
            disputed = done.disputed,
            paid = done.promoted,
            "verification round committed"
        );
        Ok(())
    }
}
