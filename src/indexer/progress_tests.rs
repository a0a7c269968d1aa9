use super::*;

fn counters(requests: u64, refusals: u64) -> Counters {
    Counters {
        requests,
        refusals,
        ..Counters::default()
    }
}

#[test]
fn a_report_gives_the_interval_rates_and_an_eta_at_that_rate() {
    let t0 = Instant::now();
    let mut p = Progress::new(100, Duration::from_secs(5), t0, counters(10, 1));
    let t1 = t0 + Duration::from_secs(5);
    assert!(p.due(t1) && !p.due(t0 + Duration::from_secs(4)));
    p.add_events(50);
    let line = p.line(600, 1099, counters(60, 3), t1);
    assert_eq!((line.done, line.total), (500, 1000));
    assert_eq!(line.percent, 50.0);
    assert_eq!(line.blocks_per_s, 100.0);
    assert_eq!(line.events_per_s, 10.0);
    assert_eq!(line.eta_s, Some(5.0));
    assert_eq!(line.requests_per_s, 10.0);
    assert_eq!(line.refused, 2);
}

#[test]
fn the_next_report_counts_from_the_last_one_and_follows_the_moving_head() {
    let t0 = Instant::now();
    let mut p = Progress::new(0, Duration::from_secs(1), t0, Counters::default());
    p.line(100, 999, Counters::default(), t0 + Duration::from_secs(1));
    let line = p.line(100, 1999, Counters::default(), t0 + Duration::from_secs(2));
    assert_eq!((line.done, line.total), (100, 2000));
    assert_eq!(line.blocks_per_s, 0.0);
    assert_eq!(line.eta_s, None, "nothing advanced: no guess");
}

#[test]
fn done_never_passes_total_even_when_the_head_read_is_older_than_the_checkpoint() {
    let t0 = Instant::now();
    let mut p = Progress::new(10, Duration::from_secs(1), t0, Counters::default());
    let line = p.line(60, 40, Counters::default(), t0 + Duration::from_secs(1));
    assert_eq!((line.done, line.total, line.percent), (50, 50, 100.0));
    assert_eq!(line.eta_s, Some(0.0));
}

#[test]
fn the_summary_counts_every_block_and_event_since_the_start() {
    let t0 = Instant::now();
    let mut p = Progress::new(10, Duration::from_secs(1), t0, Counters::default());
    p.add_events(3);
    p.line(20, 100, Counters::default(), t0 + Duration::from_secs(1));
    p.add_events(4);
    let s = p.summary(101, t0 + Duration::from_secs(3));
    assert_eq!((s.blocks, s.events), (91, 7));
    assert_eq!(s.elapsed, Duration::from_secs(3));
}
