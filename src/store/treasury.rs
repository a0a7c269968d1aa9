//! `treasury_changes`: the contract's `TreasuryUpdated` logs, one row per
//! log, never deleted (a reorg sets `removed`, which undoes the move). They
//! are few (a move is an owner's decision), so they are read whole.

use alloy::primitives::Address;
use sqlx::{QueryBuilder, Row};

use super::values::to_u64;
use super::{on, Conn, StoreError};
use crate::domain::{hex32, hex_address, Scope, TreasuryChange};

/// Stores the moves not stored yet (or revives one a reorg had removed);
/// returns how many it wrote.
pub async fn insert(
    conn: &mut Conn<'_>,
    scope: &Scope,
    changes: &[TreasuryChange],
) -> Result<u64, StoreError> {
    if changes.is_empty() {
        return Ok(0);
    }
    let contract = hex_address(&scope.contract);
    on!(conn, |c, d| {
        let mut q = QueryBuilder::new(
            "INSERT INTO treasury_changes (chain_id, contract_address, tx_hash, log_index,
               block_number, block_hash, old_treasury, new_treasury) ",
        );
        q.push_values(changes, |mut row, t| {
            row.push_bind(scope.chain_id as i64)
                .push_bind(&contract)
                .push_bind(hex32(&t.key.tx_hash))
                .push_bind(t.key.log_index as i64)
                .push_bind(t.block.number as i64)
                .push_bind(hex32(&t.block.hash))
                .push_bind(hex_address(&t.old))
                .push_bind(hex_address(&t.new));
        });
        q.push(
            " ON CONFLICT (chain_id, tx_hash, log_index) DO UPDATE SET
               removed = 0, block_number = excluded.block_number,
               block_hash = excluded.block_hash
             WHERE treasury_changes.removed = 1",
        );
        Ok(q.build().execute(&mut **c).await?.rows_affected())
    })
}

/// Marks the live moves above `number` removed (a reorg orphaned them).
pub async fn remove_above(
    conn: &mut Conn<'_>,
    scope: &Scope,
    number: u64,
) -> Result<u64, StoreError> {
    super::blocks::remove_rows_above(conn, "treasury_changes", scope, number).await
}

/// The live moves in force over blocks `from..=to`, in chain order: the
/// last one before `from` (when there is one) and every one within, as
/// `(block, log index, new treasury)`. By the block index: the cost
/// follows the moves of those blocks, not the history of moves.
pub async fn in_force(
    conn: &mut Conn<'_>,
    scope: &Scope,
    (from, to): (u64, u64),
) -> Result<Vec<(u64, u64, Address)>, StoreError> {
    let rows: Vec<(i64, i64, String)> = on!(conn, |c, _d| {
        let mut rows = Vec::new();
        for sql in [
            // The block first (the index's order, read backwards and
            // stopped at once), then its last move: sorting by block and
            // log index at once reads every earlier move.
            "SELECT block_number, log_index, new_treasury FROM treasury_changes
             WHERE chain_id = $1 AND contract_address = $2 AND removed = 0
               AND block_number = (
                 SELECT block_number FROM treasury_changes
                 WHERE chain_id = $1 AND contract_address = $2 AND block_number < $3
                   AND removed = 0
                 ORDER BY block_number DESC LIMIT 1)
             ORDER BY log_index DESC LIMIT 1",
            "SELECT block_number, log_index, new_treasury FROM treasury_changes
             WHERE chain_id = $1 AND contract_address = $2 AND block_number >= $3
               AND block_number <= $4 AND removed = 0
             ORDER BY block_number, log_index",
        ] {
            let found = sqlx::query(sql)
                .bind(scope.chain_id as i64)
                .bind(hex_address(&scope.contract))
                .bind(from as i64)
                .bind(to as i64)
                .fetch_all(&mut **c)
                .await?;
            rows.extend(found.iter().map(|r| (r.get(0), r.get(1), r.get(2))));
        }
        rows
    });
    rows.into_iter()
        .map(|(b, i, t)| {
            let treasury = t
                .parse()
                .map_err(|_| StoreError::Corrupt("treasury_changes.new_treasury".into()))?;
            Ok((to_u64(b)?, to_u64(i)?, treasury))
        })
        .collect()
}
