//! The one retry policy of our own loops (RPC calls, reconnects, commits):
//! exponential backoff with jitter from the `backoff` crate, forever, until
//! success or shutdown. A failure episode is logged once when it starts and
//! once when it ends, never per attempt.

use std::fmt::Display;
use std::future::Future;
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

/// Runs `op` until it succeeds or `cancel` fires. `on_error` sees each error
/// and may return `false` to give up at once (the error is then returned).
pub async fn until_ok<T, E, F, Fut>(
    what: &str,
    cancel: &CancellationToken,
    max_interval: Duration,
    mut op: F,
) -> Result<T, Cancelled>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = policy(max_interval);
    let mut failures = 0u64;
    loop {
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(Cancelled),
            r = op() => r,
        };
        match result {
            Ok(value) => {
                if failures > 0 {
                    tracing::info!(what, failures, "recovered");
                }
                return Ok(value);
            }
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(what, error = %e, "failing; retrying with backoff");
                } else {
                    tracing::debug!(what, error = %e, failures, "still failing");
                }
                let wait = backoff.next_backoff().unwrap_or(max_interval);
                tokio::select! {
                    _ = cancel.cancelled() => return Err(Cancelled),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

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
    async fn an_operation_is_retried_until_it_succeeds() {
        let cancel = CancellationToken::new();
        let mut attempts = 0;
        let out = until_ok("test", &cancel, Duration::from_secs(1), || {
            attempts += 1;
            let ok = attempts >= 4;
            async move {
                if ok {
                    Ok(attempts)
                } else {
                    Err("boom")
                }
            }
        })
        .await;
        assert_eq!(out, Ok(4));
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_ends_the_retries() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let out: Result<(), _> = until_ok("test", &cancel, Duration::from_secs(1), || async {
            Err::<(), _>("down")
        })
        .await;
        assert_eq!(out, Err(Cancelled));
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
