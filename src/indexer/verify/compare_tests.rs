use crate::domain::EventVersion;
use alloy::primitives::{Address, B256, U256};

use super::*;
use crate::domain::{Amount, BlockRef, Destination, LogKey};

const CONTRACT: Address = Address::repeat_byte(0xee);

fn payment(version: EventVersion) -> Payment {
    Payment {
        key: LogKey {
            tx_hash: B256::repeat_byte(0xaa),
            log_index: 3,
        },
        contract: CONTRACT,
        block: BlockRef {
            number: 7,
            hash: B256::repeat_byte(0xbb),
        },
        block_timestamp: Some(1_700_000_000),
        version,
        order_ref: B256::repeat_byte(1),
        payer: Address::repeat_byte(2),
        amount: Amount(U256::from(5_000_000u64)),
        quote_hash: B256::repeat_byte(3),
        destination: (version == EventVersion::V2).then_some(Destination {
            token: Address::repeat_byte(4),
            treasury: Address::repeat_byte(5),
            chain_id: U256::from(8453),
            timestamp: U256::from(9),
        }),
    }
}

/// The log a node returns for `p`.
fn log_of(p: &Payment) -> Log {
    Log {
        inner: alloy::primitives::Log {
            address: p.contract,
            data: crate::chain::decode::encode(p).expect("encodable"),
        },
        block_hash: Some(p.block.hash),
        block_number: Some(p.block.number),
        block_timestamp: p.block_timestamp,
        transaction_hash: Some(p.key.tx_hash),
        transaction_index: Some(0),
        log_index: Some(p.key.log_index),
        removed: false,
    }
}

fn other_payment() -> Payment {
    let mut p = payment(EventVersion::V1);
    p.key.tx_hash = B256::repeat_byte(0xcc);
    p.order_ref = B256::repeat_byte(9);
    p
}

fn differs(v: &Verdict) -> &str {
    match v {
        Verdict::Differs(why) => why,
        other => panic!("expected a dispute, got {other:?}"),
    }
}

#[test]
fn the_same_log_among_others_confirms_the_payment_in_both_versions() {
    for version in [EventVersion::V1, EventVersion::V2] {
        let p = payment(version);
        let logs = [log_of(&other_payment()), log_of(&p)];
        assert_eq!(judge(&p, &logs, None), Verdict::Same, "{version:?}");
    }
}

#[test]
fn the_expected_log_decodes_back_into_the_payment() {
    for version in [EventVersion::V1, EventVersion::V2] {
        let p = payment(version);
        let decoded = crate::chain::decode::decode(&log_of(&p)).expect("decodes");
        assert_eq!(decoded, p);
    }
}

#[test]
fn a_missing_log_is_not_a_dispute_until_the_verifiers_head_is_known() {
    let p = payment(EventVersion::V1);
    let logs = [log_of(&other_payment())];
    assert!(matches!(judge(&p, &logs, None), Verdict::NotYet(_)));
}

#[test]
fn a_verifier_whose_head_is_below_the_block_has_not_seen_it_yet() {
    let p = payment(EventVersion::V1);
    assert_eq!(
        judge(&p, &[], Some(6)),
        Verdict::NotYet("its head 6 is below block 7".into())
    );
}

#[test]
fn a_log_missing_from_a_verifier_that_has_the_block_is_disputed() {
    let p = payment(EventVersion::V1);
    let why = judge(&p, &[], Some(7));
    assert!(differs(&why).contains("no log"), "{why:?}");
}

#[test]
fn a_removed_log_does_not_confirm() {
    let p = payment(EventVersion::V1);
    let mut log = log_of(&p);
    log.removed = true;
    assert!(matches!(judge(&p, &[log], Some(20)), Verdict::Differs(_)));
}

#[test]
fn an_altered_amount_is_disputed_as_different_data() {
    let p = payment(EventVersion::V1);
    let mut on_chain = p.clone();
    on_chain.amount = Amount(U256::from(1_000_000u64));
    let why = judge(&p, &[log_of(&on_chain)], None);
    assert!(differs(&why).contains("data"), "{why:?}");
    assert!(!differs(&why).contains("topics"), "{why:?}");
}

#[test]
fn another_order_or_payer_is_disputed_as_different_topics() {
    let p = payment(EventVersion::V1);
    let mut on_chain = p.clone();
    on_chain.order_ref = B256::repeat_byte(0x42);
    let why = judge(&p, &[log_of(&on_chain)], None);
    assert!(differs(&why).contains("topics"), "{why:?}");
    on_chain = p.clone();
    on_chain.payer = Address::repeat_byte(0x43);
    assert!(differs(&judge(&p, &[log_of(&on_chain)], None)).contains("topics"));
}

#[test]
fn a_v2_destination_that_differs_is_disputed() {
    let p = payment(EventVersion::V2);
    let mut on_chain = p.clone();
    let mut d = on_chain.destination.expect("v2");
    d.treasury = Address::repeat_byte(0x66);
    on_chain.destination = Some(d);
    assert!(differs(&judge(&p, &[log_of(&on_chain)], None)).contains("data"));
}

#[test]
fn the_same_log_in_another_block_is_disputed() {
    let p = payment(EventVersion::V1);
    let mut log = log_of(&p);
    log.block_hash = Some(B256::repeat_byte(0x99));
    let why = judge(&p, &[log], None);
    assert!(differs(&why).contains("block hash"), "{why:?}");
}

#[test]
fn the_same_log_from_another_contract_is_disputed() {
    let p = payment(EventVersion::V1);
    let mut log = log_of(&p);
    log.inner.address = Address::repeat_byte(0x11);
    assert!(differs(&judge(&p, &[log], None)).contains("contract"));
}

#[test]
fn a_quorum_of_confirmations_verifies() {
    let (same, later) = (
        Verdict::Same,
        Verdict::NotYet("its head 6 is below block 7".into()),
    );
    let two = [("a", &same), ("b", &same), ("c", &later)];
    assert!(matches!(combine(&two, 2), Outcome::Verified(_)));
    assert!(matches!(combine(&two, 3), Outcome::Pending(_)));
    let one = [("a", &same), ("b", &later)];
    match combine(&one, 2) {
        Outcome::Pending(why) => assert!(why.contains("1 of 2") && why.contains("b: its head")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn one_contradicting_verifier_disputes_whatever_the_others_confirm() {
    let same = Verdict::Same;
    let no = Verdict::Differs("no log".into());
    match combine(&[("a", &same), ("b", &same), ("http://c:1", &no)], 1) {
        Outcome::Disputed(why) => assert!(why.contains("http://c:1: no log"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn verifiers_that_all_failed_leave_the_payment_pending() {
    let err = Verdict::NotYet("timed out".into());
    assert!(matches!(
        combine(&[("a", &err), ("b", &err)], 1),
        Outcome::Pending(_)
    ));
}

#[test]
fn blocks_are_split_into_runs_that_fit_the_range() {
    assert_eq!(runs(&[], 10), Vec::<Range<usize>>::new());
    assert_eq!(runs(&[5, 5, 14], 10), vec![0..3]);
    assert_eq!(runs(&[5, 15, 16, 40], 10), vec![0..1, 1..3, 3..4]);
    assert_eq!(runs(&[1, 2, 3], 1), vec![0..1, 1..2, 2..3]);
}
