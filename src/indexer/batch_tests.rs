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
