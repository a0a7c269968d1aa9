//! `audit_state`: where the completeness audit has got to (every block up
//! to the position was asked for again once final, and what was missing
//! stored), and the reads the audit and the pending-order sweep make. The
//! position is written only inside a fenced write transaction, like the
//! checkpoint.

use alloy::primitives::B256;
use sqlx::Row;

use super::values::{parse_b256, to_u64};
use super::{on, Conn, StoreError};
use crate::domain::{hex_address, Scope};

/// The last audited block, or `None` before the first audited range.
pub async fn position(conn: &mut Conn<'_>, scope: &Scope) -> Result<Option<u64>, StoreError> {
    on!(conn, |c, d| {
        let row: Option<i64> = sqlx::query_scalar(
            "SELECT audited_block FROM audit_state
             WHERE chain_id = $1 AND contract_address = $2",
        )
        .bind(scope.chain_id as i64)
        .bind(hex_address(&scope.contract))
        .fetch_optional(&mut **c)
        .await?;
        row.map(to_u64).transpose()
    })
}

/// Moves the position from `expected` (`None`: no row yet) to `block`;
/// false, and nothing written, when the stored position is not `expected`
/// any more (a reorg rolled back below it meanwhile: `lower`).
pub async fn advance(
    conn: &mut Conn<'_>,
    scope: &Scope,
    expected: Option<u64>,
    block: u64,
) -> Result<bool, StoreError> {
    let (chain_id, contract) = (scope.chain_id as i64, hex_address(&scope.contract));
    on!(conn, |c, d| {
        let done = match expected {
            None => {
                sqlx::query(
                    "INSERT INTO audit_state (chain_id, contract_address, audited_block)
                     VALUES ($1, $2, $3) ON CONFLICT (chain_id, contract_address) DO NOTHING",
                )
                .bind(chain_id)
                .bind(&contract)
                .bind(block as i64)
                .execute(&mut **c)
                .await?
            }
            Some(from) => {
                sqlx::query(&format!(
                    "UPDATE audit_state SET audited_block = $3, updated_at = {}
                     WHERE chain_id = $1 AND contract_address = $2 AND audited_block = $4",
                    d.now
                ))
                .bind(chain_id)
                .bind(&contract)
                .bind(block as i64)
                .bind(from as i64)
                .execute(&mut **c)
                .await?
            }
        };
        Ok(done.rows_affected() == 1)
    })
}

/// Moves the position back to `block` when it is past it: a reorg rolled
/// the blocks above back, and the new branch's are audited again.
pub async fn lower(conn: &mut Conn<'_>, scope: &Scope, block: u64) -> Result<(), StoreError> {
    on!(conn, |c, d| {
        sqlx::query(&format!(
            "UPDATE audit_state SET audited_block = $3, updated_at = {}
             WHERE chain_id = $1 AND contract_address = $2 AND audited_block > $3",
            d.now
        ))
        .bind(scope.chain_id as i64)
        .bind(hex_address(&scope.contract))
        .bind(block as i64)
        .execute(&mut **c)
        .await?;
        Ok(())
    })
}

const DAY: u64 = 86_400;

/// A pending order the sweep looks for by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub order_ref: B256,
    /// Unix seconds.
    pub created_at: u64,
}

/// Up to `limit` orders still `pending`/`pending` that were created between
/// `since` and `until` (unix seconds), newest first. Driven by the partial
/// index of pending orders on `created_at` (`idx_orders_pending`), so its
/// cost follows the pending orders of that window, never the history's
/// (nor the orders abandoned long ago). The index range is a day wider on each side and the times
/// are compared as numbers here: on SQLite `created_at` is text, and an
/// order API writing `2026-12-07 10:00:00` (valid, but not the documented
/// ISO form) sorts apart from `2026-12-07T…` within a day.
pub async fn pending_orders(
    conn: &mut Conn<'_>,
    since: u64,
    until: u64,
    limit: u32,
) -> Result<Vec<Pending>, StoreError> {
    on!(conn, |c, d| {
        let rows = sqlx::query(&format!(
            "SELECT order_ref, {created} AS created FROM orders{hint}
             WHERE created_at >= {since} AND created_at <= {until}
               AND status = 'pending' AND payment_status = 'pending'
             ORDER BY created_at DESC LIMIT $3",
            created = d.to_unix("created_at"),
            hint = d.indexed_by("idx_orders_pending"),
            since = d.from_unix("$1"),
            until = d.from_unix("$2"),
        ))
        .bind(since.saturating_sub(DAY) as i64)
        .bind(until.saturating_add(DAY) as i64)
        .bind(i64::from(limit))
        .fetch_all(&mut **c)
        .await?;
        let mut pending = Vec::with_capacity(rows.len());
        for r in &rows {
            let created_at = to_u64(r.get::<i64, _>(1))?;
            if (since..=until).contains(&created_at) {
                pending.push(Pending {
                    order_ref: parse_b256(&r.get::<String, _>(0))?,
                    created_at,
                });
            }
        }
        Ok(pending)
    })
}
