//! The checkpoint, per chain and contract: the last block whose logs are all
//! stored (`sync_state`). Written only inside the transaction that writes
//! the data it describes.

use sqlx::Row;

use super::values::block_ref;
use super::{on, Conn, StoreError};
use crate::domain::{hex32, hex_address, BlockRef, Scope};

/// The last block whose logs are all stored, or `None` before the first batch.
pub async fn read(conn: &mut Conn<'_>, scope: &Scope) -> Result<Option<BlockRef>, StoreError> {
    on!(conn, |c, d| {
        let row = sqlx::query(
            "SELECT block_number, block_hash FROM sync_state
             WHERE chain_id = $1 AND contract_address = $2",
        )
        .bind(scope.chain_id as i64)
        .bind(hex_address(&scope.contract))
        .fetch_optional(&mut **c)
        .await?;
        row.map(|r| block_ref(r.get(0), r.get(1))).transpose()
    })
}

/// Moves the checkpoint from `from`, where this writer's last commit left
/// it, to `to`; `None`: from wherever it is (a term's first batch on an
/// empty database, a back-fill's re-scan). When the stored checkpoint is
/// not at `from`, fails with [`StoreError::CheckpointMoved`] and moves
/// nothing: the database lost commits it had acknowledged (a failover to
/// a replica that was behind, say), and a writer going on from its own
/// idea of the checkpoint would never store the blocks in between.
pub async fn advance(
    conn: &mut Conn<'_>,
    scope: &Scope,
    from: Option<&BlockRef>,
    to: &BlockRef,
) -> Result<(), StoreError> {
    let Some(from) = from else {
        return set(conn, scope, to).await;
    };
    let moved = on!(conn, |c, d| {
        let done = sqlx::query(&format!(
            "UPDATE sync_state SET block_number = $3, block_hash = $4, updated_at = {}
             WHERE chain_id = $1 AND contract_address = $2
               AND block_number = $5 AND block_hash = $6",
            d.now
        ))
        .bind(scope.chain_id as i64)
        .bind(hex_address(&scope.contract))
        .bind(to.number as i64)
        .bind(hex32(&to.hash))
        .bind(from.number as i64)
        .bind(hex32(&from.hash))
        .execute(&mut **c)
        .await?;
        Ok::<_, StoreError>(done.rows_affected() == 1)
    })?;
    if moved {
        return Ok(());
    }
    let found = read(conn, scope).await?;
    Err(StoreError::CheckpointMoved {
        expected: from.number,
        found: found.map(|b| b.number),
    })
}

/// Moves the checkpoint (forwards, or back after a reorg).
pub async fn set(conn: &mut Conn<'_>, scope: &Scope, block: &BlockRef) -> Result<(), StoreError> {
    upsert(conn, scope, block, "").await
}

/// Moves the checkpoint up to `block` if it is below it (a backfill's
/// re-scan put it back); never down.
pub async fn raise(conn: &mut Conn<'_>, scope: &Scope, block: &BlockRef) -> Result<(), StoreError> {
    upsert(
        conn,
        scope,
        block,
        "WHERE sync_state.block_number < excluded.block_number",
    )
    .await
}

/// The checkpoint row for `scope` set to `block`, when `only` (a `WHERE`
/// on the stored row, or nothing) allows.
async fn upsert(
    conn: &mut Conn<'_>,
    scope: &Scope,
    block: &BlockRef,
    only: &str,
) -> Result<(), StoreError> {
    on!(conn, |c, d| {
        sqlx::query(&format!(
            "INSERT INTO sync_state (chain_id, contract_address, block_number, block_hash)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (chain_id, contract_address) DO UPDATE SET
               block_number = excluded.block_number,
               block_hash = excluded.block_hash,
               updated_at = {}
             {only}",
            d.now
        ))
        .bind(scope.chain_id as i64)
        .bind(hex_address(&scope.contract))
        .bind(block.number as i64)
        .bind(hex32(&block.hash))
        .execute(&mut **c)
        .await?;
        Ok(())
    })
}
