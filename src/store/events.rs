//! `contract_events`: one row per `PremiumPaid` log, inserted idempotently on
//! `(chain_id, tx_hash, log_index)`, never deleted (a reorg sets `removed`).

use std::collections::HashSet;

use alloy::primitives::{Address, B256, U256};
use sqlx::types::Json;
use sqlx::{FromRow, QueryBuilder, Row};

use super::values::{parse_b256, to_u64};
use super::{on, Conn, StoreError};
use crate::domain::{
    hex32, hex_address, Amount, BlockRef, Destination, EventVersion, LogKey, MatchStatus, Payment,
    Scope,
};

/// Rows per multi-row statement: well under SQLite's bound-variable limit.
pub(super) const CHUNK: usize = 400;

/// An event to write, with the outcome reconciliation gave it.
#[derive(Debug)]
pub struct NewEvent<'a> {
    pub payment: &'a Payment,
    pub status: MatchStatus,
    /// The order this event paid, when it paid one.
    pub order_id: Option<&'a str>,
}

/// `WITH k(tx_hash, log_index) AS (VALUES …)`: log keys as a relation to
/// drive a join on the unique key `(chain_id, tx_hash, log_index)` (a
/// row-value `IN (VALUES …)` is planned on SQLite as a search by chain or
/// contract alone: a scan of the history). The keys are the chain's
/// hashes and indexes printed by us (hex, integers): safe inline.
pub(super) fn keys_relation(keys: &[LogKey]) -> String {
    let rows: Vec<String> = keys
        .iter()
        .map(|k| format!("('{}', {})", hex32(&k.tx_hash), k.log_index))
        .collect();
    format!(
        "WITH k(tx_hash, log_index) AS (VALUES {}) ",
        rows.join(", ")
    )
}

/// Which of `keys` are already stored and live (not removed): by the
/// unique key, so the cost follows the keys, not the history.
pub async fn live_keys(
    conn: &mut Conn<'_>,
    scope: &Scope,
    keys: &[LogKey],
) -> Result<HashSet<LogKey>, StoreError> {
    let mut found = HashSet::new();
    for chunk in keys.chunks(CHUNK) {
        let sql = format!(
            "{keys}SELECT ce.tx_hash, ce.log_index FROM k {{join}} contract_events ce
               ON ce.chain_id = $1 AND ce.tx_hash = k.tx_hash AND ce.log_index = k.log_index
             WHERE ce.removed = 0",
            keys = keys_relation(chunk)
        );
        on!(&mut *conn, |c, d| {
            let sql = sql.replace("{join}", d.ordered_join);
            let rows = sqlx::query(&sql)
                .bind(scope.chain_id as i64)
                .fetch_all(&mut **c)
                .await?;
            for row in rows {
                found.insert(LogKey {
                    tx_hash: parse_b256(&row.get::<String, _>(0))?,
                    log_index: to_u64(row.get::<i64, _>(1))?,
                });
            }
        });
    }
    Ok(found)
}

/// Inserts new events, or revives a row a reorg had removed (same log
/// re-included); returns how many rows were written.
pub async fn upsert(
    conn: &mut Conn<'_>,
    scope: &Scope,
    events: &[NewEvent<'_>],
) -> Result<u64, StoreError> {
    let contract = hex_address(&scope.contract);
    let mut written = 0;
    for chunk in events.chunks(CHUNK) {
        written += on!(&mut *conn, |c, d| {
            let mut q = QueryBuilder::new(
                "INSERT INTO contract_events (chain_id, contract_address, tx_hash, log_index,
               block_number, block_hash, block_timestamp, event_name, event_version, order_ref,
               payer, amount_usdc, amount_raw, amount_overflow, quote_hash, args_json, order_id,
               match_status) ",
            );
            q.push_values(chunk, |mut row, ev| {
                let p = ev.payment;
                let micro = p.amount.micro_usdc();
                row.push_bind(scope.chain_id as i64)
                    .push_bind(&contract)
                    .push_bind(hex32(&p.key.tx_hash))
                    .push_bind(p.key.log_index as i64)
                    .push_bind(p.block.number as i64)
                    .push_bind(hex32(&p.block.hash))
                    .push_bind(p.block_timestamp.map(|t| t as i64))
                    .push_bind("PremiumPaid")
                    .push_bind(p.version.number())
                    .push_bind(hex32(&p.order_ref))
                    .push_bind(hex_address(&p.payer))
                    .push_bind(micro)
                    .push_bind(p.amount.decimal())
                    .push_bind(i64::from(micro.is_none()))
                    .push_bind(hex32(&p.quote_hash))
                    .push_bind(Json(p.args_json()))
                    .push_bind(ev.order_id)
                    .push_bind(ev.status.as_str());
            });
            q.push(format!(
                " ON CONFLICT (chain_id, tx_hash, log_index) DO UPDATE SET
               removed = 0, block_number = excluded.block_number,
               block_hash = excluded.block_hash, block_timestamp = excluded.block_timestamp,
               order_id = excluded.order_id, match_status = excluded.match_status,
               verification = NULL, verification_detail = NULL, verified_at = NULL,
               updated_at = {}
             WHERE contract_events.removed = 1",
                d.now
            ));
            q.build().execute(&mut **c).await?.rows_affected()
        });
    }
    Ok(written)
}

/// Whether a person settled event `ce` (1) or not (0): a lookup by the
/// event's id for each event, as a correlated count (an `EXISTS` may be
/// planned on PostgreSQL as a hash of every resolution ever made).
const SETTLED: &str = "(SELECT COUNT(*) FROM payment_resolutions r WHERE r.event_id = ce.id)";

/// An event the late-match queue (`late_matches`) holds: queued by the
/// trigger on `orders` when an order arrived after its payment.
#[derive(Debug)]
pub struct Queued {
    pub event_id: i64,
    pub payment: Payment,
    /// Still live, still `unknown_order`, and not settled by a person: the
    /// only events late matching may change. The others leave the queue
    /// untouched.
    pub waiting: bool,
}

/// Up to `limit` events of the late-match queue, the first stored first,
/// returned in chain order. The queue holds only the events whose order
/// arrived late, so the cost follows the late orders, never the history of
/// `unknown_order` events (ordered by the queue's key, not the event's
/// block: an order the block index serves would invite a plan that walks
/// the contract's events).
pub async fn queued_late(
    conn: &mut Conn<'_>,
    scope: &Scope,
    limit: u32,
) -> Result<Vec<Queued>, StoreError> {
    on!(conn, |c, d| {
        let rows = sqlx::query(&format!(
            "SELECT ce.id, {PAYMENT_COLUMNS},
                    CASE WHEN ce.match_status = 'unknown_order' AND ce.removed = 0
                          AND {SETTLED} = 0
                         THEN 1 ELSE 0 END AS waiting
             FROM late_matches l {join} contract_events ce ON ce.id = l.event_id
             WHERE ce.chain_id = $1 AND ce.contract_address = $2
             ORDER BY l.event_id LIMIT $3",
            join = d.ordered_join,
        ))
        .bind(scope.chain_id as i64)
        .bind(hex_address(&scope.contract))
        .bind(i64::from(limit))
        .fetch_all(&mut **c)
        .await?;
        let mut queued = rows
            .iter()
            .map(|r| {
                Ok(Queued {
                    event_id: r.get("id"),
                    payment: payment_from_row(PaymentRow::from_row(r)?, scope.contract)?,
                    waiting: r.get::<i32, _>("waiting") == 1,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        queued.sort_by_key(|q| (q.payment.block.number, q.payment.key.log_index));
        Ok(queued)
    })
}

/// Takes events off the late-match queue (looked at: matched, or no longer
/// waiting).
pub async fn dequeue_late(conn: &mut Conn<'_>, event_ids: &[i64]) -> Result<(), StoreError> {
    delete_ids(conn, "late_matches", "event_id", event_ids).await?;
    Ok(())
}

/// Deletes the rows of `table` whose `column` is one of `ids`, a chunk a
/// statement (each a lookup by that key); returns how many. `table` and
/// `column` are ours, never input.
pub(super) async fn delete_ids(
    conn: &mut Conn<'_>,
    table: &str,
    column: &str,
    ids: &[i64],
) -> Result<u64, StoreError> {
    let mut deleted = 0;
    for chunk in ids.chunks(CHUNK) {
        deleted += on!(&mut *conn, |c, _d| {
            let mut q = QueryBuilder::new(format!("DELETE FROM {table} WHERE {column} IN ("));
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            q.push(")");
            q.build().execute(&mut **c).await?.rows_affected()
        });
    }
    Ok(deleted)
}

/// The live, unsettled `unknown_order` events naming one of `order_refs`
/// that the late-match queue does not hold (the pending-order sweep's
/// safety net: on PostgreSQL an order committed while its payment's
/// transaction ran is seen by neither that transaction nor the order's
/// trigger). By the partial index of unknown-order events.
pub async fn unqueued_for(
    conn: &mut Conn<'_>,
    scope: &Scope,
    order_refs: &[B256],
) -> Result<Vec<i64>, StoreError> {
    let mut ids = Vec::new();
    for chunk in order_refs.chunks(CHUNK) {
        on!(&mut *conn, |c, d| {
            let mut q = QueryBuilder::new(format!(
                "SELECT ce.id FROM contract_events ce{}
                 WHERE ce.match_status = 'unknown_order' AND ce.removed = 0
                   AND {SETTLED} = 0
                   AND NOT EXISTS (SELECT 1 FROM late_matches l WHERE l.event_id = ce.id)
                   AND ce.chain_id = ",
                d.indexed_by("idx_contract_events_unknown")
            ));
            q.push_bind(scope.chain_id as i64)
                .push(" AND ce.contract_address = ")
                .push_bind(hex_address(&scope.contract))
                .push(" AND ce.order_ref IN (");
            let mut refs = q.separated(", ");
            for r in chunk {
                refs.push_bind(hex32(r));
            }
            q.push(")");
            let rows = q.build().fetch_all(&mut **c).await?;
            ids.extend(rows.iter().map(|r| r.get::<i64, _>(0)));
            Ok::<_, StoreError>(())
        })?;
    }
    Ok(ids)
}

/// Puts events on the late-match queue (see [`unqueued_for`]).
pub async fn queue_late(conn: &mut Conn<'_>, event_ids: &[i64]) -> Result<(), StoreError> {
    for chunk in event_ids.chunks(CHUNK) {
        on!(&mut *conn, |c, _d| {
            let mut q = QueryBuilder::new("INSERT INTO late_matches (event_id) ");
            q.push_values(chunk, |mut row, id| {
                row.push_bind(*id);
            });
            q.push(" ON CONFLICT (event_id) DO NOTHING");
            q.build().execute(&mut **c).await?;
            Ok::<_, StoreError>(())
        })?;
    }
    Ok(())
}

/// The live events of blocks `from..=to`, in block order (the `audit`
/// command's comparison with what the chain holds). By the block index, so
/// its cost follows the range.
pub async fn live_in_range(
    conn: &mut Conn<'_>,
    scope: &Scope,
    from: u64,
    to: u64,
) -> Result<Vec<Payment>, StoreError> {
    on!(conn, |c, d| {
        let rows = sqlx::query(&format!(
            "SELECT {PAYMENT_COLUMNS} FROM contract_events ce
             WHERE ce.chain_id = $1 AND ce.contract_address = $2
               AND ce.block_number >= $3 AND ce.block_number <= $4 AND ce.removed = 0
             ORDER BY ce.block_number, ce.log_index"
        ))
        .bind(scope.chain_id as i64)
        .bind(hex_address(&scope.contract))
        .bind(from as i64)
        .bind(to as i64)
        .fetch_all(&mut **c)
        .await?;
        rows.iter()
            .map(|r| payment_from_row(PaymentRow::from_row(r)?, scope.contract))
            .collect()
    })
}

/// Records a new outcome for a stored event (late matching).
pub async fn set_outcome(
    conn: &mut Conn<'_>,
    event_id: i64,
    status: MatchStatus,
    order_id: Option<&str>,
) -> Result<(), StoreError> {
    on!(conn, |c, d| {
        sqlx::query(&format!(
            "UPDATE contract_events SET match_status = $1, order_id = $2, updated_at = {}
             WHERE id = $3",
            d.now
        ))
        .bind(status.as_str())
        .bind(order_id)
        .bind(event_id)
        .execute(&mut **c)
        .await?;
        Ok(())
    })
}

/// A live event removed by a reorg.
#[derive(Debug)]
pub struct Removed {
    pub event_id: i64,
    pub order_id: Option<String>,
    pub block_number: u64,
}

/// Marks every live event above `number` as removed; returns them.
pub async fn remove_above(
    conn: &mut Conn<'_>,
    scope: &Scope,
    number: u64,
) -> Result<Vec<Removed>, StoreError> {
    on!(conn, |c, d| {
        let rows = sqlx::query(&format!(
            "UPDATE contract_events SET removed = 1, updated_at = {}
             WHERE chain_id = $1 AND contract_address = $2 AND block_number > $3
               AND removed = 0
             RETURNING id, order_id, block_number",
            d.now
        ))
        .bind(scope.chain_id as i64)
        .bind(hex_address(&scope.contract))
        .bind(number as i64)
        .fetch_all(&mut **c)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Removed {
                    event_id: r.get(0),
                    order_id: r.get(1),
                    block_number: to_u64(r.get::<i64, _>(2))?,
                })
            })
            .collect()
    })
}

/// The columns of `contract_events ce` that [`payment_from_row`] reads.
pub(super) const PAYMENT_COLUMNS: &str = "ce.tx_hash, ce.log_index, ce.block_number,
    ce.block_hash, ce.block_timestamp, CAST(ce.event_version AS BIGINT) AS event_version,
    ce.order_ref, ce.payer, ce.amount_raw, ce.quote_hash, ce.args_json";

/// The columns [`PAYMENT_COLUMNS`] selects, as both drivers decode them.
#[derive(Debug, FromRow)]
pub(super) struct PaymentRow {
    tx_hash: String,
    log_index: i64,
    block_number: i64,
    block_hash: String,
    block_timestamp: Option<i64>,
    event_version: i64,
    order_ref: String,
    payer: String,
    amount_raw: String,
    quote_hash: String,
    args_json: Json<serde_json::Value>,
}

/// The payment in a row selecting [`PAYMENT_COLUMNS`].
pub(super) fn payment_from_row(r: PaymentRow, contract: Address) -> Result<Payment, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("contract_events.{what}"));
    let version = match r.event_version {
        1 => EventVersion::V1,
        2 => EventVersion::V2,
        _ => return Err(corrupt("event_version")),
    };
    let amount: U256 = r.amount_raw.parse().map_err(|_| corrupt("amount_raw"))?;
    let destination = match version {
        EventVersion::V1 => None,
        EventVersion::V2 => {
            let args = &r.args_json.0;
            let field = |name: &str| args[name].as_str().ok_or_else(|| corrupt("args_json"));
            Some(Destination {
                token: field("token")?
                    .parse()
                    .map_err(|_| corrupt("args_json.token"))?,
                treasury: field("treasury")?
                    .parse()
                    .map_err(|_| corrupt("args_json.treasury"))?,
                chain_id: field("chainId")?
                    .parse()
                    .map_err(|_| corrupt("args_json.chainId"))?,
                timestamp: field("timestamp")?
                    .parse()
                    .map_err(|_| corrupt("args_json.timestamp"))?,
            })
        }
    };
    Ok(Payment {
        key: LogKey {
            tx_hash: parse_b256(&r.tx_hash)?,
            log_index: to_u64(r.log_index)?,
        },
        contract,
        block: BlockRef {
            number: to_u64(r.block_number)?,
            hash: parse_b256(&r.block_hash)?,
        },
        block_timestamp: r.block_timestamp.map(to_u64).transpose()?,
        version,
        order_ref: parse_b256(&r.order_ref)?,
        payer: r.payer.parse().map_err(|_| corrupt("payer"))?,
        amount: Amount(amount),
        quote_hash: parse_b256(&r.quote_hash)?,
        destination,
    })
}
