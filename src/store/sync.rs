//! The checkpoint and the window of recent block hashes, per chain and
//! contract. Written only inside the transaction that writes the data they
//! describe.

use alloy::primitives::B256;
use sqlx::{Row, SqliteConnection};

use super::{StoreError, NOW};
use crate::domain::{hex32, hex_address, BlockHeader, BlockRef, Scope};

/// The last block whose logs are all stored, or `None` before the first batch.
pub async fn checkpoint(
    conn: &mut SqliteConnection,
    scope: &Scope,
) -> Result<Option<BlockRef>, StoreError> {
    let row = sqlx::query(
        "SELECT block_number, block_hash FROM sync_state
         WHERE chain_id = ? AND contract_address = ?",
    )
    .bind(scope.chain_id as i64)
    .bind(hex_address(&scope.contract))
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| {
        Ok(BlockRef {
            number: to_u64(r.get::<i64, _>(0))?,
            hash: parse_b256(&r.get::<String, _>(1))?,
        })
    })
    .transpose()
}

/// Moves the checkpoint (forwards, or back after a reorg).
pub async fn set_checkpoint(
    conn: &mut SqliteConnection,
    scope: &Scope,
    block: &BlockRef,
) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO sync_state (chain_id, contract_address, block_number, block_hash)
         VALUES (?, ?, ?, ?)
         ON CONFLICT (chain_id, contract_address) DO UPDATE SET
           block_number = excluded.block_number,
           block_hash = excluded.block_hash,
           updated_at = {NOW}"
    ))
    .bind(scope.chain_id as i64)
    .bind(hex_address(&scope.contract))
    .bind(block.number as i64)
    .bind(hex32(&block.hash))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records the hashes of indexed blocks and forgets those older than `keep`
/// blocks below the newest one.
pub async fn record_blocks(
    conn: &mut SqliteConnection,
    scope: &Scope,
    blocks: &[BlockHeader],
    keep: u64,
) -> Result<(), StoreError> {
    let Some(newest) = blocks.iter().map(|b| b.number).max() else {
        return Ok(());
    };
    let contract = hex_address(&scope.contract);
    for chunk in blocks.chunks(200) {
        let mut q = sqlx::QueryBuilder::new(
            "INSERT OR REPLACE INTO block_hashes
             (chain_id, contract_address, block_number, block_hash, parent_hash) ",
        );
        q.push_values(chunk, |mut row, b| {
            row.push_bind(scope.chain_id as i64)
                .push_bind(&contract)
                .push_bind(b.number as i64)
                .push_bind(hex32(&b.hash))
                .push_bind(hex32(&b.parent_hash));
        });
        q.build().execute(&mut *conn).await?;
    }
    sqlx::query(
        "DELETE FROM block_hashes
         WHERE chain_id = ? AND contract_address = ? AND block_number < ?",
    )
    .bind(scope.chain_id as i64)
    .bind(&contract)
    .bind(newest.saturating_sub(keep) as i64)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Stored hashes of the blocks at or below `below`, newest first, at most `limit`.
pub async fn recent_blocks(
    conn: &mut SqliteConnection,
    scope: &Scope,
    below: u64,
    limit: u64,
) -> Result<Vec<BlockRef>, StoreError> {
    let rows = sqlx::query(
        "SELECT block_number, block_hash FROM block_hashes
         WHERE chain_id = ? AND contract_address = ? AND block_number <= ?
         ORDER BY block_number DESC LIMIT ?",
    )
    .bind(scope.chain_id as i64)
    .bind(hex_address(&scope.contract))
    .bind(below as i64)
    .bind(limit as i64)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(BlockRef {
                number: to_u64(r.get::<i64, _>(0))?,
                hash: parse_b256(&r.get::<String, _>(1))?,
            })
        })
        .collect()
}

/// Forgets the hashes of blocks above `number` (they were orphaned).
pub async fn forget_blocks_above(
    conn: &mut SqliteConnection,
    scope: &Scope,
    number: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM block_hashes WHERE chain_id = ? AND contract_address = ? AND block_number > ?",
    )
    .bind(scope.chain_id as i64)
    .bind(hex_address(&scope.contract))
    .bind(number as i64)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(crate) fn parse_b256(text: &str) -> Result<B256, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("not a 32-byte hex value: {text:?}")))
}

pub(crate) fn to_u64(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative block number {value}")))
}
