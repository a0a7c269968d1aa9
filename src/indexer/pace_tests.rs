use alloy::primitives::{Address, B256, U256};

use super::*;
use crate::domain::{Amount, BlockHeader, BlockRef, EventVersion, LogKey, Payment};

fn block(n: u64) -> BlockRef {
    BlockRef {
        number: n,
        hash: B256::with_last_byte(n as u8),
    }
}

fn payment(block_number: u64, log_index: u64) -> Payment {
    Payment {
        key: LogKey {
            tx_hash: B256::repeat_byte(7),
            log_index,
        },
        contract: Address::ZERO,
        block: block(block_number),
        block_timestamp: Some(1),
        version: EventVersion::V1,
        order_ref: B256::ZERO,
        payer: Address::ZERO,
        amount: Amount(U256::from(1)),
        quote_hash: B256::ZERO,
        destination: None,
    }
}

/// Blocks 10..=20; `per_block` payments in each of the given blocks.
fn batch(blocks_with_payments: &[u64], per_block: u64) -> Batch {
    let mut payments = Vec::new();
    for &b in blocks_with_payments {
        for i in 0..per_block {
            payments.push(payment(b, i));
        }
    }
    Batch {
        first: 10,
        last: block(20),
        headers: vec![BlockHeader {
            number: 20,
            hash: block(20).hash,
            parent_hash: B256::ZERO,
            timestamp: 1,
            logs_bloom: Default::default(),
        }],
        payments,
        malformed: Vec::new(),
        treasury_changes: Vec::new(),
        ignored: 3,
    }
}

#[test]
fn a_batch_is_cut_at_block_boundaries_into_contiguous_parts() {
    let parts = split(batch(&[11, 12, 15, 16, 19], 3), 4);
    let ranges: Vec<_> = parts.iter().map(|p| (p.first, p.last.number)).collect();
    assert_eq!(ranges, [(10, 12), (13, 16), (17, 20)]);
    let sizes: Vec<_> = parts.iter().map(|p| p.payments.len()).collect();
    assert_eq!(sizes, [6, 6, 3], "whole blocks: 4 rows asked, 6 taken");
    assert_eq!(parts[0].last, block(12), "checkpoint hash from the logs");
    assert_eq!(
        parts[2].last,
        block(20),
        "the last part ends at the batch's end"
    );
    assert_eq!(parts[2].headers.len(), 1, "the header goes with its block");
    assert!(parts[0].headers.is_empty());
    assert_eq!(parts.iter().map(|p| p.ignored).sum::<u64>(), 3);
}

#[test]
fn a_block_with_more_rows_than_the_budget_is_one_part() {
    let parts = split(batch(&[12, 13], 50), 10);
    let sizes: Vec<_> = parts.iter().map(|p| p.payments.len()).collect();
    assert_eq!(sizes, [50, 50]);
    assert_eq!(split(batch(&[12], 5), 10).len(), 1, "small batch, one part");
    assert_eq!(split(batch(&[], 0), 10).len(), 1, "no payments, one part");
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
    p.wait_turn().await;
    assert_eq!(t.elapsed(), Duration::ZERO, "no commit yet: no wait");
    p.committed(10, Duration::from_millis(1));
    p.wait_turn().await;
    assert!(t.elapsed() >= Duration::from_millis(3), "{:?}", t.elapsed());
}

#[tokio::test(start_paused = true)]
async fn an_unbounded_pacer_keeps_its_row_count_and_never_waits() {
    let mut p = Pacer::unbounded();
    p.committed(10, Duration::from_secs(3));
    assert_eq!(p.rows(), FIXED_ROWS, "nothing learned from a long commit");
    let t = tokio::time::Instant::now();
    p.wait_turn().await;
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
    p.wait_turn().await;
    assert_eq!(t.elapsed(), catch_up(Duration::from_millis(9)));
    p.committed(10, Duration::from_millis(2));
    let t = tokio::time::Instant::now();
    p.wait_turn().await;
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
    p.wait_turn().await;
    assert_eq!(t.elapsed(), Duration::ZERO);
}

#[tokio::test]
async fn nothing_passes_a_closed_gate_until_it_opens() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let p = Pacer::new(Duration::from_millis(2), Duration::from_millis(3));
    let gate = p.gate();
    let polled = Arc::new(AtomicBool::new(false));
    let closed = p.holding().expect("a budgeted pacer closes its gate");
    let mut waiting = tokio::spawn({
        let polled = polled.clone();
        async move {
            gate.passing(async move {
                polled.store(true, Ordering::SeqCst);
            })
            .await
        }
    });
    tokio::time::timeout(Duration::from_millis(50), &mut waiting)
        .await
        .expect_err("held back while the gate is closed");
    assert!(!polled.load(Ordering::SeqCst), "not even polled");
    drop(closed);
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("through once open")
        .expect("task");
    assert!(polled.load(Ordering::SeqCst));
    assert!(
        Pacer::unbounded().holding().is_none(),
        "no lock shared, no gate"
    );
}
