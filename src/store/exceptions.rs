//! Payments that need a person: what `review` lists, how `resolve` settles
//! one (an audit row and an outbox row with the change, in one
//! transaction), and the reads of `order`'s timeline.
//!
//! An exception is a live non-`matched` event (underpaid, overpaid,
//! payer_mismatch, late_payment, wrong_destination, duplicate_payment,
//! unknown_order) with no manual resolution recorded for it (an
//! `order_audit` row with `reason = 'manual'` naming the event), or an
//! order whose `payment_status` is `reversed` (a deep reorg took back a
//! final payment). A resolution settles one exception: it never closes
//! another event of the same order, and it changes the order only when the
//! event could have paid it (an event beside the order's own payment, a
//! duplicate, leaves the order as it is). It must not decide who may
//! resolve: the caller names the actor.

use serde::Serialize;

use super::{on, outbox, Conn, Dialect, StoreError};

/// What a person may turn an exception into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Accepted as payment: `paid` / `paid`.
    Paid,
    /// The money went back to the payer: `refunded` / `refunded`.
    Refunded,
    /// The order is dropped: `cancelled` / `failed`.
    Void,
}

impl Resolution {
    /// The order's (status, payment_status) after the resolution.
    pub fn states(self) -> (&'static str, &'static str) {
        match self {
            Self::Paid => ("paid", "paid"),
            Self::Refunded => ("refunded", "refunded"),
            Self::Void => ("cancelled", "failed"),
        }
    }
}

/// The condition "the event `ce` still needs a person".
const EVENT_OPEN: &str = "ce.removed = 0 AND ce.match_status <> 'matched'
    AND NOT EXISTS (SELECT 1 FROM order_audit m WHERE m.event_id = ce.id
                    AND m.reason = 'manual')
    AND NOT EXISTS (SELECT 1 FROM payment_resolutions r WHERE r.event_id = ce.id)";

/// What a person names to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// An order: its reversal, or its one open exception.
    Order(String),
    /// A payment, as `chain:tx:log_index` (`tx` lower-case hex).
    Event {
        chain_id: i64,
        tx_hash: String,
        log_index: i64,
    },
}

/// The actor of the indexer's own audit rows (the column's default): a
/// person resolving an exception may not sign as the indexer.
pub const INDEXER_ACTOR: &str = "indexer";

/// How a resolution attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// No such order, or no such event.
    NotFound,
    /// The event pays no order (`unknown_order`), and `paid` was asked:
    /// only `refunded` or `void` settle it.
    NoOrder { order_ref: String },
    /// A payment that pays no order, settled before: nothing written.
    Settled,
    /// Written: a payment that pays no order, settled (its resolution row
    /// and notification).
    SettledNow { resolution: &'static str },
    /// `paid` asked for a reversed order with no payment named, or from a
    /// payment whose amount is unknown (it overflowed): the order would be
    /// paid with no payment recorded; nothing written.
    PaidWithoutPayment,
    /// Nothing about it needs a person; nothing was written.
    Refused {
        status: String,
        payment_status: String,
    },
    /// The order has several open exceptions: name one (`CHAIN:TX:LOG`).
    Ambiguous { events: Vec<String> },
    /// Written: the audit row and its notification.
    Done {
        order_id: String,
        from: (String, String),
        to: (String, String),
    },
}

/// The order an exception is about, locked until commit (PostgreSQL;
/// SQLite's write lock is held already), so the indexer cannot change it
/// between this read and the update, and the audit rows' numbering
/// (`outbox`) stays one sequence.
#[derive(sqlx::FromRow)]
struct Locked {
    id: String,
    order_ref: String,
    status: String,
    payment_status: String,
    paid_tx_hash: Option<String>,
}

async fn lock_order(
    conn: &mut Conn<'_>,
    column: &str,
    value: &str,
) -> Result<Option<Locked>, StoreError> {
    on!(conn, |c, d| {
        let sql = format!(
            "SELECT id, order_ref, status, payment_status, paid_tx_hash FROM orders
             WHERE {column} = $1{lock}",
            lock = d.lock_rows
        );
        Ok(sqlx::query_as(&sql)
            .bind(value)
            .fetch_optional(&mut **c)
            .await?)
    })
}

/// The open exceptions among the events carrying `order_ref`: (id,
/// `chain:tx:log_index`, match_status).
async fn open_events(
    conn: &mut Conn<'_>,
    order_ref: &str,
) -> Result<Vec<(i64, String, String)>, StoreError> {
    let rows: Vec<(i64, i64, String, i64, String)> = on!(conn, |c, d| {
        let sql = format!(
            "SELECT ce.id, ce.chain_id, ce.tx_hash, ce.log_index, ce.match_status
             FROM contract_events ce WHERE ce.order_ref = $1 AND {EVENT_OPEN} ORDER BY ce.id"
        );
        sqlx::query_as(&sql)
            .bind(order_ref)
            .fetch_all(&mut **c)
            .await?
    });
    Ok(rows
        .into_iter()
        .map(|(id, chain, tx, log, status)| (id, format!("{chain}:{tx}:{log}"), status))
        .collect())
}

/// Resolves `subject` as `to`, inside the caller's transaction, when it is
/// an exception; writes nothing otherwise.
///
/// An event on an order that another log pays (`paid_tx_hash` set: a
/// duplicate, an overpayment beside it) is closed with the order left as
/// it is. Otherwise the order takes `to`'s states, and `paid` from an event
/// also takes the event's payment (`paid_*`).
pub async fn resolve(
    conn: &mut Conn<'_>,
    subject: &Subject,
    to: Resolution,
    actor: &str,
    note: &str,
) -> Result<Resolved, StoreError> {
    super::lease::hold_writers(conn).await?;
    let mark = outbox::mark(conn).await?;
    let (order, event) = match subject {
        Subject::Order(id) => {
            let Some(order) = lock_order(conn, "id", id).await? else {
                return Ok(Resolved::NotFound);
            };
            if order.payment_status == "reversed" {
                if to == Resolution::Paid {
                    return Ok(Resolved::PaidWithoutPayment);
                }
                (order, None)
            } else {
                let open = open_events(conn, &order.order_ref).await?;
                match open.as_slice() {
                    [] => {
                        return Ok(Resolved::Refused {
                            status: order.status,
                            payment_status: order.payment_status,
                        })
                    }
                    [(id, _, _)] => {
                        let id = *id;
                        (order, Some(id))
                    }
                    many => {
                        return Ok(Resolved::Ambiguous {
                            events: many
                                .iter()
                                .map(|(_, name, s)| format!("{name} ({s})"))
                                .collect(),
                        })
                    }
                }
            }
        }
        Subject::Event {
            chain_id,
            tx_hash,
            log_index,
        } => {
            let found: Option<(i64, String, i64)> = on!(&mut *conn, |c, d| {
                let sql = format!(
                    "SELECT ce.id, ce.order_ref,
                       CAST(CASE WHEN {EVENT_OPEN} THEN 1 ELSE 0 END AS BIGINT)
                     FROM contract_events ce
                     WHERE ce.chain_id = $1 AND ce.tx_hash = $2 AND ce.log_index = $3"
                );
                sqlx::query_as(&sql)
                    .bind(chain_id)
                    .bind(tx_hash.to_ascii_lowercase())
                    .bind(log_index)
                    .fetch_optional(&mut **c)
                    .await?
            });
            let Some((event_id, order_ref, open)) = found else {
                return Ok(Resolved::NotFound);
            };
            let Some(order) = lock_order(conn, "order_ref", &order_ref).await? else {
                if open == 0 {
                    return Ok(Resolved::Settled);
                }
                return settle_orderless(conn, event_id, order_ref, to, actor, note).await;
            };
            if open == 0 {
                return Ok(Resolved::Refused {
                    status: order.status,
                    payment_status: order.payment_status,
                });
            }
            (order, Some(event_id))
        }
    };
    let from = (order.status.clone(), order.payment_status.clone());
    // Beside the order's own payment: the order stays as it is.
    let beside = event.is_some() && order.paid_tx_hash.is_some();
    // Paid from a payment whose amount overflowed: the order's paid_*
    // columns would stay empty, a paid order with no payment recorded.
    if let (Resolution::Paid, Some(id), false) = (to, event, beside) {
        let unknown: i64 = on!(&mut *conn, |c, d| {
            sqlx::query_scalar(
                "SELECT CAST(CASE WHEN amount_usdc IS NULL THEN 1 ELSE 0 END AS BIGINT)
                 FROM contract_events WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&mut **c)
            .await?
        });
        if unknown == 1 {
            return Ok(Resolved::PaidWithoutPayment);
        }
    }
    let to_states = if beside {
        from.clone()
    } else {
        let (s, p) = to.states();
        (s.to_owned(), p.to_owned())
    };
    on!(&mut *conn, |c, d| {
        sqlx::query(
            "INSERT INTO order_audit (order_id, event_id, actor, reason, note, from_status,
               to_status, from_payment_status, to_payment_status)
             VALUES ($1, $2, $3, 'manual', $4, $5, $6, $7, $8)",
        )
        .bind(&order.id)
        .bind(event)
        .bind(actor)
        .bind(note)
        .bind(&from.0)
        .bind(&to_states.0)
        .bind(&from.1)
        .bind(&to_states.1)
        .execute(&mut **c)
        .await?;
    });
    if !beside {
        update_order(conn, &order.id, &to_states, to, event).await?;
    }
    outbox::announce_audit(conn, mark).await?;
    super::notify::changed(conn, None).await?;
    Ok(Resolved::Done {
        order_id: order.id,
        from,
        to: to_states,
    })
}

/// Settles a payment that pays no order: a `payment_resolutions` row and
/// its `payment.resolved` notification; `paid` is refused (there is no
/// order to be paid).
async fn settle_orderless(
    conn: &mut Conn<'_>,
    event_id: i64,
    order_ref: String,
    to: Resolution,
    actor: &str,
    note: &str,
) -> Result<Resolved, StoreError> {
    let resolution = match to {
        Resolution::Paid => return Ok(Resolved::NoOrder { order_ref }),
        Resolution::Refunded => "refunded",
        Resolution::Void => "void",
    };
    on!(conn, |c, d| {
        sqlx::query(
            "INSERT INTO payment_resolutions (event_id, resolution, actor, note)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(event_id)
        .bind(resolution)
        .bind(actor)
        .bind(note)
        .execute(&mut **c)
        .await?;
    });
    outbox::announce_settled(conn, event_id).await?;
    super::notify::changed(conn, None).await?;
    Ok(Resolved::SettledNow { resolution })
}

/// Sets the order's states, and with `paid` from an event its payment.
async fn update_order(
    conn: &mut Conn<'_>,
    order_id: &str,
    (status, payment_status): &(String, String),
    to: Resolution,
    event: Option<i64>,
) -> Result<(), StoreError> {
    on!(conn, |c, d| {
        let paid = match (to, event) {
            // The paid_* columns are set together: all NULL when the
            // event's amount is unknown.
            (Resolution::Paid, Some(_)) => format!(
                ", paid_tx_hash = (SELECT tx_hash FROM contract_events WHERE id = $4 AND amount_usdc IS NOT NULL),
                 paid_log_index = (SELECT log_index FROM contract_events WHERE id = $4 AND amount_usdc IS NOT NULL),
                 paid_block_number = (SELECT block_number FROM contract_events WHERE id = $4 AND amount_usdc IS NOT NULL),
                 paid_amount_usdc = (SELECT amount_usdc FROM contract_events WHERE id = $4),
                 paid_at = {now}",
                now = d.now
            ),
            _ => String::new(),
        };
        let sql = format!(
            "UPDATE orders SET status = $1, payment_status = $2, updated_at = {now}{paid}
             WHERE id = $3",
            now = d.now
        );
        let mut q = sqlx::query(&sql)
            .bind(status)
            .bind(payment_status)
            .bind(order_id);
        if !paid.is_empty() {
            q = q.bind(event);
        }
        q.execute(&mut **c).await?;
        Ok(())
    })
}

/// One thing `review` lists.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Review {
    /// When it started needing a person (ISO-8601 UTC).
    pub since: String,
    /// The event's `match_status`, or `reversed` for a reversed order.
    pub reason: String,
    pub order_id: Option<String>,
    pub chain_id: Option<i64>,
    pub tx_hash: Option<String>,
    pub log_index: Option<i64>,
    pub block_number: Option<i64>,
    pub amount_usdc: Option<i64>,
    pub premium_usdc: Option<i64>,
}

/// Everything that needs a person, oldest first.
pub async fn review(conn: &mut Conn<'_>) -> Result<Vec<Review>, StoreError> {
    on!(conn, |c, d| {
        let sql = format!(
            "SELECT {ev_since} AS since, ce.match_status AS reason, o.id AS order_id,
                ce.chain_id, ce.tx_hash, ce.log_index, ce.block_number, ce.amount_usdc,
                o.premium_usdc
             FROM contract_events ce LEFT JOIN orders o ON o.order_ref = ce.order_ref
             WHERE {EVENT_OPEN}
             UNION ALL
             SELECT {o_since}, 'reversed', o.id, NULL, NULL, NULL, NULL, NULL, o.premium_usdc
             FROM orders o WHERE o.payment_status = 'reversed'
             UNION ALL
             SELECT {m_since}, 'malformed', o.id, m.chain_id, m.tx_hash, m.log_index,
                m.block_number, NULL, o.premium_usdc
             FROM malformed_logs m LEFT JOIN orders o ON o.order_ref = m.order_ref
             WHERE m.removed = 0
             ORDER BY 1, 3",
            ev_since = d.to_iso("ce.indexed_at"),
            o_since = d.to_iso("o.updated_at"),
            m_since = d.to_iso("m.created_at"),
        );
        Ok(sqlx::query_as(&sql).fetch_all(&mut **c).await?)
    })
}

/// An order as `order` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct OrderView {
    pub id: String,
    pub order_ref: String,
    pub wallet_address: String,
    pub premium_usdc: i64,
    pub status: String,
    pub payment_status: String,
    pub created_at: String,
    pub updated_at: String,
    pub paid_tx_hash: Option<String>,
    pub paid_log_index: Option<i64>,
    pub paid_block_number: Option<i64>,
    pub paid_amount_usdc: Option<i64>,
}

/// An event that touched an order (paid it, or carries its `order_ref`).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct EventView {
    pub indexed_at: String,
    pub chain_id: i64,
    pub tx_hash: String,
    pub log_index: i64,
    pub block_number: i64,
    pub payer: String,
    pub amount_usdc: Option<i64>,
    pub match_status: String,
    pub removed: i64,
}

/// One `order_audit` row.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct AuditView {
    pub created_at: String,
    pub actor: String,
    pub reason: String,
    pub note: Option<String>,
    pub from_status: String,
    pub to_status: String,
    pub from_payment_status: String,
    pub to_payment_status: String,
}

/// The order, its events, its audit rows and its notifications.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    pub order: OrderView,
    pub events: Vec<EventView>,
    pub audit: Vec<AuditView>,
    pub notifications: Vec<outbox::Notification>,
}

fn order_columns(d: &Dialect) -> String {
    format!(
        "id, order_ref, wallet_address, premium_usdc, status, payment_status,
         {} AS created_at, {} AS updated_at, paid_tx_hash, paid_log_index,
         paid_block_number, paid_amount_usdc",
        d.to_iso("created_at"),
        d.to_iso("updated_at")
    )
}

/// The timeline of `order_id`, each part in time order; `None` when there
/// is no such order.
pub async fn timeline(conn: &mut Conn<'_>, order_id: &str) -> Result<Option<Timeline>, StoreError> {
    let order: Option<OrderView> = on!(&mut *conn, |c, d| {
        let sql = format!("SELECT {} FROM orders WHERE id = $1", order_columns(d));
        sqlx::query_as(&sql)
            .bind(order_id)
            .fetch_optional(&mut **c)
            .await?
    });
    let Some(order) = order else {
        return Ok(None);
    };
    let (events, audit) = on!(&mut *conn, |c, d| {
        // The events that paid it (a matched event always has its order_id),
        // and those naming its ref that did not (idx_contract_events_unmatched_ref).
        let events: Vec<EventView> = sqlx::query_as(&format!(
            "SELECT {} AS indexed_at, chain_id, tx_hash, log_index, block_number, payer,
                amount_usdc, match_status, CAST(removed AS BIGINT) AS removed
             FROM contract_events
             WHERE order_id = $1 OR (order_ref = $2 AND match_status <> 'matched')
             ORDER BY indexed_at, id",
            d.to_iso("indexed_at")
        ))
        .bind(order_id)
        .bind(&order.order_ref)
        .fetch_all(&mut **c)
        .await?;
        let audit: Vec<AuditView> = sqlx::query_as(&format!(
            "SELECT {} AS created_at, actor, reason, note, from_status, to_status,
                from_payment_status, to_payment_status
             FROM order_audit WHERE order_id = $1 ORDER BY id",
            d.to_iso("created_at")
        ))
        .bind(order_id)
        .fetch_all(&mut **c)
        .await?;
        (events, audit)
    });
    let notifications = outbox::for_order(conn, order_id).await?;
    Ok(Some(Timeline {
        order,
        events,
        audit,
        notifications,
    }))
}
