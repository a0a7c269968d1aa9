//! Deep-reorg incidents: recorded in the rollback transaction, counted for
//! readiness, acknowledged by an operator.

use super::{on, Conn, StoreError};
use crate::domain::{hex_address, Scope};

/// Records a deep reorg that reversed `orders`.
pub async fn record(
    conn: &mut Conn<'_>,
    scope: &Scope,
    depth: u64,
    ancestor: u64,
    old_checkpoint: u64,
    orders: &[String],
) -> Result<(), StoreError> {
    let ids = sqlx::types::Json(orders);
    on!(conn, |c, d| {
        sqlx::query(
            "INSERT INTO reorg_incidents
               (chain_id, contract_address, depth, ancestor_block, old_checkpoint, reversed_orders)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(scope.chain_id as i64)
        .bind(hex_address(&scope.contract))
        .bind(depth as i64)
        .bind(ancestor as i64)
        .bind(old_checkpoint as i64)
        .bind(ids)
        .execute(&mut **c)
        .await?;
        Ok(())
    })
}

/// Open incidents: not acknowledged, and some order they reversed is still
/// `reversed`. By the partial indexes of open incidents and of reversed
/// orders: the cost follows those, not the history.
pub async fn open_count(conn: &mut Conn<'_>, scope: &Scope) -> Result<i64, StoreError> {
    on!(conn, |c, d| {
        Ok(sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM reorg_incidents r
             WHERE r.acknowledged_at IS NULL AND r.chain_id = $1 AND r.contract_address = $2
               AND EXISTS (SELECT 1 FROM orders o{hint}
                           WHERE o.payment_status = 'reversed' AND o.id IN ({elements}))",
            hint = d.indexed_by("idx_orders_reversed"),
            elements = d.json_elements("r.reversed_orders")
        ))
        .bind(scope.chain_id as i64)
        .bind(hex_address(&scope.contract))
        .fetch_one(&mut **c)
        .await?)
    })
}

/// Acknowledges every open incident; returns how many.
pub async fn acknowledge_all(conn: &mut Conn<'_>, scope: &Scope) -> Result<u64, StoreError> {
    on!(conn, |c, d| {
        Ok(sqlx::query(&format!(
            "UPDATE reorg_incidents SET acknowledged_at = {}
             WHERE acknowledged_at IS NULL AND chain_id = $1 AND contract_address = $2",
            d.now
        ))
        .bind(scope.chain_id as i64)
        .bind(hex_address(&scope.contract))
        .execute(&mut **c)
        .await?
        .rows_affected())
    })
}
