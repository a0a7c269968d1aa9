//! The verification columns of `contract_events` (`verification`,
//! `verification_detail`, `verified_at`): which final payments still wait for
//! a second opinion, and the outcome once it is given, with an
//! `order_audit` row for each dispute. It must not decide anything: the
//! caller compares the logs (`indexer::verify`).

use sqlx::{FromRow, Row};

use super::events::{payment_from_row, PaymentRow, PAYMENT_COLUMNS};
use super::orders::{self, Reason};
use super::{on, Conn, StoreError};
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
    conn: &mut Conn<'_>,
    scope: &Scope,
    final_block: u64,
    limit: u32,
) -> Result<Vec<Unverified>, StoreError> {
    on!(conn, |c, d| {
        let rows = sqlx::query(&format!(
            "SELECT ce.id, o.id AS order_id, {PAYMENT_COLUMNS}
             FROM orders o {join} contract_events ce{hint}
               ON ce.order_id = o.id AND ce.removed = 0
             WHERE o.payment_status = 'confirming' AND ce.verification IS NULL
               AND ce.block_number <= $1 AND ce.chain_id = $2 AND ce.contract_address = $3
             ORDER BY ce.block_number, ce.log_index LIMIT $4",
            join = d.ordered_join,
            hint = d.indexed_by("idx_contract_events_order_id"),
        ))
        .bind(final_block as i64)
        .bind(scope.chain_id as i64)
        .bind(hex_address(&scope.contract))
        .bind(i64::from(limit))
        .fetch_all(&mut **c)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Unverified {
                    event_id: r.get("id"),
                    order_id: r.get("order_id"),
                    payment: payment_from_row(PaymentRow::from_row(r)?, scope.contract)?,
                })
            })
            .collect()
    })
}

/// Stores the outcome of each event still live and unverified; a dispute
/// also gets an audit row (`verification_disputed`, the order's state
/// unchanged). Returns how many events were disputed by this call.
pub async fn record(
    conn: &mut Conn<'_>,
    outcomes: &[(Unverified, Verification)],
) -> Result<u64, StoreError> {
    let mut disputed = 0;
    for (ev, outcome) in outcomes {
        let (state, detail) = match outcome {
            Verification::Verified { detail } => ("verified", detail),
            Verification::Disputed { detail } => ("disputed", detail),
        };
        let updated = on!(&mut *conn, |c, d| {
            sqlx::query(&format!(
                "UPDATE contract_events SET verification = $1, verification_detail = $2,
                   verified_at = {now}, updated_at = {now}
                 WHERE id = $3 AND removed = 0 AND verification IS NULL",
                now = d.now
            ))
            .bind(state)
            .bind(detail)
            .bind(ev.event_id)
            .execute(&mut **c)
            .await?
            .rows_affected()
        });
        if updated == 0 || state != "disputed" {
            continue;
        }
        disputed += 1;
        let (status, payment_status) = orders::states(conn, &ev.order_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("order {} is gone", ev.order_id)))?;
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
pub async fn disputed_count(conn: &mut Conn<'_>, scope: &Scope) -> Result<i64, StoreError> {
    on!(conn, |c, d| {
        Ok(sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM contract_events{}
             WHERE verification = 'disputed' AND removed = 0
               AND chain_id = $1 AND contract_address = $2",
            d.indexed_by("idx_contract_events_disputed")
        ))
        .bind(scope.chain_id as i64)
        .bind(hex_address(&scope.contract))
        .fetch_one(&mut **c)
        .await?)
    })
}
