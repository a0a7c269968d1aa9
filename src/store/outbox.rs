//! `payment_notifications`, the outbox: one row per change the order API
//! may act on, written in the transaction that makes the change, so that a
//! change is announced if and only if it committed.
//!
//! Three sources, each set-based (one `INSERT … SELECT` per transaction):
//! every `order_audit` row the transaction wrote (an order confirming,
//! paid, back to pending, reversed, disputed, resolved by a person),
//! every live non-`matched` event it stored or whose outcome it changed (a
//! payment a person must look at), and every malformed log it stored. Event ids are derived from
//! what the row announces, never from a sequence: `order:<order id>:<n>`
//! (the order's n-th audit row), `payment:<chain>:<tx>:<log index>:<outcome>`,
//! `malformed:<chain>:<tx>:<log index>` (a log that is no payment) and
//! `resolved:<chain>:<tx>:<log index>` (a person settled a payment of no order).
//! All are the same after a replay, a crash and recovery, or on the other
//! backend, and `event_id` is unique: a second insert of the same change does
//! nothing. Payloads are built in SQL (`Dialect::json_object`), so the rows
//! never travel to Rust and back, and hold nothing that differs between two
//! runs (no row ids, no times).
//!
//! It must not deliver anything: delivery (`store::deliveries`, for
//! `webhooks`) reads the rows and fills their delivery columns.

use serde::Serialize;

use super::events::{self, CHUNK};
use super::{on, Conn, StoreError};
use crate::domain::{hex_address, LogKey, Scope};

/// Rows removed by one retention transaction, at most (bounded work, a
/// short write lock; the retention task runs again at once after a full
/// one).
pub const PRUNE_LIMIT: i64 = CHUNK as i64;

/// Where a transaction started: audit rows above it are its own.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    audit: i64,
}

/// Reads the mark at the start of a write transaction (the writer is single
/// and fenced, so rows above it are this transaction's).
pub async fn mark(conn: &mut Conn<'_>) -> Result<Mark, StoreError> {
    let audit: i64 = on!(conn, |c, d| {
        sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM order_audit")
            .fetch_one(&mut **c)
            .await?
    });
    Ok(Mark { audit })
}

/// The notification type of an audit row's reason.
const AUDIT_TYPE: &str = "CASE a.reason
    WHEN 'payment_seen' THEN 'order.confirming'
    WHEN 'payment_final' THEN 'order.paid'
    WHEN 'reorg' THEN 'order.pending'
    WHEN 'deep_reorg' THEN 'order.reversed'
    WHEN 'verification_disputed' THEN 'order.disputed'
    WHEN 'manual' THEN 'order.resolved'
    ELSE 'order.' || a.reason END";

/// Announces every audit row written since `mark`. Returns rows written.
/// The range is closed above (by the newest row) so that a generic plan,
/// which cannot know how far `$1` is from the end, still estimates a few
/// rows and looks each event up by its id instead of reading them all.
pub async fn announce_audit(conn: &mut Conn<'_>, mark: Mark) -> Result<u64, StoreError> {
    on!(conn, |c, d| {
        let payload = format!(
            "{f}('order_id', a.order_id, 'reason', a.reason, 'actor', a.actor, 'note', a.note,
               'from_status', a.from_status, 'to_status', a.to_status,
               'from_payment_status', a.from_payment_status,
               'to_payment_status', a.to_payment_status,
               'chain_id', ce.chain_id, 'tx_hash', ce.tx_hash, 'log_index', ce.log_index,
               'block_number', ce.block_number, 'amount_usdc', ce.amount_usdc)",
            f = d.json_object
        );
        let sql = format!(
            "INSERT INTO payment_notifications (event_id, type, order_id, payload)
             SELECT 'order:' || a.order_id || ':' ||
                      (SELECT COUNT(*) FROM order_audit n
                        WHERE n.order_id = a.order_id AND n.id <= a.id),
                    {AUDIT_TYPE}, a.order_id, {payload}
             FROM order_audit a LEFT JOIN contract_events ce ON ce.id = a.event_id
             WHERE a.id > $1 AND a.id <= (SELECT MAX(id) FROM order_audit)
             ORDER BY a.id
             ON CONFLICT (event_id) DO NOTHING"
        );
        Ok(sqlx::query(&sql)
            .bind(mark.audit)
            .execute(&mut **c)
            .await?
            .rows_affected())
    })
}

/// The payment's own fields in a `payment.*` payload, as key, value pairs
/// over a `contract_events ce`.
const PAYMENT_FIELDS: &str = "'order_ref', ce.order_ref, 'payer', ce.payer,
    'amount_usdc', ce.amount_usdc, 'amount_raw', ce.amount_raw, 'chain_id', ce.chain_id,
    'contract', ce.contract_address, 'tx_hash', ce.tx_hash, 'log_index', ce.log_index,
    'block_number', ce.block_number";

/// Announces the events this transaction stored (`stored`: the logs it
/// inserted or revived) or whose outcome it changed (`changed`: ids a late
/// match set), those that are live and not `matched`. Never a range: a
/// replay stores nothing, so it announces nothing, even once the first
/// announcement has been deleted by retention. Already announced ones
/// (same log, same outcome) are skipped. Each event is looked up by its
/// unique key or its id: the cost follows the batch, not the history.
pub async fn announce_events(
    conn: &mut Conn<'_>,
    scope: &Scope,
    stored: &[LogKey],
    changed: &[i64],
) -> Result<u64, StoreError> {
    let mut announced = 0;
    for chunk in stored.chunks(CHUNK) {
        let events = Events {
            with: events::keys_relation(chunk),
            from: format!(
                "k {{join}} contract_events ce ON ce.chain_id = {} AND ce.tx_hash = k.tx_hash
                   AND ce.log_index = k.log_index",
                scope.chain_id
            ),
            and: String::new(),
        };
        announced += announce_exceptions(conn, scope, &events).await?;
    }
    for chunk in changed.chunks(CHUNK) {
        // Ids from the store, printed by us: safe inline.
        let ids: Vec<String> = chunk.iter().map(i64::to_string).collect();
        let events = Events {
            with: String::new(),
            from: "contract_events ce".into(),
            and: format!(" AND ce.id IN ({})", ids.join(", ")),
        };
        announced += announce_exceptions(conn, scope, &events).await?;
    }
    Ok(announced)
}

/// Which events a statement announces: a relation `ce` (`from`, with a
/// `{join}` to fill, and the `WITH` it needs) and a condition on it.
struct Events {
    with: String,
    from: String,
    and: String,
}

/// The `payment.<outcome>` rows of `events`: the live, not `matched` ones
/// of this contract.
async fn announce_exceptions(
    conn: &mut Conn<'_>,
    scope: &Scope,
    events: &Events,
) -> Result<u64, StoreError> {
    let contract = hex_address(&scope.contract);
    on!(conn, |c, d| {
        let payload = format!(
            "{f}('order_id', o.id, 'reason', ce.match_status, 'premium_usdc', o.premium_usdc,
               'block_hash', ce.block_hash, {PAYMENT_FIELDS})",
            f = d.json_object
        );
        let sql = format!(
            "{with}INSERT INTO payment_notifications (event_id, type, order_id, payload)
             SELECT 'payment:' || ce.chain_id || ':' || ce.tx_hash || ':' || ce.log_index
                      || ':' || ce.match_status,
                    'payment.' || ce.match_status, o.id, {payload}
             FROM {from} LEFT JOIN orders o ON o.order_ref = ce.order_ref
             WHERE ce.removed = 0 AND ce.match_status <> 'matched'
               AND ce.contract_address = $1{and}
             ORDER BY ce.block_number, ce.log_index
             ON CONFLICT (event_id) DO NOTHING",
            with = events.with,
            from = events.from.replace("{join}", d.ordered_join),
            and = events.and,
        );
        Ok(sqlx::query(&sql)
            .bind(&contract)
            .execute(&mut **c)
            .await?
            .rows_affected())
    })
}

/// Announces the malformed logs this transaction stored (`stored`: the
/// logs it inserted or revived), live ones only: `payment.malformed`, with
/// the order their topic1 names when it exists. Already announced ones are
/// skipped.
pub async fn announce_malformed(
    conn: &mut Conn<'_>,
    scope: &Scope,
    stored: &[LogKey],
) -> Result<u64, StoreError> {
    if stored.is_empty() {
        return Ok(0);
    }
    let contract = hex_address(&scope.contract);
    let mut announced = 0;
    for chunk in stored.chunks(CHUNK) {
        announced += on!(&mut *conn, |c, d| {
            let payload = format!(
                "{f}('order_id', o.id, 'reason', m.reason, 'order_ref', m.order_ref,
                   'chain_id', m.chain_id, 'contract', m.contract_address, 'tx_hash', m.tx_hash,
                   'log_index', m.log_index, 'block_number', m.block_number,
                   'block_hash', m.block_hash, 'data', m.data)",
                f = d.json_object
            );
            // By the unique key (see `events::keys_relation`).
            let sql = format!(
                "{keys}INSERT INTO payment_notifications (event_id, type, order_id, payload)
                 SELECT 'malformed:' || m.chain_id || ':' || m.tx_hash || ':' || m.log_index,
                        'payment.malformed', o.id, {payload}
                 FROM k {join} malformed_logs m
                   ON m.chain_id = {chain} AND m.tx_hash = k.tx_hash AND m.log_index = k.log_index
                 LEFT JOIN orders o ON o.order_ref = m.order_ref
                 WHERE m.removed = 0 AND m.contract_address = $1
                 ORDER BY m.block_number, m.log_index
                 ON CONFLICT (event_id) DO NOTHING",
                keys = events::keys_relation(chunk),
                join = d.ordered_join,
                chain = scope.chain_id,
            );
            sqlx::query(&sql)
                .bind(&contract)
                .execute(&mut **c)
                .await?
                .rows_affected()
        });
    }
    Ok(announced)
}

/// Announces the settling of the payment `event_id`, which pays no order
/// (`payment_resolutions`): `payment.resolved`, with the person's decision.
pub async fn announce_settled(conn: &mut Conn<'_>, event_id: i64) -> Result<u64, StoreError> {
    on!(conn, |c, d| {
        let payload = format!(
            "{f}('order_id', NULL, 'reason', 'manual', 'resolution', r.resolution,
               'actor', r.actor, 'note', r.note, 'match_status', ce.match_status,
               {PAYMENT_FIELDS})",
            f = d.json_object
        );
        let sql = format!(
            "INSERT INTO payment_notifications (event_id, type, order_id, payload)
             SELECT 'resolved:' || ce.chain_id || ':' || ce.tx_hash || ':' || ce.log_index,
                    'payment.resolved', NULL, {payload}
             FROM payment_resolutions r JOIN contract_events ce ON ce.id = r.event_id
             WHERE r.event_id = $1
             ON CONFLICT (event_id) DO NOTHING"
        );
        Ok(sqlx::query(&sql)
            .bind(event_id)
            .execute(&mut **c)
            .await?
            .rows_affected())
    })
}

/// Deletes up to [`PRUNE_LIMIT`] notifications older than `days` days that
/// are delivered, or, when `undelivered_too` (no dispatcher configured, so
/// nothing will ever deliver them), also undelivered ones. Returns how many.
/// Oldest first: their ids are read by the `created_at` index, then deleted
/// by id (an `IN (subquery)` may be planned as a scan of the outbox).
pub async fn prune(
    conn: &mut Conn<'_>,
    days: u32,
    undelivered_too: bool,
) -> Result<u64, StoreError> {
    let expired: Vec<i64> = on!(&mut *conn, |c, d| {
        sqlx::query_scalar(&format!(
            "SELECT id FROM payment_notifications
             WHERE created_at < {cutoff} AND (delivered_at IS NOT NULL OR $2 = 1)
             ORDER BY created_at LIMIT $3",
            cutoff = d.now_minus_days("$1")
        ))
        .bind(i64::from(days))
        .bind(i64::from(undelivered_too))
        .bind(PRUNE_LIMIT)
        .fetch_all(&mut **c)
        .await?
    });
    events::delete_ids(conn, "payment_notifications", "id", &expired).await
}

/// One notification as read back, with its delivery state.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Notification {
    pub id: i64,
    pub event_id: String,
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub kind: String,
    pub order_id: Option<String>,
    /// The payload, as JSON text.
    pub payload: String,
    pub created_at: String,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<String>,
    pub gave_up_at: Option<String>,
}

/// The columns of [`Notification`], in the dialect `d`.
fn columns(d: &super::Dialect) -> String {
    format!(
        "id, event_id, type, order_id, {payload} AS payload, {created} AS created_at, attempts,
         {next} AS next_attempt_at, last_status, last_error, {delivered} AS delivered_at,
         {gave_up} AS gave_up_at",
        payload = d.json_text("payload"),
        created = d.to_iso("created_at"),
        next = d.to_iso("next_attempt_at"),
        delivered = d.to_iso("delivered_at"),
        gave_up = d.to_iso("gave_up_at"),
    )
}

/// Notifications after `cursor`, in id order, at most `limit` (the order
/// API's cursor read, docs/database-contract.md).
pub async fn after(
    conn: &mut Conn<'_>,
    cursor: i64,
    limit: i64,
) -> Result<Vec<Notification>, StoreError> {
    on!(conn, |c, d| {
        let sql = format!(
            "SELECT {} FROM payment_notifications WHERE id > $1 ORDER BY id LIMIT $2",
            columns(d)
        );
        Ok(sqlx::query_as(&sql)
            .bind(cursor)
            .bind(limit)
            .fetch_all(&mut **c)
            .await?)
    })
}

/// Every notification about `order_id`, in id order.
pub async fn for_order(
    conn: &mut Conn<'_>,
    order_id: &str,
) -> Result<Vec<Notification>, StoreError> {
    on!(conn, |c, d| {
        let sql = format!(
            "SELECT {} FROM payment_notifications WHERE order_id = $1 ORDER BY id",
            columns(d)
        );
        Ok(sqlx::query_as(&sql)
            .bind(order_id)
            .fetch_all(&mut **c)
            .await?)
    })
}
