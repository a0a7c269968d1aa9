//! The one retry policy of our own loops (RPC calls, reconnects, commits):
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

/// Why a retried operation stopped without a result.
#[derive(Debug, PartialEq, Eq)]
pub struct Cancelled;

/// Sleeps for the next interval of `backoff`, or returns `Err` on cancel.
pub async fn pause(
    backoff: &mut ExponentialBackoff,
    cancel: &CancellationToken,
) -> Result<(), Cancelled> {
    let wait = backoff.next_backoff().unwrap_or(backoff.max_interval);
    tokio::select! {
        _ = cancel.cancelled() => Err(Cancelled),
        _ = tokio::time::sleep(wait) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pause_ends_at_once_on_cancellation() {
        let cancel = CancellationToken::new();
        let mut backoff = policy(Duration::from_secs(3600));
        assert_eq!(pause(&mut backoff, &cancel).await, Ok(()));
        cancel.cancel();
        assert_eq!(pause(&mut backoff, &cancel).await, Err(Cancelled));
    }

    #[test]
    fn the_backoff_grows_and_is_capped() {
        let mut b = policy(Duration::from_secs(2));
        let waits: Vec<_> = (0..10)
            .map(|_| b.next_backoff().expect("never gives up"))
            .collect();
        assert!(waits[0] <= Duration::from_millis(130));
        assert!(waits.iter().all(|w| *w <= Duration::from_millis(2600)));
        assert!(waits[9] >= Duration::from_millis(1400));
    }
}
