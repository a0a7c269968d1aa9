//! Writing a batch (or a part of one, see `batch::split_first`) in one `BEGIN IMMEDIATE`
//! transaction: events (idempotent), reconciliation of each with its order,
//! late matches, block hashes, the checkpoint, then finality; and rolling a
//! reorg back the same way.

use std::collections::{HashMap, HashSet};

use alloy::primitives::B256;

use super::batch::Batch;
use crate::domain::{BlockRef, EventVersion, LogKey, MatchStatus, Order, Payment, Scope};
use crate::reconcile::{reconcile, Decision, Policy};
use crate::store::events::{self, NewEvent};
use crate::store::orders::{self, Paying, Reason, Seen};
use crate::store::{
    audit, blocks, checkpoint, incidents, malformed, notify, outbox, treasury, Conn, StoreError,
    TxWork,
};

/// Late matches attempted per transaction, at most: bounded work.
pub const LATE_MATCH_LIMIT: u32 = 256;

/// Writing one batch.
pub struct WriteBatch<'a> {
    pub scope: &'a Scope,
    pub policy: &'a Policy,
    pub batch: &'a Batch,
    /// The checkpoint where this writer's last commit left it (`None`:
    /// wherever it is): the transaction moves it on from there only.
    pub after: Option<BlockRef>,
    pub final_block: u64,
    pub reorg_window: u64,
    /// Late matches to attempt in this transaction.
    pub late_limit: u32,
    /// The last transaction of its batch: it late-matches and promotes
    /// final payments (once per batch, not in every part).
    pub finish: bool,
    /// `chain.verify_rpc_urls` is set: no order becomes `paid` here unless
    /// its event is `verified` (the verification step promotes them).
    pub verify: bool,
}

impl TxWork for WriteBatch<'_> {
    type Output = Written;
    fn rows(&self) -> usize {
        self.batch.payments.len()
    }
    fn run<'t>(
        &'t self,
        tx: &'t mut Conn<'t>,
    ) -> impl std::future::Future<Output = Result<Written, StoreError>> + Send + 't {
        write_batch(tx, self)
    }
}

/// Moving the checkpoint back up to `block` after a backfill re-scanned
/// below it (never down: a checkpoint already past it stays).
pub struct RestoreCheckpoint<'a> {
    pub scope: &'a Scope,
    pub block: BlockRef,
}

impl TxWork for RestoreCheckpoint<'_> {
    type Output = ();
    fn run<'t>(
        &'t self,
        tx: &'t mut Conn<'t>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + 't {
        checkpoint::raise(tx, self.scope, &self.block)
    }
}

/// Putting stored events on the late-match queue (the pending-order
/// sweep's safety net, see `events::unqueued_for`); the next batch matches
/// them.
pub struct QueueLate<'a> {
    pub event_ids: &'a [i64],
}

impl TxWork for QueueLate<'_> {
    type Output = ();
    fn run<'t>(
        &'t self,
        tx: &'t mut Conn<'t>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + 't {
        events::queue_late(tx, self.event_ids)
    }
}

/// Rolling a reorg back to its common ancestor.
pub struct RollBack<'a> {
    pub scope: &'a Scope,
    pub ancestor: BlockRef,
    pub old_checkpoint: u64,
}

impl TxWork for RollBack<'_> {
    type Output = RolledBack;
    fn run<'t>(
        &'t self,
        tx: &'t mut Conn<'t>,
    ) -> impl std::future::Future<Output = Result<RolledBack, StoreError>> + Send + 't {
        roll_back(tx, self.scope, &self.ancestor, self.old_checkpoint)
    }
}

/// How one event stored by a batch (new or late-matched) came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: MatchStatus,
    /// The order it paid, when matched.
    pub order_id: Option<String>,
    pub order_ref: B256,
    pub version: EventVersion,
}

/// What a committed batch changed; metrics and logs are taken from it.
#[derive(Debug, Default)]
pub struct Written {
    pub outcomes: Vec<Outcome>,
    pub confirming: u64,
    pub paid: u64,
    pub rows: u64,
    /// Malformed logs stored (`malformed_logs`).
    pub malformed: u64,
    /// Treasury moves stored (`treasury_changes`).
    pub treasury_moves: u64,
}

impl Written {
    /// Adds what another transaction of the same batch changed.
    pub fn absorb(&mut self, other: Written) {
        self.outcomes.extend(other.outcomes);
        self.confirming += other.confirming;
        self.paid += other.paid;
        self.rows += other.rows;
        self.malformed += other.malformed;
        self.treasury_moves += other.treasury_moves;
    }
}

/// Writes `work.batch` and advances the checkpoint, inside `tx`.
pub async fn write_batch(tx: &mut Conn<'_>, work: &WriteBatch<'_>) -> Result<Written, StoreError> {
    let WriteBatch {
        scope,
        policy,
        batch,
        after,
        final_block,
        reorg_window,
        late_limit,
        verify,
        finish,
    } = *work;
    let mut written = Written::default();
    let mark = outbox::mark(tx).await?;
    // Moves first: a payment later in the batch names the new treasury.
    written.treasury_moves = treasury::insert(tx, scope, &batch.treasury_changes).await?;
    let judged: Vec<&Payment> = batch.payments.iter().collect();
    let in_force_policy = in_force(tx, scope, policy, &judged).await?;
    let stored = store_payments(
        tx,
        scope,
        &in_force_policy,
        &batch.payments,
        final_block,
        verify,
        &mut written,
    )
    .await?;
    let malformed = malformed::insert(tx, scope, &batch.malformed).await?;
    written.malformed = malformed.len() as u64;
    let late = if finish {
        late_match(tx, scope, policy, late_limit, &mut written).await?
    } else {
        Vec::new()
    };
    blocks::record(tx, scope, &batch.headers, reorg_window).await?;
    checkpoint::advance(tx, scope, after.as_ref(), &batch.last).await?;
    if finish {
        written.paid += orders::promote_final(tx, scope, final_block, verify).await?;
    }
    announce(
        tx,
        scope,
        mark,
        (&stored.exceptions, &malformed),
        &late,
        &written,
        batch.last.number,
    )
    .await?;
    Ok(written)
}

/// Logs an answer had left out, found later (the completeness audit, a
/// verifier, the pending-order sweep, `audit --repair`): stored and
/// reconciled exactly as if the batch that passed their blocks had held
/// them, without moving the checkpoint. Only logs of blocks at or below the
/// checkpoint are taken (the blocks above are the batch path's), and none
/// whose block hash differs from the one stored for its block (another
/// branch); the others come back as skipped. With `audited`, the audit's
/// position moves in the same transaction, never past the checkpoint, and
/// only from where the auditor left it (a reorg may have lowered it).
pub struct RecoverLogs<'a> {
    pub scope: &'a Scope,
    pub policy: &'a Policy,
    pub payments: &'a [Payment],
    pub final_block: u64,
    pub verify: bool,
    pub audited: Option<Advance>,
}

/// The audit's position, from what the auditor last saw to a new block.
#[derive(Debug, Clone, Copy)]
pub struct Advance {
    pub expected: Option<u64>,
    pub to: u64,
}

/// What a committed recovery stored.
#[derive(Debug, Default)]
pub struct Recovered {
    pub written: Written,
    /// The logs it stored (those not stored and live before).
    pub stored: Vec<LogKey>,
    /// The logs it did not take: above the checkpoint, or of another branch.
    pub skipped: Vec<LogKey>,
    /// The audit's position after the transaction.
    pub position: Option<u64>,
}

impl TxWork for RecoverLogs<'_> {
    type Output = Recovered;
    fn rows(&self) -> usize {
        self.payments.len()
    }
    fn run<'t>(
        &'t self,
        tx: &'t mut Conn<'t>,
    ) -> impl std::future::Future<Output = Result<Recovered, StoreError>> + Send + 't {
        recover(tx, self)
    }
}

async fn recover(tx: &mut Conn<'_>, work: &RecoverLogs<'_>) -> Result<Recovered, StoreError> {
    let scope = work.scope;
    let mut out = Recovered::default();
    let mark = outbox::mark(tx).await?;
    let checkpoint = checkpoint::read(tx, scope).await?.map_or(0, |c| c.number);
    let numbers = work.payments.iter().map(|p| p.block.number);
    let (low, high) = (numbers.clone().min(), numbers.max());
    let known = match (low, high) {
        (Some(low), Some(high)) => blocks::hashes_between(tx, scope, low, high).await?,
        _ => Default::default(),
    };
    let (taken, skipped): (Vec<Payment>, Vec<Payment>) =
        work.payments.iter().cloned().partition(|p| {
            p.block.number <= checkpoint
                && known
                    .get(&p.block.number)
                    .is_none_or(|h| *h == p.block.hash)
        });
    out.skipped = skipped.iter().map(|p| p.key).collect();
    let policy = &in_force(tx, scope, work.policy, &taken.iter().collect::<Vec<_>>()).await?;
    let stored = store_payments(
        tx,
        scope,
        policy,
        &taken,
        work.final_block,
        work.verify,
        &mut out.written,
    )
    .await?;
    if let Some(Advance { expected, to }) = work.audited {
        let to = to.min(checkpoint);
        if expected.is_none_or(|e| e < to) {
            audit::advance(tx, scope, expected, to).await?;
        }
    }
    out.position = audit::position(tx, scope).await?;
    announce(
        tx,
        scope,
        mark,
        (&stored.exceptions, &[]),
        &[],
        &out.written,
        checkpoint,
    )
    .await?;
    out.stored = stored.fresh;
    Ok(out)
}

/// `policy` with the treasury moves in force for `payments` (the last one
/// before the first of their blocks, and every one up to the last), so
/// that each v2 payment is held to the treasury in force at its log.
async fn in_force(
    tx: &mut Conn<'_>,
    scope: &Scope,
    policy: &Policy,
    payments: &[&Payment],
) -> Result<Policy, StoreError> {
    let mut policy = policy.clone();
    let blocks = payments.iter().map(|p| p.block.number);
    if let (Some(first), Some(last)) = (blocks.clone().min(), blocks.max()) {
        policy.treasury.changes = treasury::in_force(tx, scope, (first, last)).await?;
    }
    Ok(policy)
}

/// What [`store_payments`] stored.
struct Stored {
    /// The logs written (not stored and live before).
    fresh: Vec<LogKey>,
    /// Those of them that need a person (not `matched`).
    exceptions: Vec<LogKey>,
}

/// Inserts the payments not stored yet, each reconciled with its order
/// (which moves to `confirming`, or straight to `paid` when already final
/// and no verifier must confirm it first).
async fn store_payments(
    tx: &mut Conn<'_>,
    scope: &Scope,
    policy: &Policy,
    payments: &[Payment],
    final_block: u64,
    verify: bool,
    written: &mut Written,
) -> Result<Stored, StoreError> {
    // Logs already stored and live are replays: skip them entirely.
    let keys: Vec<_> = payments.iter().map(|p| p.key).collect();
    let live = events::live_keys(tx, scope, &keys).await?;
    let mut seen = HashSet::new();
    let fresh: Vec<_> = payments
        .iter()
        .filter(|p| !live.contains(&p.key) && seen.insert(p.key))
        .collect();

    let refs: Vec<_> = fresh
        .iter()
        .map(|p| p.order_ref)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut known: HashMap<_, Order> = orders::by_refs(tx, &refs).await?;
    let mut rows = Vec::with_capacity(fresh.len());
    let mut applied = Vec::new();
    for p in &fresh {
        let order = known.get_mut(&p.order_ref);
        let decision = reconcile(p, order.as_deref(), policy);
        let order_id = match (decision, order) {
            (Decision::Apply(_), Some(order)) => {
                // Later logs in this batch see the order as paid by this one.
                order.paid_by = Some(p.key);
                order.payment_status = "confirming".into();
                applied.push((order.id.clone(), *p));
                Some(order.id.clone())
            }
            _ => None,
        };
        if let Some(status) = decision.match_status() {
            written.outcomes.push(Outcome {
                status,
                order_id: order_id.clone(),
                order_ref: p.order_ref,
                version: p.version,
            });
            rows.push((*p, status, order_id));
        }
    }
    let new_events: Vec<_> = rows
        .iter()
        .map(|(p, status, order_id)| NewEvent {
            payment: p,
            status: *status,
            order_id: order_id.as_deref(),
        })
        .collect();
    written.rows += events::upsert(tx, scope, &new_events).await?;
    // A payment already final when first seen goes straight to paid, unless
    // it must be verified first (then it waits in `confirming`).
    let (mut now_final, mut unconfirmed): (Vec<Paying>, Vec<Paying>) = (Vec::new(), Vec::new());
    for (order_id, p) in &applied {
        let to = if p.block.number <= final_block && !verify {
            &mut now_final
        } else {
            &mut unconfirmed
        };
        to.push((order_id.as_str(), &p.key));
    }
    written.confirming += orders::mark_seen(tx, scope, &unconfirmed, Seen::Unconfirmed).await?;
    let paid_at_once = orders::mark_seen(tx, scope, &now_final, Seen::Final).await?;
    written.confirming += paid_at_once;
    written.paid += paid_at_once;
    Ok(Stored {
        fresh: rows.iter().map(|(p, _, _)| p.key).collect(),
        exceptions: rows
            .iter()
            .filter(|(_, status, _)| *status != MatchStatus::Matched)
            .map(|(p, _, _)| p.key)
            .collect(),
    })
}

/// Announces in the transaction what it did to orders (the audit rows
/// written since `mark`), the payments it stored (or late-matched) that
/// need a person, the malformed logs it stored; wakes listeners when
/// anything changed.
async fn announce(
    tx: &mut Conn<'_>,
    scope: &Scope,
    mark: outbox::Mark,
    (exceptions, malformed): (&[LogKey], &[LogKey]),
    late: &[i64],
    written: &Written,
    block: u64,
) -> Result<(), StoreError> {
    let announced = outbox::announce_audit(tx, mark).await?
        + outbox::announce_events(tx, scope, exceptions, late).await?
        + outbox::announce_malformed(tx, scope, malformed).await?;
    if written.confirming + written.paid > 0 || announced > 0 {
        notify::changed(tx, Some((scope, block))).await?;
    }
    Ok(())
}

/// Matches the events of the late-match queue (queued when their order
/// arrived after them), takes every event it looked at off the queue, and
/// returns the ids of the events whose outcome it changed.
async fn late_match(
    tx: &mut Conn<'_>,
    scope: &Scope,
    policy: &Policy,
    limit: u32,
    written: &mut Written,
) -> Result<Vec<i64>, StoreError> {
    let queued = events::queued_late(tx, scope, limit).await?;
    let looked_at: Vec<i64> = queued.iter().map(|ev| ev.event_id).collect();
    let waiting: Vec<&Payment> = queued
        .iter()
        .filter(|ev| ev.waiting)
        .map(|ev| &ev.payment)
        .collect();
    let policy = &in_force(tx, scope, policy, &waiting).await?;
    let mut changed = Vec::new();
    for ev in queued.into_iter().filter(|ev| ev.waiting) {
        let order = orders::by_refs(tx, &[ev.payment.order_ref])
            .await?
            .remove(&ev.payment.order_ref);
        let decision = reconcile(&ev.payment, order.as_ref(), policy);
        let (status, order_id) = match (decision, &order) {
            (Decision::Apply(status), Some(order)) => (status, Some(order.id.as_str())),
            // Its order is gone again (deleted by the order API): unchanged.
            (Decision::Flag(MatchStatus::UnknownOrder), _) => continue,
            (Decision::Flag(status), _) => (status, None),
            _ => continue,
        };
        events::set_outcome(tx, ev.event_id, status, order_id).await?;
        changed.push(ev.event_id);
        if let Some(order_id) = order_id {
            let paying = [(order_id, &ev.payment.key)];
            written.confirming += orders::mark_seen(tx, scope, &paying, Seen::Unconfirmed).await?;
        }
        written.outcomes.push(Outcome {
            status,
            order_id: order_id.map(str::to_owned),
            order_ref: ev.payment.order_ref,
            version: ev.payment.version,
        });
    }
    events::dequeue_late(tx, &looked_at).await?;
    Ok(changed)
}

/// What rolling back a reorg changed.
#[derive(Debug, Default)]
pub struct RolledBack {
    pub events_removed: usize,
    pub reverted: u64,
    /// Orders that were already `paid` and are now `reversed`.
    pub reversed: Vec<String>,
}

/// Undoes everything above `ancestor`: events marked removed, the orders they
/// paid put back, block hashes forgotten, checkpoint moved back.
pub async fn roll_back(
    tx: &mut Conn<'_>,
    scope: &Scope,
    ancestor: &BlockRef,
    old_checkpoint: u64,
) -> Result<RolledBack, StoreError> {
    let mark = outbox::mark(tx).await?;
    let removed = events::remove_above(tx, scope, ancestor.number).await?;
    malformed::remove_above(tx, scope, ancestor.number).await?;
    treasury::remove_above(tx, scope, ancestor.number).await?;
    let mut out = RolledBack {
        events_removed: removed.len(),
        ..RolledBack::default()
    };
    for ev in &removed {
        let Some(order_id) = &ev.order_id else {
            continue;
        };
        match orders::revert_payment(tx, order_id, ev.event_id).await? {
            Some(Reason::DeepReorg) => out.reversed.push(order_id.clone()),
            Some(_) => out.reverted += 1,
            None => {}
        }
    }
    if !out.reversed.is_empty() {
        let depth = old_checkpoint.saturating_sub(ancestor.number).max(1);
        incidents::record(
            tx,
            scope,
            depth,
            ancestor.number,
            old_checkpoint.max(ancestor.number + 1),
            &out.reversed,
        )
        .await?;
    }
    blocks::forget_above(tx, scope, ancestor.number).await?;
    audit::lower(tx, scope, ancestor.number).await?;
    checkpoint::set(tx, scope, ancestor).await?;
    let announced = outbox::announce_audit(tx, mark).await?;
    if out.reverted > 0 || !out.reversed.is_empty() || announced > 0 {
        notify::changed(tx, Some((scope, ancestor.number))).await?;
    }
    Ok(out)
}
