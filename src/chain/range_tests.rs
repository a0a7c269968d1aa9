use super::*;

/// A sizer grown to its maximum over empty ranges.
fn grown(max: u64) -> RangeSizer {
    let mut r = RangeSizer::new(max);
    while r.size() < max {
        r.accepted(r.size(), 0);
    }
    r
}

#[test]
fn it_starts_small_and_grows_over_sparse_ranges_up_to_the_maximum() {
    let mut r = RangeSizer::new(1000);
    assert_eq!(r.next_range(10, u64::MAX), (10, 25));
    r.accepted(16, TARGET_LOGS / 4);
    assert_eq!(r.size(), 32, "a quarter of the target: doubles");
    r.accepted(32, TARGET_LOGS / 8);
    assert_eq!(r.size(), 128, "an eighth of the target: quadruples");
    assert_eq!(grown(1000).size(), 1000);
    assert_eq!(RangeSizer::new(5).size(), 5);
}

#[test]
fn a_dense_range_shrinks_the_next_one_to_fit_the_target() {
    let mut r = grown(2000);
    r.accepted(2000, 100_000);
    assert_eq!(r.size(), 40);
    // One block holding more than the target: one block at a time.
    r.accepted(40, 40 * TARGET_LOGS * 3);
    assert_eq!(r.size(), 1);
    // Near the target: neither grows nor shrinks.
    let mut r = grown(2000);
    r.accepted(2000, TARGET_LOGS);
    assert_eq!(r.size(), 2000);
    let mut r = RangeSizer::new(2000);
    r.accepted(16, TARGET_LOGS * 3 / 4);
    assert_eq!(r.size(), 16);
}

fn refusal(limit: Limit, max: Option<u64>, suggested: Option<(u64, u64)>) -> Refusal {
    Refusal {
        limit,
        max,
        suggested,
    }
}

fn grow(r: &mut RangeSizer, times: usize) {
    for _ in 0..times {
        r.accepted(r.size(), 0);
    }
}

#[test]
fn a_refusal_that_states_nothing_halves_the_range_down_to_one_block() {
    let mut r = grown(1000);
    assert_eq!(r.next_range(10, u64::MAX), (10, 1009));
    let size_refusal = refusal(Limit::Results, None, None);
    let halved = r.refused(1000, &size_refusal);
    assert_eq!(halved.map(|s| (s.next, s.cap)), Some((500, None)));
    assert_eq!(r.size(), 500);
    assert!(r.refused(3, &size_refusal).is_some());
    assert_eq!(r.size(), 1);
    assert_eq!(r.refused(1, &size_refusal), None);
}

#[test]
fn a_stated_block_limit_is_a_ceiling_the_range_never_grows_past() {
    let mut r = grown(100_000);
    let shrunk = r.refused(100_000, &refusal(Limit::Blocks, Some(1000), None));
    assert_eq!(
        shrunk,
        Some(Shrunk {
            next: 1000,
            cap: Some(1000)
        })
    );
    grow(&mut r, 50);
    assert_eq!(r.size(), 1000, "stays at the provider's limit");
    // A limit the refused range did not exceed (counted another way):
    // one block less than was refused, never the same range again.
    let shrunk = r.refused(1000, &refusal(Limit::Blocks, Some(1000), None));
    assert_eq!(shrunk.map(|s| s.next), Some(999));
}

#[test]
fn a_block_refusal_without_a_number_remembers_half_the_refused_range() {
    let mut r = grown(4096);
    let shrunk = r.refused(4096, &refusal(Limit::Blocks, None, None));
    assert_eq!(shrunk.and_then(|s| s.cap), Some(2048));
    grow(&mut r, 50);
    assert_eq!(r.size(), 2048);
}

#[test]
fn a_suggested_range_is_the_next_range_within_the_stated_limit() {
    let mut r = grown(100_000);
    let alchemy = refusal(Limit::Blocks, Some(2000), Some((100, 599)));
    assert_eq!(r.refused(100_000, &alchemy).map(|s| s.next), Some(500));
    grow(&mut r, 50);
    assert_eq!(r.size(), 2000, "grows back to the limit, not past it");
    let mut r = grown(100_000);
    let infura = refusal(Limit::Results, Some(10_000), Some((100, 149)));
    let shrunk = r.refused(100_000, &infura);
    assert_eq!(shrunk.map(|s| (s.next, s.cap)), Some((50, None)));
}

#[test]
fn a_result_limit_lowers_the_log_target_not_the_block_ceiling() {
    let mut r = grown(1000);
    r.refused(1000, &refusal(Limit::Results, Some(100), None));
    assert_eq!(r.size(), 500);
    r.accepted(500, 200);
    assert_eq!(r.size(), 125, "sized to 50 logs, half the provider's cap");
    grow(&mut r, 50);
    assert_eq!(r.size(), 1000, "sparse ranges grow back to the maximum");
}

#[test]
fn each_endpoint_has_its_own_ceiling() {
    let mut r = grown(100_000);
    r.set_cap(Some(1000));
    assert_eq!(r.size(), 1000);
    grow(&mut r, 50);
    assert_eq!(r.size(), 1000);
    r.set_cap(None);
    grow(&mut r, 50);
    assert_eq!(r.size(), 100_000);
    r.set_cap(Some(1_000_000));
    assert_eq!(r.size(), 100_000, "never above max_block_range");
}

#[test]
fn after_a_refusal_the_range_grows_back_only_after_successes() {
    let mut r = grown(1000);
    let size_refusal = refusal(Limit::Results, None, None);
    r.refused(1000, &size_refusal);
    r.refused(500, &size_refusal);
    assert_eq!(r.size(), 250);
    for _ in 0..GROW_AFTER - 1 {
        r.accepted(250, 0);
        assert_eq!(r.size(), 250);
    }
    r.accepted(250, 0);
    assert_eq!(r.size(), 1000);
    grow(&mut r, 10);
    assert_eq!(r.size(), 1000);
}

#[test]
fn a_range_cut_short_by_the_limit_does_not_grow_it() {
    let mut r = RangeSizer::new(100);
    assert_eq!(r.next_range(50, 60), (50, 60));
    r.accepted(11, 0);
    assert_eq!(r.size(), 16);
}
