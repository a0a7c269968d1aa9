//! The outbox's retention (`outbox.retention_days`), a leader-only task
//! beside the indexer: once an hour one short transaction deletes a bounded
//! batch of expired notifications (again at once while a batch was full).
//! It must not delete a row the webhook dispatcher has not delivered; with
//! no dispatcher no row will ever be delivered, so a row counts as delivered
//! once it is `retention_days` old.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::writer::commit_with_retry;
use super::Stop;
use crate::config::Settings;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::store::{outbox, Conn, Store, StoreError, TxWork};

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

/// The retention task of one term: it writes through the term's fenced
/// store and ends with the term (`cancel`), or when the lease is lost.
pub struct Retention {
    pub store: Store,
    pub metrics: Metrics,
    pub health: Health,
    pub settings: Settings,
}

impl Retention {
    pub async fn run(self, cancel: CancellationToken) {
        let work = Prune {
            days: self.settings.outbox.retention_days,
            // With no dispatcher, nothing will ever deliver a row.
            undelivered_too: self.settings.webhooks.is_none(),
        };
        loop {
            let deleted =
                commit_with_retry(&self.store, &self.metrics, &self.health, &cancel, &work);
            match deleted.await {
                Ok(deleted) => {
                    if deleted > 0 {
                        tracing::info!(deleted, "expired notifications deleted");
                    }
                    // A full batch: more may be due.
                    if deleted >= outbox::PRUNE_LIMIT as u64 {
                        continue;
                    }
                }
                Err(Stop::Cancelled) => return,
                Err(Stop::Fatal(e)) => {
                    tracing::warn!(error = %e, "outbox retention stopped");
                    return;
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(EVERY) => {}
            }
        }
    }
}
