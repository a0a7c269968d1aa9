use alloy::primitives::{Address, LogData, U256};

use super::*;

fn rpc_log(data: LogData) -> Log {
    Log {
        inner: alloy::primitives::Log {
            address: Address::repeat_byte(0xee),
            data,
        },
        block_hash: Some(B256::repeat_byte(0xbb)),
        block_number: Some(7),
        block_timestamp: Some(1_700_000_000),
        transaction_hash: Some(B256::repeat_byte(0xaa)),
        transaction_index: Some(0),
        log_index: Some(3),
        removed: false,
    }
}

#[test]
fn a_v1_log_decodes_into_a_payment() {
    let ev = CheckoutV1::PremiumPaid {
        orderId: B256::repeat_byte(1),
        buyer: Address::repeat_byte(2),
        amount: U256::from(5_000_000u64),
        quoteHash: B256::repeat_byte(3),
    };
    let p = decode(&rpc_log(ev.encode_log_data())).expect("v1 decodes");
    assert_eq!(p.version, EventVersion::V1);
    assert_eq!(p.order_ref, B256::repeat_byte(1));
    assert_eq!(p.payer, Address::repeat_byte(2));
    assert_eq!(p.amount.micro_usdc(), Some(5_000_000));
    assert_eq!(p.key.log_index, 3);
    assert_eq!(p.block.number, 7);
    assert_eq!(p.destination, None);
}

#[test]
fn a_v2_log_carries_its_destination() {
    let ev = CheckoutV2::PremiumPaid {
        orderId: B256::repeat_byte(1),
        buyer: Address::repeat_byte(2),
        amount: U256::MAX,
        quoteHash: B256::repeat_byte(3),
        token: Address::repeat_byte(4),
        treasury: Address::repeat_byte(5),
        chainId: U256::from(8453),
        timestamp: U256::from(9),
    };
    let p = decode(&rpc_log(ev.encode_log_data())).expect("v2 decodes");
    assert_eq!(p.version, EventVersion::V2);
    assert_eq!(p.amount.micro_usdc(), None);
    let dest = p.destination.expect("v2 has a destination");
    assert_eq!(dest.treasury, Address::repeat_byte(5));
    assert_eq!(dest.chain_id, U256::from(8453));
    let json = p.args_json();
    assert_eq!(json["amount"], U256::MAX.to_string());
    assert_eq!(json["chainId"], "8453");
}

#[test]
fn the_two_versions_and_the_treasury_move_have_different_topics() {
    let [v1, v2, moved] = topics().try_into().expect("three topics");
    assert!(v1 != v2 && v2 != moved && v1 != moved);
}

#[test]
fn a_treasury_move_decodes_and_is_no_payment() {
    let ev = CheckoutV2::TreasuryUpdated {
        oldTreasury: Address::repeat_byte(1),
        newTreasury: Address::repeat_byte(2),
    };
    let log = rpc_log(ev.encode_log_data());
    let change = treasury_change(&log).expect("a move").expect("decodes");
    assert_eq!(
        (change.old, change.new),
        (Address::repeat_byte(1), Address::repeat_byte(2))
    );
    assert!(matches!(decode(&log), Err(Skip::UnknownTopic(_))));
    assert!(treasury_change(&rpc_log(v1_log())).is_none());
}

#[test]
fn an_unknown_topic_is_skipped_not_a_crash() {
    let data = LogData::new_unchecked(vec![B256::repeat_byte(9)], Default::default());
    assert_eq!(
        decode(&rpc_log(data)),
        Err(Skip::UnknownTopic(Some(B256::repeat_byte(9))))
    );
    let empty = LogData::new_unchecked(vec![], Default::default());
    assert_eq!(decode(&rpc_log(empty)), Err(Skip::UnknownTopic(None)));
}

fn v1_log() -> LogData {
    CheckoutV1::PremiumPaid {
        orderId: B256::repeat_byte(1),
        buyer: Address::repeat_byte(2),
        amount: U256::from(5_000_000u64),
        quoteHash: B256::repeat_byte(3),
    }
    .encode_log_data()
}

fn v2_log() -> LogData {
    CheckoutV2::PremiumPaid {
        orderId: B256::repeat_byte(1),
        buyer: Address::repeat_byte(2),
        amount: U256::from(5_000_000u64),
        quoteHash: B256::repeat_byte(3),
        token: Address::repeat_byte(4),
        treasury: Address::repeat_byte(5),
        chainId: U256::from(8453),
        timestamp: U256::from(9),
    }
    .encode_log_data()
}

fn reshaped(
    log: LogData,
    topics: impl FnOnce(&mut Vec<B256>),
    data: impl FnOnce(&mut Vec<u8>),
) -> Log {
    let (mut t, d) = log.split();
    let mut d = d.to_vec();
    topics(&mut t);
    data(&mut d);
    rpc_log(LogData::new_unchecked(t, d.into()))
}

fn is_malformed(log: &Log) -> bool {
    matches!(decode(log), Err(Skip::Malformed(_)))
}

#[test]
fn an_extra_data_word_no_emit_can_produce_is_malformed() {
    assert!(is_malformed(&reshaped(
        v1_log(),
        |_| {},
        |d| d.extend([0u8; 32])
    )));
    assert!(is_malformed(&reshaped(
        v2_log(),
        |_| {},
        |d| d.extend([0u8; 32])
    )));
}

#[test]
fn a_buyer_topic_that_is_not_a_clean_address_is_malformed() {
    let dirty = |t: &mut Vec<B256>| t[2].0[0] = 0xff;
    assert!(is_malformed(&reshaped(v1_log(), dirty, |_| {})));
    assert!(is_malformed(&reshaped(v2_log(), dirty, |_| {})));
}

#[test]
fn a_v2_token_or_treasury_word_that_is_not_a_clean_address_is_malformed() {
    for word in [1, 2] {
        let dirty = move |d: &mut Vec<u8>| d[word * 32] = 0xff;
        assert!(
            is_malformed(&reshaped(v2_log(), |_| {}, dirty)),
            "word {word}"
        );
    }
}

#[test]
fn wrong_topic_counts_and_data_lengths_are_malformed() {
    assert!(is_malformed(&reshaped(v1_log(), |t| t.truncate(2), |_| {})));
    assert!(is_malformed(&reshaped(
        v1_log(),
        |t| t.push(B256::ZERO),
        |_| {}
    )));
    assert!(is_malformed(&reshaped(v1_log(), |_| {}, Vec::clear)));
    assert!(is_malformed(&reshaped(
        v1_log(),
        |_| {},
        |d| d.truncate(31)
    )));
    assert!(is_malformed(&reshaped(
        v2_log(),
        |_| {},
        |d| d.truncate(64)
    )));
}

#[test]
fn a_premium_paid_topic_with_bad_data_is_malformed() {
    let data = LogData::new_unchecked(
        vec![CheckoutV1::PremiumPaid::SIGNATURE_HASH],
        vec![1u8, 2, 3].into(),
    );
    assert!(matches!(decode(&rpc_log(data)), Err(Skip::Malformed(_))));
}

#[test]
fn a_log_without_position_is_skipped() {
    let ev = CheckoutV1::PremiumPaid {
        orderId: B256::ZERO,
        buyer: Address::ZERO,
        amount: U256::ZERO,
        quoteHash: B256::ZERO,
    };
    let mut log = rpc_log(ev.encode_log_data());
    log.block_hash = None;
    assert_eq!(decode(&log), Err(Skip::MissingField("blockHash")));
}
