//! `malformed_logs`: logs of the checkout contract that carry a
//! `PremiumPaid` topic0 but do not decode as either version, kept raw
//! (topics, data, block, tx hash, log index, the decoder's reason), one row
//! per log, never deleted (a reorg sets `removed`). They never touch an
//! order; `status`, `review` and the outbox show them.

use sqlx::{QueryBuilder, Row};

use super::values::{parse_b256, to_u64};
use super::{on, Conn, StoreError};
use crate::domain::{hex32, hex_address, LogKey, Malformed, Scope};

/// Rows per multi-row statement.
const CHUNK: usize = 200;

/// Stores the logs not stored yet (or revives one a reorg had removed);
/// returns the keys it wrote.
pub async fn insert(
    conn: &mut Conn<'_>,
    scope: &Scope,
    logs: &[Malformed],
) -> Result<Vec<LogKey>, StoreError> {
    let contract = hex_address(&scope.contract);
    let mut written = Vec::new();
    for chunk in logs.chunks(CHUNK) {
        let rows = on!(&mut *conn, |c, d| {
            let mut q = QueryBuilder::new(
                "INSERT INTO malformed_logs (chain_id, contract_address, tx_hash, log_index,
                   block_number, block_hash, block_timestamp, topics_json, data, reason,
                   order_ref) ",
            );
            q.push_values(chunk, |mut row, m| {
                let topics: Vec<String> = m.topics.iter().map(hex32).collect();
                row.push_bind(scope.chain_id as i64)
                    .push_bind(&contract)
                    .push_bind(hex32(&m.key.tx_hash))
                    .push_bind(m.key.log_index as i64)
                    .push_bind(m.block.number as i64)
                    .push_bind(hex32(&m.block.hash))
                    .push_bind(m.block_timestamp.map(|t| t as i64))
                    .push_bind(sqlx::types::Json(topics))
                    .push_bind(format!("0x{}", alloy::primitives::hex::encode(&m.data)))
                    .push_bind(&m.reason)
                    .push_bind(m.order_ref().map(|r| hex32(&r)));
            });
            q.push(
                " ON CONFLICT (chain_id, tx_hash, log_index) DO UPDATE SET
                   removed = 0, block_number = excluded.block_number,
                   block_hash = excluded.block_hash
                 WHERE malformed_logs.removed = 1
                 RETURNING tx_hash, log_index",
            );
            let rows = q.build().fetch_all(&mut **c).await?;
            rows.iter()
                .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
                .collect::<Vec<_>>()
        });
        for (tx, index) in rows {
            written.push(LogKey {
                tx_hash: parse_b256(&tx)?,
                log_index: to_u64(index)?,
            });
        }
    }
    Ok(written)
}

/// Marks the live rows above `number` removed (a reorg orphaned them).
pub async fn remove_above(
    conn: &mut Conn<'_>,
    scope: &Scope,
    number: u64,
) -> Result<u64, StoreError> {
    super::blocks::remove_rows_above(conn, "malformed_logs", scope, number).await
}

/// Live malformed logs of `scope`.
pub async fn live_count(conn: &mut Conn<'_>, scope: &Scope) -> Result<i64, StoreError> {
    on!(conn, |c, d| {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM malformed_logs
             WHERE chain_id = $1 AND contract_address = $2 AND removed = 0",
        )
        .bind(scope.chain_id as i64)
        .bind(hex_address(&scope.contract))
        .fetch_one(&mut **c)
        .await?)
    })
}
