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
#[path = "decode_tests.rs"]
mod tests;
