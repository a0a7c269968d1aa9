//! The verification columns of `contract_events` (`verification`,
//! `verification_detail`, `verified_at`): which final payments still wait for
//! a second opinion, and the outcome once it is given, with an
//! `order_audit` row for each dispute. It must not decide anything: the
//! caller compares the logs (`indexer::verify`).

use sqlx::{Row, SqliteConnection};

use super::events::{payment_from_row, PAYMENT_COLUMNS};
use super::orders::{self, Reason};
use super::{StoreError, NOW};
use crate::domain::{hex_address, Payment, Scope};

/// A matched event of a `confirming` order, final but not yet verified.
#[derive(Debug, Clone)]
pub struct Unverified {
    pub event_id: i64,
    pub order_id: String,
    pub payment: Payment,
}

/// What the verifiers said about one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// A quorum returned the same log; `detail` names who.
    Verified { detail: String },
    /// A verifier that has the block does not have the same log.
    Disputed { detail: String },
}

/// Up to `limit` live events paying a `confirming` order, at or below
/// `final_block`, not yet verified, oldest first. Driven by the few
/// `confirming` orders, like `orders::promote_final`.
pub async fn unverified_final(
    conn: &mut SqliteConnection,
    scope: &Scope,
    final_block: u64,
    limit: u32,
) -> Result<Vec<Unverified>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT ce.id, o.id AS order_id, {PAYMENT_COLUMNS}
         FROM orders o CROSS JOIN contract_events ce INDEXED BY idx_contract_events_order_id
           ON ce.order_id = o.id AND ce.removed = 0
         WHERE o.payment_status = 'confirming' AND ce.verification IS NULL
           AND ce.block_number <= ? AND ce.chain_id = ? AND ce.contract_address = ?
         ORDER BY ce.block_number, ce.log_index LIMIT ?"
    ))
    .bind(final_block as i64)
    .bind(scope.chain_id as i64)
    .bind(hex_address(&scope.contract))
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Unverified {
                event_id: r.get("id"),
                order_id: r.get("order_id"),
                payment: payment_from_row(r, scope.contract)?,
            })
        })
        .collect()
}

/// Stores the outcome of each event still live and unverified; a dispute
/// also gets an audit row (`verification_disputed`, the order's state
/// unchanged). Returns how many events were disputed by this call.
pub async fn record(
    conn: &mut SqliteConnection,
    outcomes: &[(Unverified, Verification)],
) -> Result<u64, StoreError> {
    let mut disputed = 0;
    for (ev, outcome) in outcomes {
        let (state, detail) = match outcome {
            Verification::Verified { detail } => ("verified", detail),
            Verification::Disputed { detail } => ("disputed", detail),
        };
        let updated = sqlx::query(&format!(
            "UPDATE contract_events SET verification = ?, verification_detail = ?,
               verified_at = {NOW}, updated_at = {NOW}
             WHERE id = ? AND removed = 0 AND verification IS NULL"
        ))
        .bind(state)
        .bind(detail)
        .bind(ev.event_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if updated == 0 || state != "disputed" {
            continue;
        }
        disputed += 1;
        let row = sqlx::query("SELECT status, payment_status FROM orders WHERE id = ?")
            .bind(&ev.order_id)
            .fetch_one(&mut *conn)
            .await?;
        let (status, payment_status): (String, String) = (row.get(0), row.get(1));
        orders::audit(
            conn,
            &ev.order_id,
            Reason::VerificationDisputed,
            (&status, &status),
            (&payment_status, &payment_status),
            Some(ev.event_id),
        )
        .await?;
    }
    Ok(disputed)
}

/// Live disputed events: payments a person must look at.
pub async fn disputed_count(conn: &mut SqliteConnection, scope: &Scope) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM contract_events INDEXED BY idx_contract_events_disputed
         WHERE verification = 'disputed' AND removed = 0
           AND chain_id = ? AND contract_address = ?",
    )
    .bind(scope.chain_id as i64)
    .bind(hex_address(&scope.contract))
    .fetch_one(&mut *conn)
    .await?)
}
