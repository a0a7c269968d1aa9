//! Keeping SQLite's one write lock short and free: the order API's `INSERT`
//! must never wait long on us. Two rules, both about the lock:
//!
//! - **hold**: a transaction writes about as many rows as fit in
//!   `database.max_write_ms`, learned from the measured lock-hold time of the
//!   transactions before it, cut at a block boundary so that the checkpoint
//!   commits with the whole blocks it covers (one block holding more rows
//!   than the budget is one transaction, logged at debug);
//! - **gap**: after a commit the lock stays free for `database.write_gap_ms`
//!   before our next `BEGIN`, long enough for another writer's busy handler
//!   (SQLite's default one polls after 1, 3, 8, 18… ms) to find it free;
//!   longer after a transaction that overran (see [`catch_up`]);
//! - **nothing else meanwhile**: while a transaction is open, the task that
//!   drives it polls no range in flight ([`Gate`]): an answered `eth_getLogs`
//!   is parsed inside the poll that completes it (2,000 logs: milliseconds),
//!   and the transaction's next statement would wait for it, lock held.
//!
//! All three are SQLite's: on PostgreSQL (MVCC, row locks) the order API's
//! reads and `INSERT`s never wait for our transactions, and a batch is one
//! transaction ([`Pacer::unbounded`]).
//!
//! Pure, but for the clock, the sleep in [`Pacer::wait_turn`] and the gate.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures::task::AtomicWaker;
use tokio::time::Instant;

use super::fetch::Batch;

/// Rows per transaction before anything was measured.
const START_ROWS: usize = 64;
/// The share of the budget a transaction is sized for: hold times vary from
/// one transaction to the next, and one that overruns the budget is what
/// makes another writer's busy handler miss the free lock (and then sleep
/// ever longer), so the sizer aims below it.
const AIM: f64 = 0.7;
/// Rows per transaction without a time budget (PostgreSQL): one dense
/// range's worth.
const FIXED_ROWS: usize = 2_000;
/// Never more rows per transaction than this, whatever the budget.
const MAX_ROWS: usize = 50_000;

/// SQLite's default busy handler (`sqliteDefaultBusyCallback`, the one a
/// busy timeout installs) sleeps these many ms between its tries, the last
/// one repeated.
const BUSY_HANDLER_SLEEPS_MS: [u64; 12] = [1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100];
/// A waiting writer's try comes this much later than its sleeps add up to
/// (its own wake-up, on a busy machine), at most.
const WAKE_UP_SLACK: Duration = Duration::from_millis(1);

/// How long the lock must stay free after a transaction held it for `held`
/// (past the budget) so that a writer which began waiting at any moment of
/// the hold gets in:
/// such a waiter tries again within the longest sleep of its schedule
/// that began before the hold ended (a hold of 2 ms: 2 ms; of 5 ms: 5 ms; of
/// 20 ms: 15 ms), plus its wake-up. A gap shorter than that, after a hold
/// that overran, lets it miss again and fall into ever longer sleeps (six
/// misses: 53 ms), as the order API's worst waits showed (README,
/// Performance).
pub fn catch_up(held: Duration) -> Duration {
    let mut tried_at = 0;
    let mut sleep = 0;
    let last = BUSY_HANDLER_SLEEPS_MS[BUSY_HANDLER_SLEEPS_MS.len() - 1];
    for ms in BUSY_HANDLER_SLEEPS_MS
        .iter()
        .copied()
        .chain(std::iter::repeat(last))
    {
        if Duration::from_millis(tried_at) >= held {
            break;
        }
        sleep = ms;
        tried_at += ms;
    }
    Duration::from_millis(sleep) + WAKE_UP_SLACK
}

/// Closed while one of our write transactions is open: what drives it then
/// polls nothing else through [`Gate::passing`]. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<GateState>);

#[derive(Debug, Default)]
struct GateState {
    closed: AtomicBool,
    waker: AtomicWaker,
}

/// The gate is closed until this is dropped.
#[must_use]
pub struct Closed<'g>(&'g Gate);

impl Drop for Closed<'_> {
    fn drop(&mut self) {
        self.0 .0.closed.store(false, Ordering::Release);
        self.0 .0.waker.wake();
    }
}

impl Gate {
    fn close(&self) -> Closed<'_> {
        self.0.closed.store(true, Ordering::Release);
        Closed(self)
    }

    /// `work`, polled only while the gate is open (one task at a time may
    /// wait on a gate: the one that also drives the transactions).
    pub async fn passing<F: Future>(&self, work: F) -> F::Output {
        let mut work = pin!(work);
        poll_fn(|cx| {
            if self.0.closed.load(Ordering::Acquire) {
                self.0.waker.register(cx.waker());
                if self.0.closed.load(Ordering::Acquire) {
                    return Poll::Pending;
                }
            }
            work.as_mut().poll(cx)
        })
        .await
    }
}

/// Sizes transactions and spaces them out.
#[derive(Debug)]
pub struct Pacer {
    budget: Duration,
    gap: Duration,
    rows: usize,
    /// When the next transaction may begin: the last commit's end plus
    /// `gap`, or plus the catch-up after an overrun.
    turn: Option<Instant>,
    /// Rows are not learned: every batch is one transaction.
    unbounded: bool,
    gate: Gate,
}

impl Pacer {
    pub fn new(budget: Duration, gap: Duration) -> Self {
        Self {
            budget,
            gap,
            rows: START_ROWS,
            turn: None,
            unbounded: false,
            gate: Gate::default(),
        }
    }

    /// No time budget and no gap: transactions of about `FIXED_ROWS`
    /// rows, each following the last at once (a backend whose readers and
    /// other writers do not share one lock with us). Bounded all the same:
    /// a transaction holds the lease row until it commits, and the batch a
    /// catch-up hands over grows with the ranges answered while the last
    /// one committed.
    pub fn unbounded() -> Self {
        Self {
            budget: Duration::MAX,
            gap: Duration::ZERO,
            rows: FIXED_ROWS,
            turn: None,
            unbounded: true,
            gate: Gate::default(),
        }
    }

    /// Rows the next transaction should write.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The gate [`Pacer::holding`] closes.
    pub fn gate(&self) -> Gate {
        self.gate.clone()
    }

    /// Closes the gate for a write transaction about to begin; open again
    /// when this is dropped. Without a lock to share it stays open: on
    /// PostgreSQL nobody waits for our transactions.
    pub fn holding(&self) -> Option<Closed<'_>> {
        (!self.unbounded).then(|| self.gate.close())
    }

    /// Waits until the lock has been free for the gap since our last commit.
    pub async fn wait_turn(&self) {
        if let Some(turn) = self.turn {
            if turn > Instant::now() {
                tokio::time::sleep_until(turn).await;
            }
        }
    }

    /// A transaction of `rows` rows held the lock for `held` and committed.
    pub fn committed(&mut self, rows: usize, held: Duration) {
        // Within the budget the configured gap is what it needs (it is the
        // user's trade-off, 0 included); past it, a waiter may have missed.
        let gap = if held > self.budget {
            self.gap.max(catch_up(held))
        } else {
            self.gap
        };
        self.turn = Some(Instant::now() + gap);
        self.learn(rows, held);
    }

    fn learn(&mut self, rows: usize, held: Duration) {
        if self.unbounded {
            return;
        }
        let over = held > self.budget;
        // A short tail transaction says little about how many rows would fit,
        // unless it alone overran the budget.
        if rows == 0 || (rows * 2 < self.rows && !over) {
            return;
        }
        let aim = self.budget.as_secs_f64() * AIM;
        let fit = rows as f64 * aim / held.as_secs_f64().max(1e-6);
        // Halfway (geometrically) towards what would have fit, at most double.
        let next = (self.rows as f64 * fit).sqrt().min(self.rows as f64 * 2.0);
        self.rows = (next as usize).clamp(1, MAX_ROWS);
    }
}

/// Cuts `batch` into transactions of about `rows` payments each, at block
/// boundaries: every part but the last ends at the block of its last payment
/// (its checkpoint, hash from the logs); the last ends at the batch's end.
/// Headers go with the part whose blocks they are.
#[cfg(test)]
pub fn split(batch: Batch, rows: usize) -> Vec<Batch> {
    let mut parts = Vec::new();
    let mut rest = Some(batch);
    while let Some(b) = rest {
        let (part, more) = split_first(b, rows);
        parts.push(part);
        rest = more;
    }
    parts
}

/// The first transaction of `batch` (about `rows` payments, cut after the
/// block of its last payment) and the rest, if any: the committer cuts one
/// part at a time, each sized by what the one before it taught the pacer.
/// The rest keeps the batch's end, its headers and its ignored logs.
pub fn split_first(batch: Batch, rows: usize) -> (Batch, Option<Batch>) {
    let rows = rows.max(1);
    let count = batch.payments.len();
    if count <= rows {
        return (batch, None);
    }
    let block = batch.payments[rows - 1].block;
    let mut end = rows;
    while end < count && batch.payments[end].block.number == block.number {
        end += 1;
    }
    if end == count {
        return (batch, None);
    }
    if end > rows * 2 {
        tracing::debug!(
            block = block.number,
            rows = end,
            "one block holds more rows than the write budget: one transaction"
        );
    }
    let Batch {
        first,
        last,
        headers,
        mut payments,
        malformed,
        treasury_changes,
        ignored,
    } = batch;
    let later = payments.split_off(end);
    let (mine, theirs) = headers.into_iter().partition(|h| h.number <= block.number);
    let (bad, bad_later) = malformed
        .into_iter()
        .partition(|m| m.block.number <= block.number);
    let (moves, moves_later) = treasury_changes
        .into_iter()
        .partition(|t| t.block.number <= block.number);
    let part = Batch {
        first,
        last: block,
        headers: mine,
        payments,
        malformed: bad,
        treasury_changes: moves,
        ignored: 0,
    };
    let rest = Batch {
        first: block.number + 1,
        last,
        headers: theirs,
        payments: later,
        malformed: bad_later,
        treasury_changes: moves_later,
        ignored,
    };
    (part, Some(rest))
}

#[cfg(test)]
#[path = "pace_tests.rs"]
mod tests;
