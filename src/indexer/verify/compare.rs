//! Pure: does one verifier's answer confirm a stored payment, and do the
//! verifiers together? No I/O. A verifier "has not seen it yet" (its head is
//! below the block, or it failed) is never a dispute; a dispute is a verifier
//! that has the block and not the same log.

use std::ops::Range;

use alloy::rpc::types::Log;

use crate::chain::decode;
use crate::domain::Payment;

/// What one verifier says about one payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It returned the same log.
    Same,
    /// It cannot tell yet (head below the block, an error): ask again later.
    NotYet(String),
    /// It has the block and contradicts the log.
    Differs(String),
}

/// What the verifiers say together about one payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Verified(String),
    Disputed(String),
    Pending(String),
}

/// Judges `stored` against the logs a verifier returned for a block range
/// holding its block. `head` is the verifier's head, asked *before* those
/// logs, when known: only then can a missing log be a dispute.
pub fn judge(stored: &Payment, logs: &[Log], head: Option<u64>) -> Verdict {
    let found = logs.iter().find(|l| {
        !l.removed
            && l.transaction_hash == Some(stored.key.tx_hash)
            && l.log_index == Some(stored.key.log_index)
    });
    let block = stored.block.number;
    match (found, head) {
        (Some(log), _) => compare(stored, log),
        (None, Some(head)) if head >= block => Verdict::Differs(format!(
            "no log {:#x}#{} in block {block} (its head is {head})",
            stored.key.tx_hash, stored.key.log_index
        )),
        (None, Some(head)) => Verdict::NotYet(format!("its head {head} is below block {block}")),
        (None, None) => Verdict::NotYet("log not returned; its head not asked yet".into()),
    }
}

/// The same log position: every field that counts must be equal too.
fn compare(stored: &Payment, log: &Log) -> Verdict {
    let differs = decode::differences(stored, log);
    if differs.is_empty() {
        Verdict::Same
    } else {
        Verdict::Differs(format!(
            "same tx and log index, different {}",
            differs.join(", ")
        ))
    }
}

/// Combines the verdicts of every verifier (by redacted name). Any verifier
/// that contradicts the log disputes it, however many confirm: money counts
/// only when no endpoint that has seen the block says otherwise. Otherwise
/// `quorum` confirmations verify it; fewer leave it pending.
pub fn combine(verdicts: &[(&str, &Verdict)], quorum: usize) -> Outcome {
    let disputes: Vec<String> = verdicts
        .iter()
        .filter_map(|(name, v)| match v {
            Verdict::Differs(why) => Some(format!("{name}: {why}")),
            _ => None,
        })
        .collect();
    if !disputes.is_empty() {
        return Outcome::Disputed(format!("disputed by {}", disputes.join("; ")));
    }
    let same: Vec<&str> = verdicts
        .iter()
        .filter(|(_, v)| *v == &Verdict::Same)
        .map(|(name, _)| *name)
        .collect();
    if same.len() >= quorum {
        return Outcome::Verified(format!(
            "confirmed by {} of {}: {}",
            same.len(),
            verdicts.len(),
            same.join(", ")
        ));
    }
    let waiting: Vec<String> = verdicts
        .iter()
        .filter_map(|(name, v)| match v {
            Verdict::NotYet(why) => Some(format!("{name}: {why}")),
            _ => None,
        })
        .collect();
    Outcome::Pending(format!(
        "{} of {quorum} confirmations; {}",
        same.len(),
        waiting.join("; ")
    ))
}

/// Splits ascending block numbers into runs whose span (first to last block,
/// inclusive) fits `max_range`: one `eth_getLogs` per run.
pub fn runs(blocks: &[u64], max_range: u64) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..blocks.len() {
        if blocks[i] - blocks[start] + 1 > max_range.max(1) {
            out.push(start..i);
            start = i;
        }
    }
    if !blocks.is_empty() {
        out.push(start..blocks.len());
    }
    out
}

#[cfg(test)]
#[path = "compare_tests.rs"]
mod tests;
