//! The outbox's retention (`outbox.retention_days`): once an hour, in the
//! indexer's loop (so by the leader only), one short transaction deletes a
//! bounded batch of expired notifications. It must not delete a row the
//! webhook dispatcher has not delivered; with no dispatcher no row will
//! ever be delivered, so a row counts as delivered once it is
//! `retention_days` old.

use std::time::{Duration, Instant};

use super::commit::commit_with_retry;
use super::{Indexer, Stop};
use crate::store::{outbox, Conn, StoreError, TxWork};

/// How often the retention statement runs.
const EVERY: Duration = Duration::from_secs(3600);

/// One bounded retention delete.
struct Prune {
    days: u32,
    undelivered_too: bool,
}

impl TxWork for Prune {
    type Output = u64;
    fn run<'t>(
        &'t self,
        tx: &'t mut Conn<'t>,
    ) -> impl std::future::Future<Output = Result<u64, StoreError>> + Send + 't {
        outbox::prune(tx, self.days, self.undelivered_too)
    }
}

impl Indexer {
    /// Deletes expired notifications when an hour has passed since the last
    /// time (or at the first call).
    pub(super) async fn prune_outbox(&mut self) -> Result<(), Stop> {
        if self.pruned_at.is_some_and(|t| t.elapsed() < EVERY) {
            return Ok(());
        }
        let work = Prune {
            days: self.settings.outbox.retention_days,
            // With no dispatcher, nothing will ever deliver a row.
            undelivered_too: self.settings.webhooks.is_none(),
        };
        let deleted = commit_with_retry(
            &self.store,
            &self.metrics,
            &self.health,
            &self.cancel,
            &work,
        )
        .await?;
        self.pruned_at = Some(Instant::now());
        if deleted > 0 {
            tracing::info!(deleted, "expired notifications deleted");
        }
        Ok(())
    }
}
