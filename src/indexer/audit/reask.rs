//! The re-ask: the blocks that became final since the audit's position,
//! asked for once more, a bounded number of ranges per round. Only blocks
//! the asked endpoint has (its head first: a node behind would answer `[]`
//! for the others), and a log is stored only from a block on the primary's
//! canonical chain; the position never passes a range that is not settled.

use alloy::rpc::types::Log;
use tokio_util::sync::CancellationToken;

use super::{Auditor, Path, Suspect, RANGES_PER_ROUND};
use crate::domain::Payment;
use crate::indexer::Stop;
use crate::store::checkpoint;

impl Auditor {
    /// Re-asks up to [`RANGES_PER_ROUND`] ranges; true when more wait.
    pub(super) async fn reask(&mut self, cancel: &CancellationToken) -> Result<bool, Stop> {
        // A reorg may have lowered the position in the database meanwhile.
        let stored = self.stored_position().await?;
        self.settle_position(stored);
        let Some((upto, final_block)) = self.final_indexed(cancel).await? else {
            return Ok(false);
        };
        let Some(head) = self.asked_head(cancel).await? else {
            return Ok(false);
        };
        let upto = upto.min(head);
        for _ in 0..RANGES_PER_ROUND {
            if self.cursor > upto {
                return Ok(false);
            }
            let Some((span, logs)) = self.ask_range(self.cursor, upto, None, cancel).await? else {
                return Ok(false);
            };
            let Some(logs) = logs else {
                continue;
            };
            let before = self.cursor;
            let settled = self
                .found(&logs, span, Path::Audit, true, final_block, cancel)
                .await?;
            if self.cursor != before || !settled {
                // A reorg lowered the position, or the range must be asked
                // again: next round.
                return Ok(false);
            }
            self.cursor = span.1 + 1;
        }
        Ok(self.cursor <= upto)
    }

    /// The last block both final and indexed, and the final block; `None`
    /// while nothing new is.
    async fn final_indexed(
        &mut self,
        cancel: &CancellationToken,
    ) -> Result<Option<(u64, u64)>, Stop> {
        let checkpoint = {
            let mut conn = self.store.read().await?;
            checkpoint::read(&mut conn.conn(), &self.scope).await?
        };
        let Some(checkpoint) = checkpoint else {
            return Ok(None);
        };
        let Some(final_block) = self.final_block(cancel).await? else {
            return Ok(None);
        };
        let upto = final_block.min(checkpoint.number);
        Ok((upto >= self.cursor).then_some((upto, final_block)))
    }

    /// Logs the audit's endpoint returned for `span`: those not stored are
    /// stored (or, from a verifier, wait for the primary). With `audits`,
    /// `span` is a re-asked range and the position moves past it, but never
    /// past a log still waiting. True when the range is settled; false when
    /// it must be asked again (a log of a block the primary does not have as
    /// canonical, or no room to wait for one).
    pub(super) async fn found(
        &mut self,
        logs: &[Log],
        span: (u64, u64),
        path: Path,
        audits: bool,
        final_block: u64,
        cancel: &CancellationToken,
    ) -> Result<bool, Stop> {
        let missing = self.not_stored(logs, span).await?;
        let endpoint = self.asked.pool.endpoint();
        if self.asked.verifier {
            let found: Vec<Suspect> = missing
                .iter()
                .map(|p| Suspect {
                    key: p.key,
                    block: p.block,
                    path,
                    found_by: endpoint.clone(),
                })
                .collect();
            if !self.suspect(found) {
                return Ok(false);
            }
            let audited = audits.then(|| self.confirm.audited_below(span.1)).flatten();
            self.recover(&[], audited, path, span, &endpoint, final_block, cancel)
                .await?;
            return Ok(true);
        }
        let Some((canonical, other)) = self.on_primary_chain(missing, cancel).await? else {
            return Ok(false);
        };
        if !other.is_empty() {
            tracing::warn!(
                endpoint,
                from = span.0,
                to = span.1,
                logs = other.len(),
                "an endpoint returned logs of blocks that are not on the primary's chain; not stored, asked again"
            );
        }
        let settled = other.is_empty();
        let audited = (audits && settled)
            .then(|| self.confirm.audited_below(span.1))
            .flatten();
        let out = self
            .recover(
                &canonical,
                audited,
                path,
                span,
                &endpoint,
                final_block,
                cancel,
            )
            .await?;
        Ok(settled && out.skipped.is_empty())
    }

    /// `payments` split into those of blocks the primary has as canonical
    /// (by its header at each number) and the others; `None` when a header
    /// could not be read.
    async fn on_primary_chain(
        &mut self,
        payments: Vec<Payment>,
        cancel: &CancellationToken,
    ) -> Result<Option<(Vec<Payment>, Vec<Payment>)>, Stop> {
        let mut blocks: Vec<_> = payments.iter().map(|p| p.block.number).collect();
        blocks.sort_unstable();
        blocks.dedup();
        let mut canonical = std::collections::HashMap::new();
        for number in blocks {
            let Some(header) = self.primary_header(number, cancel).await? else {
                return Ok(None);
            };
            canonical.insert(number, header.hash);
        }
        Ok(Some(payments.into_iter().partition(|p| {
            canonical.get(&p.block.number) == Some(&p.block.hash)
        })))
    }
}
