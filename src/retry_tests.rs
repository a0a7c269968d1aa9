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
    assert!(late <= max && late >= Duration::from_secs(2520), "{late:?}");
}

#[test]
fn a_delivery_delay_never_exceeds_the_max_whatever_the_jitter() {
    let (initial, max) = (Duration::from_secs(5), Duration::from_secs(60));
    let delays: Vec<_> = (0..2_000)
        .map(|i| delivery_delay(initial, max, 5 + i % 20))
        .collect();
    assert!(
        delays.iter().all(|d| *d <= max),
        "{:?}",
        delays.iter().max()
    );
    assert!(
        delays.iter().any(|d| *d < max),
        "still jittered below the max"
    );
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
