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
mod tests {
    use super::*;

    fn h(number: u64, tag: u8, parent_tag: u8) -> BlockHeader {
        BlockHeader {
            number,
            hash: B256::repeat_byte(tag),
            parent_hash: B256::repeat_byte(parent_tag),
            timestamp: number,
            logs_bloom: Default::default(),
        }
    }

    fn r(number: u64, tag: u8) -> BlockRef {
        BlockRef {
            number,
            hash: B256::repeat_byte(tag),
        }
    }

    #[test]
    fn headers_that_build_on_the_checkpoint_extend_it() {
        let cp = r(10, 0xa);
        assert_eq!(
            linkage(Some(&cp), &[h(11, 0xb, 0xa), h(12, 0xc, 0xb)]),
            Linkage::Extends
        );
        assert_eq!(linkage(None, &[h(0, 1, 0)]), Linkage::Extends);
        assert_eq!(linkage(Some(&cp), &[]), Linkage::Extends);
    }

    #[test]
    fn a_first_header_with_another_parent_is_a_reorg() {
        let cp = r(10, 0xa);
        assert_eq!(linkage(Some(&cp), &[h(11, 0xb, 0xf)]), Linkage::Reorg);
    }

    #[test]
    fn a_run_that_changes_under_our_feet_is_broken() {
        let cp = r(10, 0xa);
        let run = [h(11, 0xb, 0xa), h(12, 0xc, 0xb), h(13, 0xd, 0xe)];
        assert_eq!(linkage(Some(&cp), &run), Linkage::Broken(2));
        let gap = [h(11, 0xb, 0xa), h(13, 0xd, 0xb)];
        assert_eq!(linkage(Some(&cp), &gap), Linkage::Broken(1));
    }

    #[test]
    fn the_ancestor_is_the_newest_stored_block_still_canonical() {
        let stored = [r(12, 0xc), r(11, 0xb), r(10, 0xa)];
        let canonical: HashMap<_, _> = [
            (12, B256::repeat_byte(0x1)),
            (11, B256::repeat_byte(0xb)),
            (10, B256::repeat_byte(0xa)),
        ]
        .into();
        assert_eq!(common_ancestor(&stored, &canonical), Some(r(11, 0xb)));
    }

    #[test]
    fn no_ancestor_when_every_stored_block_was_replaced() {
        let stored = [r(12, 0xc), r(11, 0xb)];
        let canonical: HashMap<_, _> = [(12, B256::ZERO), (11, B256::ZERO)].into();
        assert_eq!(common_ancestor(&stored, &canonical), None);
    }
}
