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
