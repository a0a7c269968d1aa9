use super::*;

fn log_at(block: u64) -> Log {
    Log {
        block_number: Some(block),
        ..Default::default()
    }
}

#[test]
fn ranges_are_planned_ahead_up_to_the_width_and_no_further() {
    let mut w = RangeWindow::new(100, 10_000, 3);
    assert_eq!(w.launch(10), Some((100, 109)));
    assert_eq!(
        w.launch(20),
        Some((110, 129)),
        "each takes the size of the moment"
    );
    assert_eq!(w.launch(10), Some((130, 139)));
    assert_eq!(w.launch(10), None, "three in flight");
    // Answered out of order: still held, so no room yet.
    w.answered(110, 129, vec![log_at(111)]);
    assert_eq!(w.launch(10), None);
    assert_eq!(w.front_logs(), None, "the first range is still flying");
}

#[test]
fn the_front_commits_in_block_order_only() {
    let mut w = RangeWindow::new(0, 1_000, 4);
    for _ in 0..3 {
        w.launch(10);
    }
    w.answered(20, 29, vec![log_at(25)]);
    w.answered(10, 19, vec![]);
    assert_eq!(w.take_front(), None, "0..=9 is not answered");
    w.answered(0, 9, vec![log_at(3)]);
    let (first, last, logs) = w.take_front().expect("front answered");
    assert_eq!((first, last), (0, 29));
    let blocks: Vec<_> = logs.iter().map(|l| l.block_number).collect();
    assert_eq!(blocks, [Some(3), Some(25)]);
    assert_eq!(w.take_front(), None);
}

#[test]
fn a_refused_middle_range_is_asked_again_cut_to_size_before_any_new_range() {
    let mut w = RangeWindow::new(0, 1_000, 3);
    w.launch(100);
    w.launch(100);
    w.launch(100);
    w.answered(0, 99, vec![]);
    w.answered(200, 299, vec![log_at(250)]);
    w.refused(100, 199, 30);
    assert_eq!(w.launch(30), Some((100, 129)), "the refused range first");
    assert_eq!(w.launch(30), Some((130, 159)));
    assert_eq!(w.launch(30), Some((160, 189)));
    assert_eq!(w.launch(30), None, "three in flight");
    let (_, last, _) = w.take_front().expect("0..=99");
    assert_eq!(last, 99, "nothing past the gap commits");
    for (a, b) in [(100, 129), (160, 189), (130, 159)] {
        w.answered(a, b, vec![]);
    }
    assert_eq!(w.launch(30), Some((190, 199)));
    assert_eq!(w.take_front().map(|f| (f.0, f.1)), Some((100, 189)));
    w.answered(190, 199, vec![]);
    assert_eq!(w.take_front().map(|f| (f.0, f.1)), Some((190, 299)));
    assert_eq!(w.launch(1_000), Some((300, 1_000)), "never past the limit");
    assert!(!w.finished());
    w.answered(300, 1_000, vec![]);
    assert!(w.take_front().is_some());
    assert!(w.finished() && w.idle());
    assert_eq!(w.launch(10), None);
}

#[test]
fn ranges_answered_behind_a_refused_one_never_keep_it_waiting() {
    let mut w = RangeWindow::new(0, 1_000, 2);
    w.launch(10);
    w.launch(10);
    w.refused(0, 9, 5);
    w.answered(10, 19, vec![]);
    assert_eq!(w.launch(5), Some((0, 4)));
    assert_eq!(
        w.launch(5),
        Some((5, 9)),
        "a waiting piece may fly while one is answered behind"
    );
    assert_eq!(w.launch(5), None);
}

#[test]
fn a_learned_limit_sends_wider_ranges_in_flight_back_to_be_cut() {
    let mut w = RangeWindow::new(0, 10_000, 4);
    w.launch(100);
    w.launch(1_000);
    w.launch(1_000);
    w.refused(100, 1_099, 500);
    assert_eq!(
        w.recut(500),
        [(1_100, 2_099)],
        "the refused one already waits"
    );
    assert_eq!(w.launch(500), Some((100, 599)));
    assert_eq!(w.launch(500), Some((600, 1_099)));
    assert_eq!(w.launch(500), Some((1_100, 1_599)));
    assert_eq!(w.launch(500), None, "four in flight");
}

#[test]
fn a_front_whose_last_block_has_a_log_knows_its_checkpoint_hash() {
    let mut w = RangeWindow::new(0, 1_000, 2);
    w.launch(10);
    w.launch(10);
    let hashed = |block| Log {
        block_hash: Some(alloy::primitives::B256::repeat_byte(1)),
        ..log_at(block)
    };
    w.answered(0, 9, vec![hashed(3)]);
    assert!(!w.front_ends_on_a_log(), "block 9 has no log");
    w.answered(10, 19, vec![hashed(19)]);
    assert!(w.front_ends_on_a_log());
}

#[test]
fn a_refused_range_is_never_asked_again_whole_even_after_the_sizer_grew() {
    let mut w = RangeWindow::new(0, 1_000, 4);
    w.launch(64);
    w.refused(0, 63, 32);
    assert_eq!(w.launch(256), Some((0, 31)), "cut to what the refusal left");
    assert_eq!(w.launch(256), Some((32, 63)));
    assert_eq!(
        w.launch(256),
        Some((64, 319)),
        "new ranges take the new size"
    );
}

#[test]
fn a_full_front_the_writer_has_not_taken_holds_new_ranges_back() {
    // A writer slower than the node: once the front holds a batch's worth
    // of logs it waits for the writer, and no new range flies meanwhile
    // (the memory bound of a catch-up); a sparser front keeps merging.
    let mut w = RangeWindow::new(0, 10_000, 2);
    assert_eq!(w.launch(10), Some((0, 9)));
    assert_eq!(w.launch(10), Some((10, 19)));
    w.answered(0, 9, vec![]);
    assert_eq!(w.launch(10), Some((20, 29)), "an empty front merges on");
    w.answered(10, 19, vec![log_at(15); TARGET_LOGS as usize]);
    w.answered(20, 29, vec![]);
    assert_eq!(w.launch(10), None, "a full front, not taken");
    w.take_front().expect("the front");
    assert_eq!(w.launch(10), Some((30, 39)), "room once it is taken");
}
