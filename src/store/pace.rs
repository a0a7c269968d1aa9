//! Keeping SQLite's one write lock short and free: the order API's `INSERT`
//! must never wait long on us. Two rules about the lock are kept here,
//! behind `Store::write`, by every writer of this process (the indexer's
//! batches and the completeness task's recoveries alike):
//!
//! - **hold**: a transaction writes about as many rows as fit in
//!   `database.max_write_ms`, learned from the measured lock-hold time of the
//!   transactions before it (`Store::rows_per_write`; the indexer cuts its
//!   batches at block boundaries to that size, so that the checkpoint
//!   commits with the whole blocks it covers);
//! - **gap**: after a commit the lock stays free for `database.write_gap_ms`
//!   before our next `BEGIN`, long enough for another writer's busy handler
//!   (SQLite's default one polls after 1, 3, 8, 18… ms) to find it free;
//!   longer after a transaction that overran (see [`catch_up`]).
//!
//! Both protect another writer, so both relax while there is none: from the
//! start, and when no other connection has committed for
//! `database.alone_after_s` (the
//! writer's connection reads `PRAGMA data_version` before each `BEGIN`,
//! which changes exactly when another connection committed), a transaction
//! is sized to `database.alone_max_write_ms` instead, and the gap after it
//! is only [`catch_up`]'s: what a writer that began waiting during it needs
//! to find the lock free at its next try. So a writer that arrives
//! unannounced waits at most about one long transaction and its catch-up
//! (50 ms and 21 ms at the default); its commit is seen before our next
//! transaction, and the transactions after it are short again.
//!
//! A third rule, nothing else meanwhile, is kept elsewhere, by construction: the
//! answers of ranges in flight are parsed in the fetch stage's own task,
//! never in the one that holds a transaction open.
//!
//! Both are SQLite's: on PostgreSQL (MVCC, row locks) the order API's
//! reads and `INSERT`s never wait for our transactions, and a batch is one
//! transaction of about 2,000 rows ([`Pacer::unbounded`]). Pure, but for the
//! clock.

use std::time::Duration;

use tokio::time::Instant;

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
/// misses: 53 ms), as the order API's worst waits showed
/// (docs/performance.md).
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

/// The alone rule: larger transactions while no other connection commits.
#[derive(Debug)]
struct Alone {
    /// Quiet this long before the rule applies.
    after: Duration,
    budget: Duration,
    rows: usize,
    /// When another connection's commit was last seen; `None`: never, so
    /// a process starts alone (its first transactions are small anyway,
    /// `START_ROWS`, and the first commit of another ends it).
    foreign_at: Option<Instant>,
}

/// Sizes transactions and spaces them out.
#[derive(Debug)]
pub struct Pacer {
    budget: Duration,
    gap: Duration,
    rows: usize,
    alone: Option<Alone>,
    /// When the next transaction may begin: the last commit's end plus
    /// `gap`, or plus the catch-up after an overrun.
    turn: Option<Instant>,
    /// Rows are not learned: every batch is one transaction.
    unbounded: bool,
}

impl Pacer {
    pub fn new(budget: Duration, gap: Duration) -> Self {
        Self {
            budget,
            gap,
            rows: START_ROWS,
            alone: None,
            turn: None,
            unbounded: false,
        }
    }

    /// With the alone rule: once no other connection has committed for
    /// `after`, transactions of `budget`.
    pub fn alone_after(mut self, after: Duration, budget: Duration) -> Self {
        self.alone = Some(Alone {
            after,
            budget,
            rows: START_ROWS,
            foreign_at: None,
        });
        self
    }

    /// True when the alone rule is on.
    pub fn has_alone_rule(&self) -> bool {
        self.alone.is_some()
    }

    /// Another connection committed (seen just before one of our `BEGIN`s).
    pub fn foreign_commit(&mut self) {
        if let Some(a) = &mut self.alone {
            a.foreign_at = Some(Instant::now());
        }
    }

    /// True while the alone rule applies: nobody else committed lately.
    pub fn is_alone(&self) -> bool {
        self.alone
            .as_ref()
            .is_some_and(|a| a.foreign_at.is_none_or(|t| t.elapsed() >= a.after))
    }

    /// No time budget and no gap: transactions of about `FIXED_ROWS`
    /// rows, each following the last at once (a backend whose readers and
    /// other writers do not share one lock with us). Bounded all the same:
    /// a transaction holds the rows it writes (and, at its end, the lease
    /// row) until it commits, and the batch a
    /// catch-up hands over grows with the ranges answered while the last
    /// one committed.
    pub fn unbounded() -> Self {
        Self {
            budget: Duration::MAX,
            gap: Duration::ZERO,
            rows: FIXED_ROWS,
            alone: None,
            turn: None,
            unbounded: true,
        }
    }

    /// Rows the next transaction should write.
    pub fn rows(&self) -> usize {
        match &self.alone {
            Some(a) if self.is_alone() => a.rows,
            _ => self.rows,
        }
    }

    /// When the next transaction may begin: the lock free for the gap
    /// since our last commit (`None`: at once).
    pub fn turn(&self) -> Option<Instant> {
        self.turn.filter(|t| *t > Instant::now())
    }

    /// A transaction of `rows` rows held the lock for `held` and committed.
    pub fn committed(&mut self, rows: usize, held: Duration) {
        let alone = self.is_alone();
        if let Some(a) = self.alone.as_mut().filter(|_| alone) {
            // Only what a writer that began waiting during it needs.
            self.turn = Some(Instant::now() + catch_up(held));
            a.rows = learn(a.rows, a.budget, rows, held);
            return;
        }
        // Within the budget the configured gap is what it needs (it is the
        // user's trade-off, 0 included); past it, a waiter may have missed.
        let gap = if held > self.budget {
            self.gap.max(catch_up(held))
        } else {
            self.gap
        };
        self.turn = Some(Instant::now() + gap);
        if !self.unbounded {
            self.rows = learn(self.rows, self.budget, rows, held);
        }
    }
}

/// The rows the next transaction should hold, after one of `rows` rows
/// held the lock for `held`, when `current` was asked for under `budget`.
fn learn(current: usize, budget: Duration, rows: usize, held: Duration) -> usize {
    let over = held > budget;
    // A short tail transaction says little about how many rows would fit,
    // unless it alone overran the budget.
    if rows == 0 || (rows * 2 < current && !over) {
        return current;
    }
    let aim = budget.as_secs_f64() * AIM;
    let fit = rows as f64 * aim / held.as_secs_f64().max(1e-6);
    // Halfway (geometrically) towards what would have fit, at most double.
    let next = (current as f64 * fit).sqrt().min(current as f64 * 2.0);
    (next as usize).clamp(1, MAX_ROWS)
}

#[cfg(test)]
#[path = "pace_tests.rs"]
mod tests;
