//! Read-only summaries for `liqpass-indexer status`. Runs in one read
//! transaction, so it sees a consistent snapshot while the indexer writes.

use serde::Serialize;
use sqlx::Row;

use super::checkpoint;
use super::lease::{self, Holder};
use super::{on, Conn, Store, StoreError};
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
    /// The completeness audit's position (`None`: nothing audited yet).
    pub audited_block: Option<u64>,
    pub orders_by_status: Counts,
    pub orders_by_payment_status: Counts,
    pub events_by_match_status: Counts,
    /// Live events by `verification` (`unchecked` for NULL).
    pub events_by_verification: Counts,
    pub events_removed: i64,
    /// Live logs kept in `malformed_logs` (never payments).
    pub malformed_logs: i64,
    /// The write lease: who leads, under which epoch, until when.
    pub lease: Option<Holder>,
}

impl Store {
    /// Reads the status summary in one snapshot.
    pub async fn status(&self, scope: &Scope) -> Result<StoreStatus, StoreError> {
        let mut tx = self.begin_read().await?;
        let status = read_status(&mut tx.conn(), scope).await?;
        tx.commit().await?;
        Ok(status)
    }
}

async fn read_status(conn: &mut Conn<'_>, scope: &Scope) -> Result<StoreStatus, StoreError> {
    let cp = checkpoint::read(conn, scope).await?;
    let contract = hex_address(&scope.contract);
    let queries = [
        "SELECT status, COUNT(*) FROM orders GROUP BY status ORDER BY status",
        "SELECT payment_status, COUNT(*) FROM orders
         GROUP BY payment_status ORDER BY payment_status",
        "SELECT match_status, COUNT(*) FROM contract_events
         WHERE removed = 0 AND chain_id = $1 AND contract_address = $2
         GROUP BY match_status ORDER BY match_status",
        "SELECT COALESCE(verification, 'unchecked'), COUNT(*) FROM contract_events
         WHERE removed = 0 AND chain_id = $1 AND contract_address = $2
         GROUP BY 1 ORDER BY 1",
    ];
    let mut counts: Vec<Counts> = Vec::new();
    for (i, sql) in queries.into_iter().enumerate() {
        counts.push(on!(&mut *conn, |c, d| {
            let mut q = sqlx::query(sql);
            if i >= 2 {
                q = q.bind(scope.chain_id as i64).bind(&contract);
            }
            let rows = q.fetch_all(&mut **c).await?;
            rows.iter().map(|r| (r.get(0), r.get(1))).collect()
        }));
    }
    let removed: i64 = on!(&mut *conn, |c, d| {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM contract_events
             WHERE removed = 1 AND chain_id = $1 AND contract_address = $2",
        )
        .bind(scope.chain_id as i64)
        .bind(&contract)
        .fetch_one(&mut **c)
        .await?
    });
    let lease = lease::current(conn, scope).await?;
    let audited_block = super::audit::position(conn, scope).await?;
    let malformed_logs = super::malformed::live_count(conn, scope).await?;
    let [orders_by_status, orders_by_payment_status, events_by_match_status, events_by_verification]: [Counts; 4] =
        counts.try_into().expect("four queries give four counts");
    Ok(StoreStatus {
        chain_id: scope.chain_id,
        contract,
        checkpoint_block: cp.map(|c| c.number),
        checkpoint_hash: cp.map(|c| hex32(&c.hash)),
        audited_block,
        orders_by_status,
        orders_by_payment_status,
        events_by_match_status,
        events_by_verification,
        events_removed: removed,
        malformed_logs,
        lease,
    })
}
