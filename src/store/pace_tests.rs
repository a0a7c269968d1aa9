use std::time::Duration;

use super::*;

/// Waits for the pacer's turn, as `Store::write` does.
async fn wait_turn(p: &Pacer) {
    if let Some(t) = p.turn() {
        tokio::time::sleep_until(t).await;
    }
}

#[test]
fn rows_per_transaction_follow_the_measured_hold_time() {
    let ms = Duration::from_millis;
    let mut p = Pacer::new(ms(4), ms(3));
    assert_eq!(p.rows(), START_ROWS);
    // Fast: grows, at most doubling.
    p.committed(64, ms(1));
    let grown = p.rows();
    assert!(grown > 64 && grown <= 128, "{grown}");
    // Twice the budget: shrinks, aiming below the budget.
    p.committed(grown, ms(8));
    let shrunk = p.rows();
    assert!(shrunk < grown, "{shrunk} < {grown}");
    // A short tail says nothing; a short one over budget still shrinks it.
    p.committed(2, Duration::from_micros(100));
    assert_eq!(p.rows(), shrunk);
    p.committed(10, ms(40));
    assert!(p.rows() < 10, "{}", p.rows());
    // Never below one row.
    for _ in 0..10 {
        p.committed(1, ms(100));
    }
    assert_eq!(p.rows(), 1);
}

#[test]
fn a_steady_cost_per_row_settles_below_the_budget() {
    // 20 µs a row plus 1 ms a transaction, against a 3 ms budget.
    let mut p = Pacer::new(Duration::from_millis(3), Duration::from_millis(3));
    let held = |rows: usize| Duration::from_micros(1_000 + 20 * rows as u64);
    for _ in 0..50 {
        let rows = p.rows();
        p.committed(rows, held(rows));
    }
    let settled = held(p.rows());
    assert!(
        settled <= Duration::from_millis(3) && settled >= Duration::from_micros(1_800),
        "{:?} for {} rows",
        settled,
        p.rows()
    );
}

#[tokio::test(start_paused = true)]
async fn the_next_transaction_waits_for_the_gap_after_a_commit() {
    let mut p = Pacer::new(Duration::from_millis(4), Duration::from_millis(3));
    let t = tokio::time::Instant::now();
    wait_turn(&p).await;
    assert_eq!(t.elapsed(), Duration::ZERO, "no commit yet: no wait");
    p.committed(10, Duration::from_millis(1));
    wait_turn(&p).await;
    assert!(t.elapsed() >= Duration::from_millis(3), "{:?}", t.elapsed());
}

#[tokio::test(start_paused = true)]
async fn an_unbounded_pacer_keeps_its_row_count_and_never_waits() {
    let mut p = Pacer::unbounded();
    p.committed(10, Duration::from_secs(3));
    assert_eq!(p.rows(), FIXED_ROWS, "nothing learned from a long commit");
    let t = tokio::time::Instant::now();
    wait_turn(&p).await;
    assert_eq!(t.elapsed(), Duration::ZERO);
}

#[test]
fn the_catch_up_gap_covers_the_busy_handlers_sleep_under_way_when_a_hold_ends() {
    let ms = Duration::from_millis;
    // Tries at 0, 1, 3, 8, 18, 33, 53, 78… ms after the first.
    for (held, sleep) in [
        (1, 1),
        (2, 2),
        (3, 2),
        (4, 5),
        (8, 5),
        (9, 10),
        (20, 15),
        (40, 20),
    ] {
        assert_eq!(
            catch_up(ms(held)),
            ms(sleep) + WAKE_UP_SLACK,
            "held {held} ms"
        );
    }
    assert_eq!(catch_up(ms(10_000)), ms(100) + WAKE_UP_SLACK);
}

#[tokio::test(start_paused = true)]
async fn after_a_transaction_that_overran_the_gap_is_the_catch_up() {
    let mut p = Pacer::new(Duration::from_millis(2), Duration::from_millis(3));
    p.committed(10, Duration::from_millis(9));
    let t = tokio::time::Instant::now();
    wait_turn(&p).await;
    assert_eq!(t.elapsed(), catch_up(Duration::from_millis(9)));
    p.committed(10, Duration::from_millis(2));
    let t = tokio::time::Instant::now();
    wait_turn(&p).await;
    assert_eq!(
        t.elapsed(),
        Duration::from_millis(3),
        "within budget: the gap"
    );
}

#[tokio::test(start_paused = true)]
async fn a_gap_of_zero_stays_zero_within_the_budget() {
    let mut p = Pacer::new(Duration::from_millis(60_000), Duration::ZERO);
    p.committed(10, Duration::from_millis(500));
    let t = tokio::time::Instant::now();
    wait_turn(&p).await;
    assert_eq!(t.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn alone_from_the_start_shared_at_another_commit_and_alone_after_a_quiet_spell() {
    let ms = Duration::from_millis;
    let mut p = Pacer::new(ms(2), ms(3)).alone_after(Duration::from_secs(10), ms(50));
    assert!(p.is_alone(), "a new process starts alone");
    assert_eq!(p.rows(), START_ROWS, "with small transactions");
    // Alone: learns toward the larger budget, and the gap after a 50 ms
    // transaction is the catch-up a waiter needs (21 ms), not write_gap_ms.
    for _ in 0..20 {
        let rows = p.rows();
        p.committed(rows, Duration::from_micros(20 * rows as u64));
    }
    let alone_rows = p.rows();
    assert!(alone_rows > 1_000, "{alone_rows} rows in ~35 ms");
    p.committed(alone_rows, ms(50));
    let alone_rows = p.rows();
    let start = tokio::time::Instant::now();
    wait_turn(&p).await;
    assert_eq!(start.elapsed(), catch_up(ms(50)));
    assert_eq!(catch_up(ms(50)), ms(21));
    // Another connection commits: short transactions and the configured gap
    // at once, until the quiet spell has passed again.
    p.foreign_commit();
    assert!(!p.is_alone());
    assert!(p.rows() < alone_rows / 10, "{}", p.rows());
    p.committed(p.rows(), ms(1));
    let start = tokio::time::Instant::now();
    wait_turn(&p).await;
    assert_eq!(start.elapsed(), ms(3));
    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(!p.is_alone(), "not yet: 9 s of the 10");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(p.is_alone());
    assert_eq!(p.rows(), alone_rows, "what it learned alone is kept");
}
