use alloy::primitives::{Log, LogData, B256};
use alloy::sol_types::SolEvent;

use super::*;
use crate::chain::bindings::{CheckoutV1, CheckoutV2};

const CONTRACT: Address = Address::repeat_byte(0xc4);

fn bloom_of(logs: &[Log]) -> Bloom {
    let mut bloom = Bloom::ZERO;
    bloom.accrue_logs(logs);
    bloom
}

fn log(address: Address, data: LogData) -> Log {
    Log { address, data }
}

fn v1() -> LogData {
    CheckoutV1::PremiumPaid {
        orderId: B256::repeat_byte(1),
        buyer: Address::repeat_byte(2),
        amount: alloy::primitives::U256::from(5u64),
        quoteHash: B256::ZERO,
    }
    .encode_log_data()
}

#[test]
fn a_block_with_our_payment_may_hold_ours() {
    assert!(may_hold_ours(&bloom_of(&[log(CONTRACT, v1())]), CONTRACT));
}

#[test]
fn a_block_with_a_v2_payment_may_hold_ours() {
    let topics = vec![
        CheckoutV2::PremiumPaid::SIGNATURE_HASH,
        B256::repeat_byte(1),
    ];
    let data = LogData::new_unchecked(topics, Default::default());
    assert!(may_hold_ours(&bloom_of(&[log(CONTRACT, data)]), CONTRACT));
}

#[test]
fn an_empty_block_holds_none_of_ours() {
    assert!(!may_hold_ours(&Bloom::ZERO, CONTRACT));
}

#[test]
fn the_same_event_from_another_contract_is_not_ours() {
    let other = Address::repeat_byte(0x99);
    assert!(!may_hold_ours(&bloom_of(&[log(other, v1())]), CONTRACT));
}

#[test]
fn another_event_of_our_contract_is_not_a_payment() {
    let topics = vec![B256::repeat_byte(0x77)];
    let data = LogData::new_unchecked(topics, Default::default());
    assert!(!may_hold_ours(&bloom_of(&[log(CONTRACT, data)]), CONTRACT));
}

#[test]
fn a_full_bloom_may_hold_anything_and_its_fill_says_so() {
    let full = Bloom::repeat_byte(0xff);
    assert!(may_hold_ours(&full, CONTRACT));
    assert_eq!(fill(&full), 1.0);
    assert_eq!(fill(&Bloom::ZERO), 0.0);
}
