//! The window of recent block hashes per chain and contract
//! (`block_hashes`), for reorg detection, and what a reorg does to the rows
//! of the per-log tables above its common ancestor. Written only inside the
//! transaction that writes the data they describe.

use alloy::primitives::B256;
use sqlx::Row;

use super::values::block_ref;
use super::{on, Conn, StoreError};
use crate::domain::{hex32, hex_address, BlockHeader, BlockRef, Scope};

/// Records the hashes of indexed blocks and forgets those older than `keep`
/// blocks below the newest one.
pub async fn record(
    conn: &mut Conn<'_>,
    scope: &Scope,
    blocks: &[BlockHeader],
    keep: u64,
) -> Result<(), StoreError> {
    // One row per number (the last given wins): a multi-row upsert may not
    // touch a row twice on PostgreSQL.
    let unique: std::collections::BTreeMap<u64, &BlockHeader> =
        blocks.iter().map(|b| (b.number, b)).collect();
    let Some(&newest) = unique.keys().next_back() else {
        return Ok(());
    };
    let rows: Vec<&BlockHeader> = unique.into_values().collect();
    let contract = hex_address(&scope.contract);
    on!(conn, |c, d| {
        for chunk in rows.chunks(200) {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO block_hashes
                 (chain_id, contract_address, block_number, block_hash, parent_hash) ",
            );
            q.push_values(chunk, |mut row, b| {
                row.push_bind(scope.chain_id as i64)
                    .push_bind(&contract)
                    .push_bind(b.number as i64)
                    .push_bind(hex32(&b.hash))
                    .push_bind(hex32(&b.parent_hash));
            });
            q.push(
                " ON CONFLICT (chain_id, contract_address, block_number) DO UPDATE SET
                   block_hash = excluded.block_hash, parent_hash = excluded.parent_hash",
            );
            q.build().execute(&mut **c).await?;
        }
        sqlx::query(
            "DELETE FROM block_hashes
             WHERE chain_id = $1 AND contract_address = $2 AND block_number < $3",
        )
        .bind(scope.chain_id as i64)
        .bind(&contract)
        .bind(newest.saturating_sub(keep) as i64)
        .execute(&mut **c)
        .await?;
        Ok(())
    })
}

/// Stored hashes of the blocks at or below `below`, newest first, at most `limit`.
pub async fn recent(
    conn: &mut Conn<'_>,
    scope: &Scope,
    below: u64,
    limit: u64,
) -> Result<Vec<BlockRef>, StoreError> {
    on!(conn, |c, d| {
        let rows = sqlx::query(
            "SELECT block_number, block_hash FROM block_hashes
             WHERE chain_id = $1 AND contract_address = $2 AND block_number <= $3
             ORDER BY block_number DESC LIMIT $4",
        )
        .bind(scope.chain_id as i64)
        .bind(hex_address(&scope.contract))
        .bind(below as i64)
        .bind(limit as i64)
        .fetch_all(&mut **c)
        .await?;
        rows.iter().map(|r| block_ref(r.get(0), r.get(1))).collect()
    })
}

/// Stored hashes of the blocks `from..=to` (those still in the window).
pub async fn hashes_between(
    conn: &mut Conn<'_>,
    scope: &Scope,
    from: u64,
    to: u64,
) -> Result<std::collections::HashMap<u64, B256>, StoreError> {
    on!(conn, |c, d| {
        let rows = sqlx::query(
            "SELECT block_number, block_hash FROM block_hashes
             WHERE chain_id = $1 AND contract_address = $2
               AND block_number >= $3 AND block_number <= $4",
        )
        .bind(scope.chain_id as i64)
        .bind(hex_address(&scope.contract))
        .bind(from as i64)
        .bind(to as i64)
        .fetch_all(&mut **c)
        .await?;
        rows.iter()
            .map(|r| {
                let b = block_ref(r.get(0), r.get(1))?;
                Ok((b.number, b.hash))
            })
            .collect()
    })
}

/// Marks the live rows of `table` (a per-log table of ours with
/// `block_number` and `removed`) above `number` removed: a reorg orphaned
/// them. Returns how many.
pub(super) async fn remove_rows_above(
    conn: &mut Conn<'_>,
    table: &'static str,
    scope: &Scope,
    number: u64,
) -> Result<u64, StoreError> {
    on!(conn, |c, d| {
        Ok(sqlx::query(&format!(
            "UPDATE {table} SET removed = 1
             WHERE chain_id = $1 AND contract_address = $2 AND block_number > $3
               AND removed = 0"
        ))
        .bind(scope.chain_id as i64)
        .bind(hex_address(&scope.contract))
        .bind(number as i64)
        .execute(&mut **c)
        .await?
        .rows_affected())
    })
}

/// Forgets the hashes of blocks above `number` (they were orphaned).
pub async fn forget_above(
    conn: &mut Conn<'_>,
    scope: &Scope,
    number: u64,
) -> Result<(), StoreError> {
    on!(conn, |c, d| {
        sqlx::query(
            "DELETE FROM block_hashes
             WHERE chain_id = $1 AND contract_address = $2 AND block_number > $3",
        )
        .bind(scope.chain_id as i64)
        .bind(hex_address(&scope.contract))
        .bind(number as i64)
        .execute(&mut **c)
        .await?;
        Ok(())
    })
}
