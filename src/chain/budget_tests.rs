use super::*;

#[test]
fn a_full_bucket_allows_a_small_burst_then_paces_requests() {
    let t0 = Instant::now();
    let mut b = Bucket::new(10.0, t0);
    for _ in 0..2 {
        assert_eq!(b.take(t0), None);
    }
    let wait = b.take(t0).expect("empty");
    assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
    assert_eq!(b.take(t0 + Duration::from_millis(100)), None);
}

#[test]
fn a_rate_limit_halves_the_rate_and_pauses_for_the_hint() {
    let t0 = Instant::now();
    let mut b = Bucket::new(20.0, t0);
    b.limited(t0, Some(Duration::from_secs(2)));
    assert_eq!(b.rate, 10.0);
    assert_eq!(
        b.take(t0 + Duration::from_secs(1)),
        Some(Duration::from_secs(1))
    );
    let after = t0 + Duration::from_secs(2);
    assert!(b.take(after).is_some(), "the pause refills nothing");
    assert_eq!(b.take(after + Duration::from_millis(100)), None);
    for _ in 0..10 {
        b.limited(after, None);
    }
    assert_eq!(b.rate, FLOOR_PER_S);
    assert_eq!(
        b.limits, 11,
        "every rate limit is counted (progress shows them)"
    );
}

#[test]
fn answers_win_the_rate_back_over_time_up_to_the_configured_one() {
    let t0 = Instant::now();
    let mut b = Bucket::new(20.0, t0);
    b.limited(t0, None);
    let resumed = t0 + DEFAULT_PAUSE;
    b.answered(resumed);
    assert_eq!(b.rate, 10.0, "nothing is won back during the pause");
    b.answered(resumed + Duration::from_secs(5));
    assert!((b.rate - 12.0).abs() < 1e-9, "{}", b.rate);
    b.answered(resumed + Duration::from_secs(60));
    assert_eq!(b.rate, 20.0);
}
