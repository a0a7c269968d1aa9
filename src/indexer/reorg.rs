//! Rolling a reorg back: find the common ancestor of the stored block hashes
//! and the node's chain, then undo everything above it in one transaction
//! (events removed, orders put back or reversed, checkpoint moved back).

use std::collections::HashMap;

use super::commit::commit_with_retry;
use super::{write, Indexer, Stop};
use crate::chain::window::common_ancestor;
use crate::store::blocks;

impl Indexer {
    /// Finds the common ancestor of the stored blocks and the node's chain,
    /// and rolls everything above it back in one transaction.
    pub(super) async fn roll_back_reorg(&mut self) -> Result<(), Stop> {
        let cp = self
            .checkpoint
            .expect("a reorg is only detected against a checkpoint");
        let window = self.settings.chain.reorg_window;
        let stored = {
            let mut conn = self.store.conn().await?;
            blocks::recent(&mut conn.conn(), &self.scope, cp.number, window).await?
        };
        let mut ancestor = None;
        for chunk in stored.chunks(16) {
            let mut canonical = HashMap::new();
            for b in chunk {
                canonical.insert(b.number, self.fetcher.header(b.number).await?.hash);
            }
            if let Some(found) = common_ancestor(chunk, &canonical) {
                ancestor = Some(found);
                break;
            }
        }
        let ancestor = match ancestor {
            Some(a) => a,
            None => {
                let below = stored
                    .last()
                    .map_or(cp.number, |b| b.number)
                    .saturating_sub(1);
                tracing::error!(
                    checkpoint = cp.number,
                    below,
                    "reorg deeper than the stored window; rolling back below it"
                );
                self.fetcher.header(below).await?.block_ref()
            }
        };
        let depth = cp.number - ancestor.number;
        let (_, w) = self.parts();
        let (metrics, health) = (w.metrics, w.health);
        let work = write::RollBack {
            scope: w.scope,
            ancestor,
            old_checkpoint: cp.number,
        };
        let rolled = commit_with_retry(w.store, metrics, health, w.cancel, &work).await?;
        *w.checkpoint = Some(ancestor);
        health.set_indexed(ancestor.number);
        metrics.indexed_block.set(ancestor.number as i64);
        metrics.record_reorg(depth);
        metrics.record_transition("pending", rolled.reverted);
        if rolled.reversed.is_empty() {
            tracing::warn!(
                depth,
                ancestor = ancestor.number,
                events_removed = rolled.events_removed,
                orders_reverted = rolled.reverted,
                "reorg rolled back"
            );
        } else {
            metrics.deep_reorgs.inc();
            metrics.record_transition("reversed", rolled.reversed.len() as u64);
            tracing::error!(depth, ancestor = ancestor.number, orders = ?rolled.reversed,
                "deep reorg: payments already counted as paid were reversed");
        }
        self.refresh_incidents().await
    }
}
