//! The post-commit hint on PostgreSQL: `NOTIFY liqpass_indexer` with a small
//! JSON payload (`{"chain_id":…,"contract":"0x…","checkpoint":…}`, well under
//! 1 KB) from inside a transaction that changed orders. PostgreSQL delivers
//! it when, and only if, that transaction commits, so order API replicas
//! that `LISTEN` can wake up instead of polling. A hint only: the tables are
//! the truth, a listener may miss hints (reconnects) and must re-read them.
//! SQLite has no such channel; there this does nothing.

use super::{Conn, StoreError};
use crate::domain::{hex_address, Scope};

/// The channel the hint is sent on.
pub const CHANNEL: &str = "liqpass_indexer";

/// Queues the hint that orders changed up to `checkpoint`, sent at commit.
pub async fn orders_changed(
    conn: &mut Conn<'_>,
    scope: &Scope,
    checkpoint: u64,
) -> Result<(), StoreError> {
    let Conn::Postgres(c) = conn else {
        return Ok(());
    };
    let payload = serde_json::json!({
        "chain_id": scope.chain_id,
        "contract": hex_address(&scope.contract),
        "checkpoint": checkpoint,
    });
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload.to_string())
        .execute(&mut **c)
        .await?;
    Ok(())
}
