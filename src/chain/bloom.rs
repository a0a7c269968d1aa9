//! Pure: may a block hold the checkout contract's `PremiumPaid` logs, by its
//! header's `logsBloom`? A bloom has no false negatives: when it excludes
//! the contract's address, or both topic0s, the block holds none of our
//! logs, whatever a node's `eth_getLogs` answers. When it may hold them, the
//! block's logs are asked for by its hash (EIP-234), which a node that does
//! not have the block must refuse instead of answering `[]`.
//!
//! A false positive (bits set by other logs) costs one `eth_getLogs`. On a
//! busy Base block (a bloom 52-75 % full) that happens for about 4-29 % of
//! blocks: docs/operations.md, "Completeness".

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
#[path = "bloom_tests.rs"]
mod tests;
