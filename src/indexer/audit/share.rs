//! Pure: how many requests the completeness checks (the audit, the
//! pending-order sweep, confirming what another endpoint said) may have
//! made by now: `audit.request_share_percent` of the requests the indexer
//! made since the term began, plus one every [`FLOOR_EVERY`] so that they
//! move on while the indexer is quiet (a websocket pushing heads asks for
//! little). Their requests also take tokens from the endpoint's budget,
//! so together they never exceed `chain.max_requests_per_second`.

use std::time::{Duration, Instant};

/// The completeness checks may always make one request this often.
pub const FLOOR_EVERY: Duration = Duration::from_secs(10);

/// The requests the completeness checks spent, against their share.
#[derive(Debug)]
pub struct Share {
    percent: u64,
    started: Instant,
    /// The indexer's requests when the term began.
    main_at_start: u64,
    spent: u64,
}

impl Share {
    pub fn new(percent: u32, main_now: u64, now: Instant) -> Self {
        Self {
            percent: u64::from(percent.clamp(1, 100)),
            started: now,
            main_at_start: main_now,
            spent: 0,
        }
    }

    /// True when one more request stays within the share, given the
    /// indexer's request count `main` (since start) at `now`.
    pub fn allows(&self, main: u64, now: Instant) -> bool {
        let made = main.saturating_sub(self.main_at_start);
        let floor = now.saturating_duration_since(self.started).as_secs() / FLOOR_EVERY.as_secs();
        self.spent < made * self.percent / 100 + floor + 1
    }

    /// One request was made.
    pub fn spend(&mut self) {
        self.spent += 1;
    }

    /// Requests spent since the term began.
    pub fn spent(&self) -> u64 {
        self.spent
    }
}

#[cfg(test)]
#[path = "share_tests.rs"]
mod tests;
