//! Pure: may a block hold the checkout contract's `PremiumPaid` logs, by its
//! header's `logsBloom`? A bloom has no false negatives: when it excludes
//! the contract's address, or both topic0s, the block holds none of our
//! logs, whatever a node's `eth_getLogs` answers. When it may hold them, the
//! block's logs are asked for by its hash (EIP-234), which a node that does
//! not have the block must refuse instead of answering `[]`.
//!
//! A false positive (bits set by other logs) costs one `eth_getLogs`. On a
//! busy Base block (a bloom 52-75 % full) that happens for about 4-29 % of
//! blocks: README, "Completeness".

use alloy::primitives::{Address, Bloom, BloomInput};

use super::decode;

/// True when `bloom` may hold a log of `contract` with one of our topic0s.
pub fn may_hold_ours(bloom: &Bloom, contract: Address) -> bool {
    bloom.contains_input(BloomInput::Raw(contract.as_slice()))
        && decode::topics()
            .iter()
            .any(|t| bloom.contains_input(BloomInput::Raw(t.as_slice())))
}

/// The share of the bloom's 2,048 bits that are set (0..=1): how likely a
/// bloom check is to let a block through that holds none of our logs.
pub fn fill(bloom: &Bloom) -> f64 {
    let set: u32 = bloom.as_slice().iter().map(|b| b.count_ones()).sum();
    f64::from(set) / 2048.0
}

#[cfg(test)]
mod tests {
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
}
