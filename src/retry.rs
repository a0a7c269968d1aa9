//! The one retry policy of our own loops (RPC calls, reconnects, commits,
//! webhook deliveries):
//! exponential backoff with jitter from the `backoff` crate, forever, and a
//! pause that ends early on shutdown. The loops themselves (`indexer::fetch`
//! for RPC, `indexer` for commits and start-up) log a failure episode once
//! when it starts and once when it ends, never per attempt.

use std::time::Duration;

use backoff::backoff::Backoff;
use backoff::ExponentialBackoff;
use tokio_util::sync::CancellationToken;

/// The backoff between attempts: 100 ms doubling to `max_interval`, ±30 % jitter.
pub fn policy(max_interval: Duration) -> ExponentialBackoff {
    ExponentialBackoff {
        current_interval: Duration::from_millis(100),
        initial_interval: Duration::from_millis(100),
        randomization_factor: 0.3,
        multiplier: 2.0,
        max_interval,
        max_elapsed_time: None,
        ..ExponentialBackoff::default()
    }
}

/// The delay before retrying a webhook delivery that failed `attempts`
/// times: `initial` doubling per attempt, ±30 % jitter, never more than
/// `max` (the crate jitters after its cap: up to 1.3 × `max` uncut).
pub fn delivery_delay(initial: Duration, max: Duration, attempts: u32) -> Duration {
    let mut backoff = ExponentialBackoff {
        current_interval: initial,
        initial_interval: initial,
        randomization_factor: 0.3,
        multiplier: 2.0,
        max_interval: max,
        max_elapsed_time: None,
        ..ExponentialBackoff::default()
    };
    let mut wait = initial;
    for _ in 0..attempts.clamp(1, 64) {
        wait = backoff.next_backoff().unwrap_or(max);
    }
    wait.min(max)
}

/// Why a retried operation stopped without a result.
#[derive(Debug, PartialEq, Eq)]
pub struct Cancelled;

/// Sleeps for the next interval of `backoff`, or returns `Err` on cancel.
pub async fn pause(
    backoff: &mut ExponentialBackoff,
    cancel: &CancellationToken,
) -> Result<(), Cancelled> {
    let wait = backoff.next_backoff().unwrap_or(backoff.max_interval);
    pause_for(wait, cancel).await
}

/// Sleeps for `wait`, or returns `Err` on cancel.
pub async fn pause_for(wait: Duration, cancel: &CancellationToken) -> Result<(), Cancelled> {
    tokio::select! {
        _ = cancel.cancelled() => Err(Cancelled),
        _ = tokio::time::sleep(wait) => Ok(()),
    }
}

#[cfg(test)]
#[path = "retry_tests.rs"]
mod tests;
