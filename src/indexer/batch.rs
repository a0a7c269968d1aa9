//! What the fetch stage hands the writer: the decoded logs of a block
//! range (`decode_all`: payments, malformed logs, treasury moves, in block
//! order), and its cutting into write transactions at block boundaries,
//! each about as many payments as the store says fit in one
//! (`Store::rows_per_write`: on SQLite, what fits the write budget). Pure.

use alloy::rpc::types::Log;

use crate::chain::decode::{self, Skip};
use crate::domain::{BlockHeader, BlockRef, Malformed, Payment, TreasuryChange};

/// What the fetch stage hands the writer stage, in block order.
#[derive(Debug)]
pub enum Fetched {
    /// Decoded blocks to commit, and what they were fetched against: the
    /// head then, and the newest block whose payments count as final.
    Batch {
        batch: Batch,
        head: u64,
        final_block: u64,
    },
    /// The next block does not build on the last one handed over: the
    /// writer rolls the reorg back, and the phase ends.
    Reorg,
}

/// Decoded logs of a block range, ready to be written in one transaction.
#[derive(Debug)]
pub struct Batch {
    pub first: u64,
    /// The new checkpoint: the range's last block.
    pub last: BlockRef,
    /// Headers to remember for reorg detection (all of them near the head).
    pub headers: Vec<BlockHeader>,
    pub payments: Vec<Payment>,
    /// Logs with one of our topic0s that no `emit` can produce (kept raw).
    pub malformed: Vec<Malformed>,
    /// The contract's treasury moves.
    pub treasury_changes: Vec<TreasuryChange>,
    /// Logs from the contract that are neither (a log without its position,
    /// as a node may give a pending one).
    pub ignored: u64,
}

/// The logs `logs` of blocks `first..=last`, decoded and sorted: payments,
/// logs that carry our topic0 but no `emit` could produce (kept raw), the
/// treasury's moves; anything else is counted as ignored (and logged).
pub fn decode_all(first: u64, last: BlockRef, headers: Vec<BlockHeader>, logs: &[Log]) -> Batch {
    let mut payments = Vec::with_capacity(logs.len());
    let mut malformed = Vec::new();
    let mut treasury_changes = Vec::new();
    let mut ignored = 0;
    for log in logs.iter().filter(|l| !l.removed) {
        match decode::treasury_change(log) {
            Some(Ok(change)) => {
                treasury_changes.push(change);
                continue;
            }
            Some(Err(skip)) => {
                ignored += 1;
                tracing::warn!(%skip, tx = ?log.transaction_hash, log_index = ?log.log_index,
                    block = ?log.block_number, "ignored TreasuryUpdated log");
                continue;
            }
            None => {}
        }
        match decode::decode(log) {
            Ok(p) => payments.push(p),
            Err(skip) => match decode::malformed(log, &skip) {
                Some(m) => malformed.push(m),
                None => {
                    ignored += 1;
                    match skip {
                        Skip::UnknownTopic(_) => tracing::debug!(%skip, "ignored log"),
                        _ => tracing::warn!(%skip, tx = ?log.transaction_hash,
                            log_index = ?log.log_index, block = ?log.block_number, "ignored log"),
                    }
                }
            },
        }
    }
    payments.sort_by_key(|p| (p.block.number, p.key.log_index));
    malformed.sort_by_key(|m| (m.block.number, m.key.log_index));
    treasury_changes.sort_by_key(|t| (t.block.number, t.key.log_index));
    Batch {
        first,
        last,
        headers,
        payments,
        malformed,
        treasury_changes,
        ignored,
    }
}

/// Cuts `batch` into transactions of about `rows` payments each, at block
/// boundaries: every part but the last ends at the block of its last payment
/// (its checkpoint, hash from the logs); the last ends at the batch's end.
/// Headers go with the part whose blocks they are.
#[cfg(test)]
pub fn split(batch: Batch, rows: usize) -> Vec<Batch> {
    let mut parts = Vec::new();
    let mut rest = Some(batch);
    while let Some(b) = rest {
        let (part, more) = split_first(b, rows);
        parts.push(part);
        rest = more;
    }
    parts
}

/// The first transaction of `batch` (about `rows` payments, cut after the
/// block of its last payment) and the rest, if any: the committer cuts one
/// part at a time, each sized by what the one before it taught the pacer.
/// The rest keeps the batch's end, its headers and its ignored logs.
pub fn split_first(batch: Batch, rows: usize) -> (Batch, Option<Batch>) {
    let rows = rows.max(1);
    let count = batch.payments.len();
    if count <= rows {
        return (batch, None);
    }
    let block = batch.payments[rows - 1].block;
    let mut end = rows;
    while end < count && batch.payments[end].block.number == block.number {
        end += 1;
    }
    if end == count {
        return (batch, None);
    }
    if end > rows * 2 {
        tracing::debug!(
            block = block.number,
            rows = end,
            "one block holds more rows than the write budget: one transaction"
        );
    }
    let Batch {
        first,
        last,
        headers,
        mut payments,
        malformed,
        treasury_changes,
        ignored,
    } = batch;
    // The part is cut off the front into a vector of its own size; the rest
    // keeps the batch's allocation (`split_off` would copy the rest into a
    // new one, twice the batch's memory at each cut).
    let part_payments: Vec<Payment> = payments.drain(..end).collect();
    let later = payments;
    let (mine, theirs) = headers.into_iter().partition(|h| h.number <= block.number);
    let (bad, bad_later) = malformed
        .into_iter()
        .partition(|m| m.block.number <= block.number);
    let (moves, moves_later) = treasury_changes
        .into_iter()
        .partition(|t| t.block.number <= block.number);
    let part = Batch {
        first,
        last: block,
        headers: mine,
        payments: part_payments,
        malformed: bad,
        treasury_changes: moves,
        ignored: 0,
    };
    let rest = Batch {
        first: block.number + 1,
        last,
        headers: theirs,
        payments: later,
        malformed: bad_later,
        treasury_changes: moves_later,
        ignored,
    };
    (part, Some(rest))
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
