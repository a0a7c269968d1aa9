use super::*;

#[test]
fn a_full_bucket_allows_a_small_burst_then_paces_requests() {
    let t0 = Instant::now();
    let mut b = Bucket::new(Some(10.0), t0);
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
    let mut b = Bucket::new(Some(20.0), t0);
    b.limited(t0, Some(Duration::from_secs(2)));
    assert_eq!(b.rate, Some(10.0));
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
    assert_eq!(b.rate, Some(FLOOR_PER_S));
    assert_eq!(
        b.limits, 11,
        "every rate limit is counted (progress shows them)"
    );
}

#[test]
fn answers_win_the_rate_back_over_time_up_to_the_configured_one() {
    let t0 = Instant::now();
    let mut b = Bucket::new(Some(20.0), t0);
    b.limited(t0, None);
    let resumed = t0 + DEFAULT_PAUSE;
    b.answered(resumed);
    assert_eq!(b.rate, Some(10.0), "nothing is won back during the pause");
    b.answered(resumed + Duration::from_secs(5));
    assert!(
        (b.rate.expect("a rate") - 12.0).abs() < 1e-9,
        "{:?}",
        b.rate
    );
    b.answered(resumed + Duration::from_secs(60));
    assert_eq!(b.rate, Some(20.0));
}

#[test]
fn without_a_configured_rate_nothing_waits_until_the_first_rate_limit() {
    let t0 = Instant::now();
    let mut b = Bucket::new(None, t0);
    for _ in 0..10_000 {
        assert_eq!(b.take(t0), None);
    }
    assert_eq!(b.rate, None);
}

#[test]
fn a_rate_limit_teaches_the_rate_the_provider_accepted_over_the_last_second() {
    let t0 = Instant::now();
    let ms = |m: u64| t0 + Duration::from_millis(m);
    let mut b = Bucket::new(None, t0);
    // 50 answers a second for two seconds: the provider's rate.
    for i in 0..100u64 {
        b.answered(ms(i * 20));
    }
    // A burst of rate limits (the requests in flight): learned once, not
    // cut again and again.
    for _ in 0..13 {
        b.limited(ms(2_000), Some(Duration::from_secs(1)));
    }
    let learned = b.rate.expect("a learned rate");
    assert!(
        (learned - 50.0 * LEARN_MARGIN).abs() < 1.0,
        "learned {learned} requests/s from 50 accepted in the last second"
    );
    assert_eq!(b.limits, 13);
    // Paused for the hint, then part of a second's worth at once: the
    // provider's bucket refilled during the pause.
    let resumed = ms(3_000);
    assert!(b.take(resumed - Duration::from_millis(1)).is_some());
    let burst = (0..200).take_while(|_| b.take(resumed).is_none()).count();
    assert_eq!(burst, (learned * AFTER_PAUSE) as usize, "after {learned}");
    // Answers probe slowly upwards: half a percent a second.
    b.answered(resumed + Duration::from_secs(10));
    let grown = b.rate.expect("a rate");
    assert!(
        grown > learned && grown < learned * 1.06,
        "{learned} -> {grown} after 10 s of answers"
    );
}

#[test]
fn each_new_episode_of_rate_limits_cuts_the_learned_rate_whatever_was_accepted() {
    let t0 = Instant::now();
    let ms = |m: u64| t0 + Duration::from_millis(m);
    let mut b = Bucket::new(None, t0);
    // A provider whose bucket let a burst through: 90 accepted in a second.
    for i in 0..90u64 {
        b.answered(ms(i * 11));
    }
    b.limited(ms(1_000), None);
    let first = b.rate.expect("learned");
    // Two more episodes, each after the pause ended, each with as many
    // accepted: the rate goes down by the margin each time.
    let mut at = 2_000;
    let mut rates = vec![first];
    for _ in 0..2 {
        for i in 0..90u64 {
            b.answered(ms(at + i * 11));
        }
        at += 1_000;
        b.limited(ms(at), None);
        rates.push(b.rate.expect("learned"));
        at += 1_000;
    }
    assert!(
        rates
            .windows(2)
            .all(|w| w[1] < w[0] * (LEARN_MARGIN + 0.01)),
        "{rates:?}"
    );
}

#[test]
fn a_stray_rate_limit_at_a_quiet_moment_cuts_to_no_less_than_half_the_recent_peak() {
    let t0 = Instant::now();
    let ms = |m: u64| t0 + Duration::from_millis(m);
    let mut b = Bucket::new(None, t0);
    // A catch-up: 60 accepted a second, then a rate limit.
    for i in 0..60u64 {
        b.answered(ms(i * 16));
    }
    b.limited(ms(1_000), None);
    assert!(b.rate.is_some_and(|r| r > 50.0), "{:?}", b.rate);
    // Following the head: 2 answers a second, then a stray 429.
    for i in 0..10u64 {
        b.answered(ms(3_000 + i * 500));
    }
    b.limited(ms(8_100), None);
    let rate = b.rate.expect("learned");
    assert!(
        rate >= 60.0 * PEAK_SHARE - 1.0,
        "cut to {rate}, below half the 60 accepted a second lately"
    );
}
