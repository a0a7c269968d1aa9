//! Turns RPC logs into [`Payment`]s, and a stored payment back into the log
//! it came from (to compare the two): pure, by topic0, both event versions.
//! A log this module does not recognise is reported, never a panic.

use alloy::primitives::{LogData, B256};
use alloy::rpc::types::Log;
use alloy::sol_types::SolEvent;

use super::bindings::{CheckoutV1, CheckoutV2};
use crate::domain::{Amount, BlockRef, Destination, EventVersion, LogKey, Payment};

/// The topic0s the indexer asks the node for.
pub fn topics() -> Vec<B256> {
    vec![
        CheckoutV1::PremiumPaid::SIGNATURE_HASH,
        CheckoutV2::PremiumPaid::SIGNATURE_HASH,
    ]
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
    let malformed = |e: alloy::sol_types::Error| Skip::Malformed(e.to_string());
    Ok(match version {
        EventVersion::V1 => {
            let ev = CheckoutV1::PremiumPaid::decode_log_data(log.data()).map_err(malformed)?;
            base(ev.orderId, ev.buyer, ev.amount, ev.quoteHash, None)
        }
        EventVersion::V2 => {
            let ev = CheckoutV2::PremiumPaid::decode_log_data(log.data()).map_err(malformed)?;
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
    fn the_two_versions_have_different_topics() {
        let [v1, v2] = topics().try_into().expect("two topics");
        assert_ne!(v1, v2);
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
