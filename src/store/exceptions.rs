//! Payments that need a person: what `review` lists, how `resolve` settles
//! one (an audit row and an outbox row with the change, in one
//! transaction), and the reads of `order`'s timeline.
//!
//! An order is in an exception state when its `payment_status` is
//! `reversed` (a deep reorg took back a final payment), or when a live
//! non-`matched` event carries its `order_ref` (underpaid, overpaid,
//! payer_mismatch, late_payment, wrong_destination, duplicate_payment) and
//! no manual resolution of the order was recorded since that event was
//! indexed. It must not decide who may resolve: the caller names the actor.

use serde::Serialize;

use super::{on, outbox, Conn, Dialect, StoreError};

/// What a person may turn an exception into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Accepted as payment: `paid` / `paid`.
    Paid,
    /// The money went back to the payer: `refunded` / `refunded`.
    Refunded,
    /// The order is dropped: `cancelled` / `failed`.
    Void,
}

impl Resolution {
    /// The order's (status, payment_status) after the resolution.
    pub fn states(self) -> (&'static str, &'static str) {
        match self {
            Self::Paid => ("paid", "paid"),
            Self::Refunded => ("refunded", "refunded"),
            Self::Void => ("cancelled", "failed"),
        }
    }
}

/// The condition "the event `ce` still needs a person", over an order `o`.
const EVENT_OPEN: &str = "ce.removed = 0 AND ce.match_status <> 'matched'
    AND NOT EXISTS (SELECT 1 FROM order_audit m WHERE m.order_id = o.id
                    AND m.reason = 'manual' AND m.created_at >= ce.indexed_at)";

/// How a resolution attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// No order with that id.
    NoOrder,
    /// The order is not in an exception state; nothing was written.
    Refused {
        status: String,
        payment_status: String,
    },
    /// Written: the audit row and its notification.
    Done {
        from: (String, String),
        to: (&'static str, &'static str),
    },
}

/// Resolves `order_id` as `to`, inside the caller's transaction, when it is
/// in an exception state; writes nothing otherwise.
pub async fn resolve(
    conn: &mut Conn<'_>,
    order_id: &str,
    to: Resolution,
    actor: &str,
    note: &str,
) -> Result<Resolved, StoreError> {
    let mark = outbox::mark(conn).await?;
    // Locked until commit (PostgreSQL; SQLite's write lock is held already),
    // so the indexer cannot change the order between this read and the
    // update, and the audit rows' numbering (`outbox`) stays one sequence.
    let row: Option<(String, String, i64)> = on!(&mut *conn, |c, d| {
        let sql = format!(
            "SELECT o.status, o.payment_status,
                CAST(CASE WHEN o.payment_status = 'reversed' OR EXISTS (
                  SELECT 1 FROM contract_events ce WHERE ce.order_ref = o.order_ref
                    AND {EVENT_OPEN}) THEN 1 ELSE 0 END AS BIGINT)
             FROM orders o WHERE o.id = $1{lock}",
            lock = d.lock_rows
        );
        sqlx::query_as(&sql)
            .bind(order_id)
            .fetch_optional(&mut **c)
            .await?
    });
    let Some((status, payment_status, open)) = row else {
        return Ok(Resolved::NoOrder);
    };
    if open == 0 {
        return Ok(Resolved::Refused {
            status,
            payment_status,
        });
    }
    let (to_status, to_payment) = to.states();
    on!(&mut *conn, |c, d| {
        sqlx::query(
            "INSERT INTO order_audit (order_id, actor, reason, note, from_status, to_status,
               from_payment_status, to_payment_status)
             VALUES ($1, $2, 'manual', $3, $4, $5, $6, $7)",
        )
        .bind(order_id)
        .bind(actor)
        .bind(note)
        .bind(&status)
        .bind(to_status)
        .bind(&payment_status)
        .bind(to_payment)
        .execute(&mut **c)
        .await?;
        sqlx::query(&format!(
            "UPDATE orders SET status = $1, payment_status = $2, updated_at = {} WHERE id = $3",
            d.now
        ))
        .bind(to_status)
        .bind(to_payment)
        .bind(order_id)
        .execute(&mut **c)
        .await?;
    });
    outbox::announce_audit(conn, mark).await?;
    super::notify::changed(conn, None).await?;
    Ok(Resolved::Done {
        from: (status, payment_status),
        to: (to_status, to_payment),
    })
}

/// The order whose `order_ref` the event `chain:tx:log_index` carries.
pub async fn order_of_event(
    conn: &mut Conn<'_>,
    chain_id: i64,
    tx_hash: &str,
    log_index: i64,
) -> Result<Option<String>, StoreError> {
    on!(conn, |c, d| {
        Ok(sqlx::query_scalar(
            "SELECT o.id FROM contract_events ce JOIN orders o ON o.order_ref = ce.order_ref
             WHERE ce.chain_id = $1 AND ce.tx_hash = $2 AND ce.log_index = $3",
        )
        .bind(chain_id)
        .bind(tx_hash.to_ascii_lowercase())
        .bind(log_index)
        .fetch_optional(&mut **c)
        .await?)
    })
}

/// One thing `review` lists.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Review {
    /// When it started needing a person (ISO-8601 UTC).
    pub since: String,
    /// The event's `match_status`, or `reversed` for a reversed order.
    pub reason: String,
    pub order_id: Option<String>,
    pub chain_id: Option<i64>,
    pub tx_hash: Option<String>,
    pub log_index: Option<i64>,
    pub block_number: Option<i64>,
    pub amount_usdc: Option<i64>,
    pub premium_usdc: Option<i64>,
}

/// Everything that needs a person, oldest first.
pub async fn review(conn: &mut Conn<'_>) -> Result<Vec<Review>, StoreError> {
    on!(conn, |c, d| {
        let sql = format!(
            "SELECT {ev_since} AS since, ce.match_status AS reason, o.id AS order_id,
                ce.chain_id, ce.tx_hash, ce.log_index, ce.block_number, ce.amount_usdc,
                o.premium_usdc
             FROM contract_events ce LEFT JOIN orders o ON o.order_ref = ce.order_ref
             WHERE {EVENT_OPEN}
             UNION ALL
             SELECT {o_since}, 'reversed', o.id, NULL, NULL, NULL, NULL, NULL, o.premium_usdc
             FROM orders o WHERE o.payment_status = 'reversed'
             ORDER BY 1, 3",
            ev_since = d.to_iso("ce.indexed_at"),
            o_since = d.to_iso("o.updated_at"),
        );
        Ok(sqlx::query_as(&sql).fetch_all(&mut **c).await?)
    })
}

/// An order as `order` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct OrderView {
    pub id: String,
    pub order_ref: String,
    pub wallet_address: String,
    pub premium_usdc: i64,
    pub status: String,
    pub payment_status: String,
    pub created_at: String,
    pub updated_at: String,
    pub paid_tx_hash: Option<String>,
    pub paid_log_index: Option<i64>,
    pub paid_block_number: Option<i64>,
    pub paid_amount_usdc: Option<i64>,
}

/// An event that touched an order (paid it, or carries its `order_ref`).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct EventView {
    pub indexed_at: String,
    pub chain_id: i64,
    pub tx_hash: String,
    pub log_index: i64,
    pub block_number: i64,
    pub payer: String,
    pub amount_usdc: Option<i64>,
    pub match_status: String,
    pub removed: i64,
}

/// One `order_audit` row.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct AuditView {
    pub created_at: String,
    pub actor: String,
    pub reason: String,
    pub note: Option<String>,
    pub from_status: String,
    pub to_status: String,
    pub from_payment_status: String,
    pub to_payment_status: String,
}

/// The order, its events, its audit rows and its notifications.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    pub order: OrderView,
    pub events: Vec<EventView>,
    pub audit: Vec<AuditView>,
    pub notifications: Vec<outbox::Notification>,
}

fn order_columns(d: &Dialect) -> String {
    format!(
        "id, order_ref, wallet_address, premium_usdc, status, payment_status,
         {} AS created_at, {} AS updated_at, paid_tx_hash, paid_log_index,
         paid_block_number, paid_amount_usdc",
        d.to_iso("created_at"),
        d.to_iso("updated_at")
    )
}

/// The timeline of `order_id`, each part in time order; `None` when there
/// is no such order.
pub async fn timeline(conn: &mut Conn<'_>, order_id: &str) -> Result<Option<Timeline>, StoreError> {
    let order: Option<OrderView> = on!(&mut *conn, |c, d| {
        let sql = format!("SELECT {} FROM orders WHERE id = $1", order_columns(d));
        sqlx::query_as(&sql)
            .bind(order_id)
            .fetch_optional(&mut **c)
            .await?
    });
    let Some(order) = order else {
        return Ok(None);
    };
    let (events, audit) = on!(&mut *conn, |c, d| {
        let events: Vec<EventView> = sqlx::query_as(&format!(
            "SELECT {} AS indexed_at, chain_id, tx_hash, log_index, block_number, payer,
                amount_usdc, match_status, CAST(removed AS BIGINT) AS removed
             FROM contract_events WHERE order_id = $1 OR order_ref = $2
             ORDER BY indexed_at, id",
            d.to_iso("indexed_at")
        ))
        .bind(order_id)
        .bind(&order.order_ref)
        .fetch_all(&mut **c)
        .await?;
        let audit: Vec<AuditView> = sqlx::query_as(&format!(
            "SELECT {} AS created_at, actor, reason, note, from_status, to_status,
                from_payment_status, to_payment_status
             FROM order_audit WHERE order_id = $1 ORDER BY id",
            d.to_iso("created_at")
        ))
        .bind(order_id)
        .fetch_all(&mut **c)
        .await?;
        (events, audit)
    });
    let notifications = outbox::for_order(conn, order_id).await?;
    Ok(Some(Timeline {
        order,
        events,
        audit,
        notifications,
    }))
}
