//! The adaptive `eth_getLogs` range: starts small and doubles (quadruples
//! when nearly empty) while ranges come back sparse, shrinks to fit about `TARGET_LOGS` logs when they come back
//! dense, and on a provider's refusal shrinks to what the provider said (its
//! block limit, its suggested range) or else halves. A block limit learned
//! from a refusal is a ceiling the range never grows past again (the caller
//! keeps it per endpoint: [`RangeSizer::set_cap`]); a result limit only
//! shrinks the next range. Never above `max_block_range`. Pure.

use super::refusal::{Limit, Refusal};

/// The current range size, between 1 and the ceiling.
#[derive(Debug, Clone)]
pub struct RangeSizer {
    /// `chain.max_block_range`.
    max: u64,
    /// `max`, or below it the current endpoint's learned block limit.
    ceiling: u64,
    current: u64,
    successes: u32,
    /// Logs one range should bring back: [`TARGET_LOGS`], or less when a
    /// provider said it caps answers below twice that.
    target: u64,
}

/// What a refusal changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shrunk {
    /// Blocks to ask for next (fewer than were refused).
    pub next: u64,
    /// A block limit the provider stated (or, unstated, half the refused
    /// range): to be remembered for this endpoint.
    pub cap: Option<u64>,
}

/// Successes in a row after a refusal before the range grows again.
const GROW_AFTER: u32 = 4;

/// Logs one range should bring back: bounds the memory of a batch, and keeps
/// batches small enough that the next range is fetched while one commits.
pub const TARGET_LOGS: u64 = 2_000;

/// The first range, in blocks: the density of logs is not known yet.
const START: u64 = 16;

impl RangeSizer {
    pub fn new(max: u64) -> Self {
        let max = max.max(1);
        Self {
            max,
            ceiling: max,
            current: START.min(max),
            successes: GROW_AFTER,
            target: TARGET_LOGS,
        }
    }

    /// Blocks to ask for next.
    pub fn size(&self) -> u64 {
        self.current
    }

    /// The range `from..=to` to ask for next, not past `limit`.
    pub fn next_range(&self, from: u64, limit: u64) -> (u64, u64) {
        (from, limit.min(from.saturating_add(self.current - 1)))
    }

    /// The block limit learned for the endpoint about to be asked (`None`:
    /// none yet): the range stays at or below it.
    pub fn set_cap(&mut self, cap: Option<u64>) {
        self.ceiling = cap.map_or(self.max, |c| c.min(self.max)).max(1);
        self.current = self.current.min(self.ceiling);
    }

    /// The provider refused a range of `len` blocks, saying `why`. `None`
    /// when a single block was refused (nothing smaller to try).
    pub fn refused(&mut self, len: u64, why: &Refusal) -> Option<Shrunk> {
        self.successes = 0;
        if len <= 1 {
            return None;
        }
        let below = len - 1;
        let suggested = why.suggested.map(|(a, b)| b - a + 1);
        let cap = match why.limit {
            Limit::Blocks => Some(why.max.unwrap_or(len / 2).clamp(1, below)),
            Limit::Results => {
                if let Some(logs) = why.max {
                    self.target = self.target.min((logs / 2).max(1));
                }
                None
            }
        };
        let next = match (cap, suggested) {
            (Some(c), Some(s)) => s.min(c),
            (Some(c), None) => c,
            (None, Some(s)) => s.min(below),
            (None, None) => len / 2,
        };
        if let Some(c) = cap {
            self.ceiling = self.ceiling.min(c);
        }
        self.current = next.clamp(1, self.ceiling);
        Some(Shrunk {
            next: self.current,
            cap,
        })
    }

    /// The provider answered a range of `len` blocks with `logs` logs.
    /// A range holding at most half the target doubles; one holding at most
    /// an eighth quadruples (four times as many blocks still hold at most
    /// half the target), so a sparse chain reaches the provider's limit in
    /// half the round trips.
    pub fn accepted(&mut self, len: u64, logs: u64) {
        self.successes = self.successes.saturating_add(1);
        if logs > self.target {
            self.current = (len.saturating_mul(self.target) / logs).clamp(1, self.ceiling);
        } else if logs.saturating_mul(2) <= self.target
            && self.successes >= GROW_AFTER
            && len >= self.current
        {
            let factor = if logs.saturating_mul(8) <= self.target {
                4
            } else {
                2
            };
            self.current = self.current.saturating_mul(factor).min(self.ceiling);
        }
    }
}

#[cfg(test)]
#[path = "range_tests.rs"]
mod tests;
