//! The webhook dispatcher's side of the outbox (`payment_notifications`):
//! which rows are due, and each attempt's result, persisted so that a
//! restart (or the next leader) resumes where the last attempt left off.
//!
//! A row is due when it is neither delivered nor given up, its next attempt
//! time has come, and no older row about the same order is still waiting:
//! notifications about one order go out in id order, and one order's
//! failing notification never holds up another order's.

use std::time::Duration;

use super::{on, Conn, StoreError};

/// A notification to deliver.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Due {
    pub id: i64,
    /// The stable event id: the `webhook-id` header.
    pub event_id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub order_id: Option<String>,
    /// The payload, as JSON text.
    pub payload: String,
    /// When it was written, ISO-8601 UTC.
    pub created_at: String,
    /// Seconds since it was written, on the database's clock.
    pub age_s: i64,
    /// Attempts made before this one.
    pub attempts: i64,
}

/// The due notifications, oldest first, at most `limit` (at most one per
/// order, by the rule above).
pub async fn due(conn: &mut Conn<'_>, limit: usize) -> Result<Vec<Due>, StoreError> {
    on!(conn, |c, d| {
        let sql = format!(
            "SELECT n.id, n.event_id, n.type, n.order_id, {payload} AS payload,
                    {created} AS created_at, {now_s} - {created_s} AS age_s, n.attempts
             FROM payment_notifications n
             WHERE n.delivered_at IS NULL AND n.gave_up_at IS NULL
               AND (n.next_attempt_at IS NULL OR n.next_attempt_at <= {now})
               AND NOT EXISTS (
                 SELECT 1 FROM payment_notifications p
                 WHERE p.order_id = n.order_id AND p.id < n.id
                   AND p.delivered_at IS NULL AND p.gave_up_at IS NULL)
             ORDER BY n.id LIMIT $1",
            payload = d.json_text("n.payload"),
            created = d.to_iso("n.created_at"),
            now_s = d.to_unix(d.now),
            created_s = d.to_unix("n.created_at"),
            now = d.now,
        );
        Ok(sqlx::query_as(&sql)
            .bind(limit as i64)
            .fetch_all(&mut **c)
            .await?)
    })
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// A 2xx answer.
    Delivered { status: u16 },
    /// Any other answer, or none: try again after `after`.
    Failed {
        status: Option<u16>,
        error: String,
        after: Duration,
    },
    /// Failed, and older than `webhooks.give_up_after`: no more attempts.
    GaveUp { status: Option<u16>, error: String },
    /// 410 Gone: the receiver disabled the endpoint. The row stays due.
    Gone,
}

/// Records `attempt` for notification `id`.
pub async fn record(conn: &mut Conn<'_>, id: i64, attempt: &Attempt) -> Result<(), StoreError> {
    let (status, error) = match attempt {
        Attempt::Delivered { status } => (Some(*status), None),
        Attempt::Failed { status, error, .. } | Attempt::GaveUp { status, error } => {
            (*status, Some(error.as_str()))
        }
        Attempt::Gone => (
            Some(410),
            Some("410 Gone: the receiver disabled this endpoint"),
        ),
    };
    on!(conn, |c, d| {
        let set = match attempt {
            Attempt::Delivered { .. } => {
                format!("delivered_at = {}, next_attempt_at = NULL", d.now)
            }
            Attempt::Failed { after, .. } => format!("next_attempt_at = {}", d.now_plus(*after)),
            Attempt::GaveUp { .. } => format!("gave_up_at = {}, next_attempt_at = NULL", d.now),
            Attempt::Gone => "next_attempt_at = NULL".to_owned(),
        };
        let sql = format!(
            "UPDATE payment_notifications
             SET attempts = attempts + 1, last_status = $2, last_error = $3, {set}
             WHERE id = $1"
        );
        sqlx::query(&sql)
            .bind(id)
            .bind(status.map(i64::from))
            .bind(error)
            .execute(&mut **c)
            .await?;
        Ok(())
    })
}

/// The queue: undelivered notifications (given up ones excluded), and the
/// age in seconds of the oldest (0 when none).
pub async fn queue(conn: &mut Conn<'_>) -> Result<(i64, i64), StoreError> {
    on!(conn, |c, d| {
        let sql = format!(
            "SELECT COUNT(*), COALESCE({now_s} - MIN({created_s}), 0)
             FROM payment_notifications
             WHERE delivered_at IS NULL AND gave_up_at IS NULL",
            now_s = d.to_unix(d.now),
            created_s = d.to_unix("created_at"),
        );
        Ok(sqlx::query_as(&sql).fetch_one(&mut **c).await?)
    })
}
