//! The post-commit hint on PostgreSQL: `NOTIFY liqpass_indexer` with a small
//! JSON payload (`{"chain_id":…,"contract":"0x…","checkpoint":…,
//! "notification":…}`, well under 1 KB) from inside a transaction that
//! changed orders or wrote outbox rows (`notification` is the highest outbox
//! id, as that transaction sees it). PostgreSQL delivers
//! it when, and only if, that transaction commits, so order API replicas
//! that `LISTEN` can wake up instead of polling. A hint only: the tables are
//! the truth, a listener may miss hints (reconnects) and must re-read them.
//! SQLite has no such channel; there this does nothing.

use super::{Conn, StoreError};
use crate::domain::{hex_address, Scope};

/// The channel the hint is sent on.
pub const CHANNEL: &str = "liqpass_indexer";

/// Queues the hint that orders or the outbox changed, sent at commit: by
/// the indexer up to `at`'s checkpoint, or (`None`) by a person's
/// `resolve`, whose hint names only the notification. One round trip: the
/// outbox id is read in the statement.
pub async fn changed(conn: &mut Conn<'_>, at: Option<(&Scope, u64)>) -> Result<(), StoreError> {
    let Conn::Postgres(c) = conn else {
        return Ok(());
    };
    sqlx::query(
        "SELECT pg_notify($1, json_strip_nulls(json_build_object(
           'chain_id', $2::bigint, 'contract', $3::text, 'checkpoint', $4::bigint,
           'notification', (SELECT MAX(id) FROM payment_notifications)))::text)",
    )
    .bind(CHANNEL)
    .bind(at.map(|(scope, _)| scope.chain_id as i64))
    .bind(at.map(|(scope, _)| hex_address(&scope.contract)))
    .bind(at.map(|(_, checkpoint)| checkpoint as i64))
    .execute(&mut **c)
    .await?;
    Ok(())
}
