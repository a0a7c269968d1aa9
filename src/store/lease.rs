//! `indexer_lease`: which replica writes, under which epoch, until when (the
//! database's clock). Taking the lease over bumps the epoch; every write
//! transaction of the indexer re-checks (and renews) it ([`renew`], through
//! [`super::Store::write`]), so a replica that lost it writes nothing more.
//! It decides nothing: when to take, renew or give up the lease is
//! `crate::ha`'s.

use std::time::Duration;

use sqlx::Row;

use super::{on, Conn, Dialect, StoreError};
use crate::domain::{hex_address, Scope};

/// Who may write: a replica and the epoch it holds the lease under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub scope: Scope,
    pub holder: String,
    pub epoch: i64,
}

/// The lease as stored, for standbys' logs and `status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Holder {
    pub holder: String,
    pub epoch: i64,
    pub expires_at: String,
    /// Whether `expires_at` is still ahead of the database's clock.
    pub live: bool,
}

/// Takes the lease for `holder` when nobody holds it or it has expired,
/// under the next epoch; returns that epoch, or `None` when another live
/// holder has it.
pub async fn take(
    conn: &mut Conn<'_>,
    scope: &Scope,
    holder: &str,
    ttl: Duration,
) -> Result<Option<i64>, StoreError> {
    on!(conn, |c, d| {
        let row = sqlx::query(&format!(
            "INSERT INTO indexer_lease
               (chain_id, contract_address, holder, epoch, acquired_at, renewed_at, expires_at)
             VALUES ($1, $2, $3, 1, {now}, {now}, {until})
             ON CONFLICT (chain_id, contract_address) DO UPDATE SET
               holder = excluded.holder, epoch = indexer_lease.epoch + 1,
               acquired_at = excluded.acquired_at, renewed_at = excluded.renewed_at,
               expires_at = excluded.expires_at
             WHERE indexer_lease.expires_at <= excluded.acquired_at
             RETURNING epoch",
            now = d.now,
            until = d.now_plus(ttl)
        ))
        .bind(scope.chain_id as i64)
        .bind(hex_address(&scope.contract))
        .bind(holder)
        .fetch_optional(&mut **c)
        .await?;
        Ok(row.map(|r| r.get(0)))
    })
}

/// Extends the lease by `ttl` from now if `fence` still holds it; false
/// when it does not (taken over: a takeover bumps the epoch). A lease that
/// expired but nobody took is still `fence`'s: nobody wrote under another
/// epoch meanwhile (a leader locked out by another session's lock on
/// SQLite, whose standbys were locked out as well, leads on). Inside a
/// write transaction this is the fence, and every commit renews the lease:
/// an `UPDATE`, so that on a backend with row locks a takeover waits for
/// the transaction to end, and one that took it first fails the fence.
pub async fn renew(conn: &mut Conn<'_>, fence: &Fence, ttl: Duration) -> Result<bool, StoreError> {
    update_if_held(conn, fence, |d| {
        format!("renewed_at = {}, expires_at = {}", d.now, d.now_plus(ttl))
    })
    .await
}

/// Gives the lease up at once (a clean shutdown), so a standby need not
/// wait for it to expire. False if `fence` no longer held it.
pub async fn release(conn: &mut Conn<'_>, fence: &Fence) -> Result<bool, StoreError> {
    update_if_held(conn, fence, |d| format!("expires_at = {}", d.now)).await
}

/// `UPDATE indexer_lease SET {set}` on the lease row if `fence` holds it
/// (its holder, under its epoch); whether it did.
async fn update_if_held(
    conn: &mut Conn<'_>,
    fence: &Fence,
    set: impl Fn(&Dialect) -> String,
) -> Result<bool, StoreError> {
    on!(conn, |c, d| {
        let done = sqlx::query(&format!(
            "UPDATE indexer_lease SET {set}
             WHERE chain_id = $1 AND contract_address = $2 AND holder = $3 AND epoch = $4",
            set = set(d)
        ))
        .bind(fence.scope.chain_id as i64)
        .bind(hex_address(&fence.scope.contract))
        .bind(&fence.holder)
        .bind(fence.epoch)
        .execute(&mut **c)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// The stored lease, if any.
pub async fn current(conn: &mut Conn<'_>, scope: &Scope) -> Result<Option<Holder>, StoreError> {
    on!(conn, |c, d| {
        let row = sqlx::query(&format!(
            "SELECT holder, epoch, {expires}, expires_at > {now} FROM indexer_lease
             WHERE chain_id = $1 AND contract_address = $2",
            expires = d.to_iso("expires_at"),
            now = d.now
        ))
        .bind(scope.chain_id as i64)
        .bind(hex_address(&scope.contract))
        .fetch_optional(&mut **c)
        .await?;
        Ok(row.map(|r| Holder {
            holder: r.get(0),
            epoch: r.get(1),
            expires_at: r.get(2),
            live: r.get(3),
        }))
    })
}

/// Waits for the leader's write transaction in flight, if any, and holds
/// the next one off until the caller's transaction ends (PostgreSQL: the
/// lease rows locked; SQLite's write lock does this already). So an
/// operator's write that adds outbox rows (`resolve`) never interleaves
/// with a batch: outbox ids stay in commit order.
pub async fn hold_writers(conn: &mut Conn<'_>) -> Result<(), StoreError> {
    if let Conn::Postgres(c) = conn {
        sqlx::query("SELECT 1 FROM indexer_lease FOR UPDATE")
            .fetch_all(&mut **c)
            .await?;
    }
    Ok(())
}
