//! The pure part of reorg detection: does a run of new headers extend what
//! was indexed, and where is the common ancestor when it does not. The I/O
//! (fetching headers, reading stored hashes) stays in the indexer.

use std::collections::HashMap;

use alloy::primitives::B256;

use crate::domain::{BlockHeader, BlockRef};

/// How a run of fetched headers relates to the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linkage {
    /// Each header's parent is the block before it, starting from the checkpoint.
    Extends,
    /// The first header's parent is not the checkpoint: the indexed chain was reorganised.
    Reorg,
    /// The run itself is inconsistent at this index (the node reorganised
    /// while we were fetching): fetch again.
    Broken(usize),
}

/// Checks that `headers` (consecutive numbers, ascending) extend `checkpoint`.
pub fn linkage(checkpoint: Option<&BlockRef>, headers: &[BlockHeader]) -> Linkage {
    if let (Some(cp), Some(first)) = (checkpoint, headers.first()) {
        if first.number == cp.number + 1 && first.parent_hash != cp.hash {
            return Linkage::Reorg;
        }
    }
    for (i, pair) in headers.windows(2).enumerate() {
        if pair[1].number != pair[0].number + 1 || pair[1].parent_hash != pair[0].hash {
            return Linkage::Broken(i + 1);
        }
    }
    Linkage::Extends
}

/// The newest stored block that is still canonical. `stored` is newest
/// first; `canonical` maps block numbers to the node's current hashes.
/// Returns `None` when no stored block is canonical (or none was checked).
pub fn common_ancestor(stored: &[BlockRef], canonical: &HashMap<u64, B256>) -> Option<BlockRef> {
    stored
        .iter()
        .find(|b| canonical.get(&b.number) == Some(&b.hash))
        .copied()
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
