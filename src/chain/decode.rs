//! Turns RPC logs into [`Payment`]s, and a stored payment back into the log
//! it came from (to compare the two): pure, by topic0, both event versions.
//! A log this module does not recognise is reported, never a panic.

use alloy::primitives::{LogData, B256};
use alloy::rpc::types::Log;
use alloy::sol_types::SolEvent;

use super::bindings::{CheckoutV1, CheckoutV2};
use crate::domain::{
    Amount, BlockRef, Destination, EventVersion, LogKey, Malformed, Payment, TreasuryChange,
};

/// The topic0s the indexer asks the node for: both `PremiumPaid` versions
/// and the treasury's moves (`TreasuryUpdated`).
pub fn topics() -> Vec<B256> {
    vec![
        CheckoutV1::PremiumPaid::SIGNATURE_HASH,
        CheckoutV2::PremiumPaid::SIGNATURE_HASH,
        CheckoutV2::TreasuryUpdated::SIGNATURE_HASH,
    ]
}

/// The treasury move `log` is, when its topic0 is `TreasuryUpdated`
/// (`None`: another event). Validated like a payment.
pub fn treasury_change(log: &Log) -> Option<Result<TreasuryChange, Skip>> {
    if log.topic0() != Some(&CheckoutV2::TreasuryUpdated::SIGNATURE_HASH) {
        return None;
    }
    Some((|| {
        let key = LogKey {
            tx_hash: log
                .transaction_hash
                .ok_or(Skip::MissingField("transactionHash"))?,
            log_index: log.log_index.ok_or(Skip::MissingField("logIndex"))?,
        };
        let block = BlockRef {
            number: log.block_number.ok_or(Skip::MissingField("blockNumber"))?,
            hash: log.block_hash.ok_or(Skip::MissingField("blockHash"))?,
        };
        let ev = CheckoutV2::TreasuryUpdated::decode_log_data_validate(log.data())
            .map_err(|e| Skip::Malformed(e.to_string()))?;
        exactly(&ev.encode_log_data(), log.data())?;
        Ok(TreasuryChange {
            key,
            block,
            old: ev.oldTreasury,
            new: ev.newTreasury,
        })
    })())
}

/// Why a log was not turned into a payment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    #[error("log has an unknown topic0 {0:?}")]
    UnknownTopic(Option<B256>),
    #[error("log has a PremiumPaid topic0 but does not decode: {0}")]
    Malformed(String),
    #[error("log lacks {0} (a pending log?)")]
    MissingField(&'static str),
}

/// Decodes one log emitted by the checkout contract.
pub fn decode(log: &Log) -> Result<Payment, Skip> {
    let topic0 = log.topic0().copied();
    let version = match topic0 {
        Some(t) if t == CheckoutV1::PremiumPaid::SIGNATURE_HASH => EventVersion::V1,
        Some(t) if t == CheckoutV2::PremiumPaid::SIGNATURE_HASH => EventVersion::V2,
        other => return Err(Skip::UnknownTopic(other)),
    };
    let key = LogKey {
        tx_hash: log
            .transaction_hash
            .ok_or(Skip::MissingField("transactionHash"))?,
        log_index: log.log_index.ok_or(Skip::MissingField("logIndex"))?,
    };
    let block = BlockRef {
        number: log.block_number.ok_or(Skip::MissingField("blockNumber"))?,
        hash: log.block_hash.ok_or(Skip::MissingField("blockHash"))?,
    };
    let base = |order_ref, payer, amount, quote_hash, destination| Payment {
        key,
        contract: log.address(),
        block,
        block_timestamp: log.block_timestamp,
        version,
        order_ref,
        payer,
        amount: Amount(amount),
        quote_hash,
        destination,
    };
    // Validating: exactly the event's topics, clean address words, and
    // exactly the data its ABI encodes (no word more, none cut short).
    let malformed = |e: alloy::sol_types::Error| Skip::Malformed(e.to_string());
    Ok(match version {
        EventVersion::V1 => {
            let ev =
                CheckoutV1::PremiumPaid::decode_log_data_validate(log.data()).map_err(malformed)?;
            exactly(&ev.encode_log_data(), log.data())?;
            base(ev.orderId, ev.buyer, ev.amount, ev.quoteHash, None)
        }
        EventVersion::V2 => {
            let ev =
                CheckoutV2::PremiumPaid::decode_log_data_validate(log.data()).map_err(malformed)?;
            exactly(&ev.encode_log_data(), log.data())?;
            let destination = Destination {
                token: ev.token,
                treasury: ev.treasury,
                chain_id: ev.chainId,
                timestamp: ev.timestamp,
            };
            base(
                ev.orderId,
                ev.buyer,
                ev.amount,
                ev.quoteHash,
                Some(destination),
            )
        }
    })
}

/// What a log that does not decode is: kept raw ([`Malformed`]) when it
/// carries one of our topic0s and its position (`None` otherwise: a log of
/// another event, or a pending log without a tx hash, is not ours to keep).
pub fn malformed(log: &Log, skip: &Skip) -> Option<Malformed> {
    let Skip::Malformed(reason) = skip else {
        return None;
    };
    Some(Malformed {
        key: LogKey {
            tx_hash: log.transaction_hash?,
            log_index: log.log_index?,
        },
        block: BlockRef {
            number: log.block_number?,
            hash: log.block_hash?,
        },
        block_timestamp: log.block_timestamp,
        topics: log.topics().to_vec(),
        data: log.data().data.to_vec(),
        reason: reason.clone(),
    })
}

/// The log is exactly what an `emit` of the event it decodes to writes:
/// alloy's validating decode checks the topics and the words it reads, not
/// data beyond them (an extra word no `emit` can produce).
fn exactly(encoded: &LogData, log: &LogData) -> Result<(), Skip> {
    if encoded.topics() != log.topics() {
        return Err(Skip::Malformed(
            "topics not as the event encodes them".into(),
        ));
    }
    if encoded.data != log.data {
        return Err(Skip::Malformed(format!(
            "{} bytes of data where the event encodes {}",
            log.data.len(),
            encoded.data.len()
        )));
    }
    Ok(())
}

/// The topics and data the log of `p` carries on chain; `None` for a v2
/// payment without its destination (a corrupt row: never confirmed).
pub fn encode(p: &Payment) -> Option<LogData> {
    Some(match p.version {
        EventVersion::V1 => CheckoutV1::PremiumPaid {
            orderId: p.order_ref,
            buyer: p.payer,
            amount: p.amount.0,
            quoteHash: p.quote_hash,
        }
        .encode_log_data(),
        EventVersion::V2 => {
            let d = p.destination?;
            CheckoutV2::PremiumPaid {
                orderId: p.order_ref,
                buyer: p.payer,
                amount: p.amount.0,
                quoteHash: p.quote_hash,
                token: d.token,
                treasury: d.treasury,
                chainId: d.chain_id,
                timestamp: d.timestamp,
            }
            .encode_log_data()
        }
    })
}

/// How `log` differs from `stored`, a payment at the same position (tx
/// hash, log index): its block, its contract, its topics or its data.
/// Empty: the same log.
pub fn differences(stored: &Payment, log: &Log) -> Vec<String> {
    let mut differs = Vec::new();
    if log.block_hash != Some(stored.block.hash) {
        let theirs = log.block_hash.map_or("none".into(), |h| format!("{h:#x}"));
        differs.push(format!(
            "block hash {theirs} (ours {:#x})",
            stored.block.hash
        ));
    }
    if log.block_number != Some(stored.block.number) {
        differs.push(format!(
            "block number {:?} (ours {})",
            log.block_number, stored.block.number
        ));
    }
    if log.address() != stored.contract {
        differs.push(format!("contract {:#x}", log.address()));
    }
    match encode(stored) {
        Some(ours) => {
            if log.topics() != ours.topics() {
                differs.push("topics".into());
            }
            if log.data().data != ours.data {
                differs.push(format!("data {}", log.data().data));
            }
        }
        None => differs.push("our stored event cannot be re-encoded".into()),
    }
    differs
}

#[cfg(test)]
mod tests {
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
}
