use super::*;

fn spend_all(share: &mut Share, main: u64, now: Instant) -> u64 {
    let mut n = 0;
    while share.allows(main, now) {
        share.spend();
        n += 1;
    }
    n
}

#[test]
fn the_checks_may_make_their_percentage_of_the_indexers_requests() {
    let t0 = Instant::now();
    let mut share = Share::new(5, 1_000, t0);
    assert_eq!(spend_all(&mut share, 1_000, t0), 1, "one to start with");
    assert_eq!(spend_all(&mut share, 1_000 + 400, t0), 20);
    assert_eq!(share.spent(), 21);
}

#[test]
fn while_the_indexer_is_quiet_one_request_per_interval_is_allowed() {
    let t0 = Instant::now();
    let mut share = Share::new(5, 0, t0);
    spend_all(&mut share, 0, t0);
    assert!(!share.allows(0, t0 + FLOOR_EVERY / 2));
    assert_eq!(spend_all(&mut share, 0, t0 + FLOOR_EVERY), 1);
    assert_eq!(spend_all(&mut share, 0, t0 + FLOOR_EVERY * 3), 2);
}
