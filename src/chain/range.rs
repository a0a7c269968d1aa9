//! The adaptive `eth_getLogs` range: starts small and doubles while ranges come
//! back sparse, shrinks to fit about `TARGET_LOGS` logs when they come back
//! dense, halves when a provider refuses a range and grows back only after
//! successes. Never above `max_block_range`. Pure.

/// The current range size, between 1 and the configured maximum.
#[derive(Debug, Clone)]
pub struct RangeSizer {
    max: u64,
    current: u64,
    successes: u32,
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
            current: START.min(max),
            successes: GROW_AFTER,
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

    /// The provider refused a range of `len` blocks; returns false when even a
    /// single block was refused (nothing smaller to try).
    pub fn refused(&mut self, len: u64) -> bool {
        self.successes = 0;
        if len <= 1 {
            return false;
        }
        self.current = (len / 2).max(1);
        true
    }

    /// The provider answered a range of `len` blocks with `logs` logs.
    pub fn accepted(&mut self, len: u64, logs: u64) {
        self.successes = self.successes.saturating_add(1);
        if logs > TARGET_LOGS {
            self.current = (len.saturating_mul(TARGET_LOGS) / logs).clamp(1, self.max);
        } else if logs.saturating_mul(2) <= TARGET_LOGS
            && self.successes >= GROW_AFTER
            && len >= self.current
        {
            self.current = self.current.saturating_mul(2).min(self.max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sizer grown to its maximum over empty ranges.
    fn grown(max: u64) -> RangeSizer {
        let mut r = RangeSizer::new(max);
        while r.size() < max {
            r.accepted(r.size(), 0);
        }
        r
    }

    #[test]
    fn it_starts_small_and_doubles_over_sparse_ranges_up_to_the_maximum() {
        let mut r = RangeSizer::new(1000);
        assert_eq!(r.next_range(10, u64::MAX), (10, 25));
        r.accepted(16, 3);
        assert_eq!(r.size(), 32);
        assert_eq!(grown(1000).size(), 1000);
        assert_eq!(RangeSizer::new(5).size(), 5);
    }

    #[test]
    fn a_dense_range_shrinks_the_next_one_to_fit_the_target() {
        let mut r = grown(2000);
        r.accepted(2000, 100_000);
        assert_eq!(r.size(), 40);
        // One block holding more than the target: one block at a time.
        r.accepted(40, 40 * TARGET_LOGS * 3);
        assert_eq!(r.size(), 1);
        // Near the target: neither grows nor shrinks.
        let mut r = grown(2000);
        r.accepted(2000, TARGET_LOGS);
        assert_eq!(r.size(), 2000);
        let mut r = RangeSizer::new(2000);
        r.accepted(16, TARGET_LOGS * 3 / 4);
        assert_eq!(r.size(), 16);
    }

    #[test]
    fn a_refused_range_is_halved_down_to_one_block() {
        let mut r = grown(1000);
        assert_eq!(r.next_range(10, u64::MAX), (10, 1009));
        assert!(r.refused(1000));
        assert_eq!(r.size(), 500);
        assert!(r.refused(3));
        assert_eq!(r.size(), 1);
        assert!(!r.refused(1));
    }

    #[test]
    fn after_a_refusal_the_range_grows_back_only_after_successes() {
        let mut r = grown(1000);
        r.refused(1000);
        r.refused(500);
        assert_eq!(r.size(), 250);
        for _ in 0..GROW_AFTER - 1 {
            r.accepted(250, 0);
            assert_eq!(r.size(), 250);
        }
        r.accepted(250, 0);
        assert_eq!(r.size(), 500);
        for _ in 0..10 {
            r.accepted(r.size(), 0);
        }
        assert_eq!(r.size(), 1000);
    }

    #[test]
    fn a_range_cut_short_by_the_limit_does_not_grow_it() {
        let mut r = RangeSizer::new(100);
        assert_eq!(r.next_range(50, 60), (50, 60));
        r.accepted(11, 0);
        assert_eq!(r.size(), 16);
    }
}
