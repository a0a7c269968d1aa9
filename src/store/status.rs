//! Read-only summaries for `liqpass-indexer status`. Runs in one read
//! transaction, so it sees a consistent snapshot while the indexer writes.

use serde::Serialize;
use sqlx::{Row, SqliteConnection};

use super::lease::{self, Holder};
use super::sync::checkpoint;
use super::{Store, StoreError};
use crate::domain::{hex32, hex_address, Scope};

/// Counts by a label, in a stable order.
pub type Counts = Vec<(String, i64)>;

/// What the database says about indexing progress and outcomes.
#[derive(Debug, Serialize)]
pub struct StoreStatus {
    pub chain_id: u64,
    pub contract: String,
    pub checkpoint_block: Option<u64>,
    pub checkpoint_hash: Option<String>,
    pub orders_by_status: Counts,
    pub orders_by_payment_status: Counts,
    pub events_by_match_status: Counts,
    /// Live events by `verification` (`unchecked` for NULL).
    pub events_by_verification: Counts,
    pub events_removed: i64,
    /// The write lease: who leads, under which epoch, until when.
    pub lease: Option<Holder>,
}

impl Store {
    /// Reads the status summary in one snapshot.
    pub async fn status(&self, scope: &Scope) -> Result<StoreStatus, StoreError> {
        let mut tx = self.pool().begin().await?;
        let cp = checkpoint(&mut tx, scope).await?;
        let status_counts = grouped(
            &mut tx,
            "SELECT status, COUNT(*) FROM orders GROUP BY status ORDER BY status",
        )
        .await?;
        let payment_counts = grouped(
            &mut tx,
            "SELECT payment_status, COUNT(*) FROM orders GROUP BY payment_status ORDER BY payment_status",
        )
        .await?;
        let contract = hex_address(&scope.contract);
        let events = sqlx::query(
            "SELECT match_status, COUNT(*) FROM contract_events
             WHERE removed = 0 AND chain_id = ? AND contract_address = ?
             GROUP BY match_status ORDER BY match_status",
        )
        .bind(scope.chain_id as i64)
        .bind(&contract)
        .fetch_all(&mut *tx)
        .await?;
        let verification = sqlx::query(
            "SELECT COALESCE(verification, 'unchecked'), COUNT(*) FROM contract_events
             WHERE removed = 0 AND chain_id = ? AND contract_address = ?
             GROUP BY 1 ORDER BY 1",
        )
        .bind(scope.chain_id as i64)
        .bind(&contract)
        .fetch_all(&mut *tx)
        .await?;
        let removed: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM contract_events
             WHERE removed = 1 AND chain_id = ? AND contract_address = ?",
        )
        .bind(scope.chain_id as i64)
        .bind(&contract)
        .fetch_one(&mut *tx)
        .await?;
        let lease = lease::current(&mut tx, scope).await?;
        tx.commit().await?;
        Ok(StoreStatus {
            chain_id: scope.chain_id,
            contract,
            checkpoint_block: cp.map(|c| c.number),
            checkpoint_hash: cp.map(|c| hex32(&c.hash)),
            orders_by_status: status_counts,
            orders_by_payment_status: payment_counts,
            events_by_match_status: events.iter().map(|r| (r.get(0), r.get(1))).collect(),
            events_by_verification: verification.iter().map(|r| (r.get(0), r.get(1))).collect(),
            events_removed: removed,
            lease,
        })
    }
}

/// `(label, count)` rows of a two-column GROUP BY query.
async fn grouped(conn: &mut SqliteConnection, sql: &'static str) -> Result<Counts, StoreError> {
    let rows = sqlx::query(sql).fetch_all(conn).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
