//! The adaptive `eth_getLogs` range: starts at `max_block_range`, halves when a
//! provider refuses a range, grows back (doubling) after successes. Pure.

/// The current range size, between 1 and the configured maximum.
#[derive(Debug, Clone)]
pub struct RangeSizer {
    max: u64,
    current: u64,
    successes: u32,
}

/// Successes in a row before the range grows again.
const GROW_AFTER: u32 = 4;

impl RangeSizer {
    pub fn new(max: u64) -> Self {
        let max = max.max(1);
        Self {
            max,
            current: max,
            successes: 0,
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

    /// The provider accepted a range.
    pub fn accepted(&mut self) {
        self.successes += 1;
        if self.successes >= GROW_AFTER && self.current < self.max {
            self.current = self.current.saturating_mul(2).min(self.max);
            self.successes = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_range_is_halved_down_to_one_block() {
        let mut r = RangeSizer::new(1000);
        assert_eq!(r.next_range(10, u64::MAX), (10, 1009));
        assert!(r.refused(1000));
        assert_eq!(r.size(), 500);
        assert!(r.refused(3));
        assert_eq!(r.size(), 1);
        assert!(!r.refused(1));
    }

    #[test]
    fn the_range_grows_back_after_successes_but_not_past_the_maximum() {
        let mut r = RangeSizer::new(1000);
        r.refused(1000);
        r.refused(500);
        assert_eq!(r.size(), 250);
        for _ in 0..GROW_AFTER {
            r.accepted();
        }
        assert_eq!(r.size(), 500);
        for _ in 0..(GROW_AFTER * 10) {
            r.accepted();
        }
        assert_eq!(r.size(), 1000);
    }

    #[test]
    fn the_range_stops_at_the_limit() {
        let r = RangeSizer::new(100);
        assert_eq!(r.next_range(50, 60), (50, 60));
    }
}
