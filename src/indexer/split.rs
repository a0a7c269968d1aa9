//! Cutting a batch into write transactions at block boundaries, each about
//! as many payments as the store says fit in one (`Store::rows_per_write`:
//! on SQLite, what fits the write budget). Pure.

use super::fetch::Batch;

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
    let later = payments.split_off(end);
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
        payments,
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
#[path = "split_tests.rs"]
mod tests;
