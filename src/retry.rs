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
/// times: `initial` doubling per attempt up to `max`, ±30 % jitter.
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
    wait
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
    fn a_delivery_delay_doubles_from_the_initial_one_up_to_the_max() {
        let (initial, max) = (Duration::from_secs(5), Duration::from_secs(3600));
        let first = delivery_delay(initial, max, 1);
        assert!((3500..=6500).contains(&first.as_millis()), "{first:?}");
        let fourth = delivery_delay(initial, max, 4);
        assert!(
            (28_000..=52_000).contains(&fourth.as_millis()),
            "{fourth:?}"
        );
        let late = delivery_delay(initial, max, 40);
        assert!(late <= Duration::from_secs(4680) && late >= Duration::from_secs(2520));
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
