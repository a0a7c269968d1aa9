//! Deep-reorg incidents: recorded in the rollback transaction, counted for
//! readiness, acknowledged by an operator.

use sqlx::SqliteConnection;

use super::{StoreError, NOW};
use crate::domain::{hex_address, Scope};

/// Records a deep reorg that reversed `orders`.
pub async fn record(
    conn: &mut SqliteConnection,
    scope: &Scope,
    depth: u64,
    ancestor: u64,
    old_checkpoint: u64,
    orders: &[String],
) -> Result<(), StoreError> {
    let ids = serde_json::to_string(orders).expect("a list of strings serialises");
    sqlx::query(
        "INSERT INTO reorg_incidents
           (chain_id, contract_address, depth, ancestor_block, old_checkpoint, reversed_orders)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(scope.chain_id as i64)
    .bind(hex_address(&scope.contract))
    .bind(depth as i64)
    .bind(ancestor as i64)
    .bind(old_checkpoint as i64)
    .bind(ids)
    .execute(conn)
    .await?;
    Ok(())
}

/// Open incidents: not acknowledged, and some order they reversed is still `reversed`.
pub async fn open_count(conn: &mut SqliteConnection, scope: &Scope) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM reorg_incidents r
         WHERE r.acknowledged_at IS NULL AND r.chain_id = ? AND r.contract_address = ?
           AND EXISTS (SELECT 1 FROM json_each(r.reversed_orders) j
                       JOIN orders o ON o.id = j.value WHERE o.payment_status = 'reversed')",
    )
    .bind(scope.chain_id as i64)
    .bind(hex_address(&scope.contract))
    .fetch_one(conn)
    .await?)
}

/// Acknowledges every open incident; returns how many.
pub async fn acknowledge_all(
    conn: &mut SqliteConnection,
    scope: &Scope,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(&format!(
        "UPDATE reorg_incidents SET acknowledged_at = {NOW}
         WHERE acknowledged_at IS NULL AND chain_id = ? AND contract_address = ?"
    ))
    .bind(scope.chain_id as i64)
    .bind(hex_address(&scope.contract))
    .execute(conn)
    .await?
    .rows_affected())
}
