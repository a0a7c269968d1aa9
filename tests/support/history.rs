//! A history, bulk-inserted: what a database holds after years of
//! payments, for the tests and benches that must show a cost does not grow
//! with it (`tests/it/plans.rs`, `make bench -- --only history`).

use super::chain::Chain;
use super::db::{Backend::Postgres, Backend::Sqlite, Db};

const PREMIUM: i64 = 5_000_000;

/// `n` payments of `chain`'s checkout (the daemon's scope), `per_block` a
/// block from block 10 (so below block `10 + n / per_block`), bulk-inserted: nine in ten paid their order, one in ten
/// paid none (`unknown_order`, half of them settled by a person); an audit
/// row and a notification per paid order (a thirtieth old enough for the
/// retention to delete), a checkout abandoned long ago (a pending order)
/// per four payments, a malformed log, a treasury move and an acknowledged
/// reorg incident per hundred.
pub async fn load(db: &Db, chain: &Chain, n: u64, per_block: u64) {
    let block_of = format!("10 + i / {per_block}");
    let contract = format!("{:#x}", chain.checkout);
    let (series, hex64, hex40, old, recent) = match db.backend() {
        Sqlite => (
            format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
                 SELECT {{}} FROM n"
            ),
            "printf('0x%064x', {})",
            "printf('0x%040x', {})",
            "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-40 days')",
            "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 days')",
        ),
        Postgres => (
            format!("SELECT {{}} FROM generate_series(1, {n}) AS n(i)"),
            "'0x' || lpad(to_hex({}), 64, '0')",
            "'0x' || lpad(to_hex({}), 40, '0')",
            "now() - interval '40 days'",
            "now() - interval '1 day'",
        ),
    };
    let h64 = |e: &str| hex64.replace("{}", e);
    let h40 = |e: &str| hex40.replace("{}", e);
    let select = |columns: String, filter: &str| {
        let body = series.replace("{}", &columns);
        format!("{body} {filter}")
    };
    let orders = select(
        format!(
            "'hist_' || i, {ref_}, {payer}, {PREMIUM}, 'paid', 'paid', {old}, {tx}, 0,
             {block_of}, {PREMIUM}, {old}",
            ref_ = h64("1000000 + i"),
            payer = h40("i"),
            tx = h64("i"),
        ),
        "WHERE i % 10 <> 0",
    );
    db.execute(&format!(
        "INSERT INTO orders (id, order_ref, wallet_address, premium_usdc, status,
           payment_status, created_at, paid_tx_hash, paid_log_index, paid_block_number,
           paid_amount_usdc, paid_at) {orders}"
    ))
    .await;
    let events = select(
        format!(
            "31337, '{contract}', {tx}, 0, {block_of}, {block}, 0, 'PremiumPaid', 1, {ref_},
             {payer}, {PREMIUM}, '{PREMIUM}', {quote}, '{{}}',
             CASE WHEN i % 10 <> 0 THEN 'hist_' || i END,
             CASE WHEN i % 10 <> 0 THEN 'matched' ELSE 'unknown_order' END",
            tx = h64("i"),
            block = h64(&block_of),
            ref_ = h64("1000000 + i"),
            payer = h40("i"),
            quote = h64("0"),
        ),
        "",
    );
    db.execute(&format!(
        "INSERT INTO contract_events (chain_id, contract_address, tx_hash, log_index,
           block_number, block_hash, block_timestamp, event_name, event_version, order_ref,
           payer, amount_usdc, amount_raw, quote_hash, args_json, order_id, match_status)
         {events}"
    ))
    .await;
    db.execute(
        "INSERT INTO order_audit (order_id, reason, from_status, to_status,
           from_payment_status, to_payment_status, event_id)
         SELECT order_id, 'payment_seen', 'pending', 'pending', 'pending', 'confirming', id
         FROM contract_events WHERE order_id IS NOT NULL",
    )
    .await;
    // The outbox: within its retention, but for a few hundred rows the
    // retention deletes (so the outbox stays the history's size).
    db.execute(&format!(
        "INSERT INTO payment_notifications (event_id, type, order_id, payload, created_at,
           attempts, delivered_at)
         SELECT 'evt_hist_' || id, 'order.paid', order_id, '{{}}',
                CASE WHEN id % 30 = 0 THEN {old} ELSE {recent} END, 1, {recent}
         FROM contract_events WHERE order_id IS NOT NULL"
    ))
    .await;
    db.execute(
        "INSERT INTO payment_resolutions (event_id, resolution, actor, note)
         SELECT id, 'refunded', 'ops', 'history' FROM contract_events
         WHERE match_status = 'unknown_order' AND id % 20 = 0",
    )
    .await;
    // Checkouts abandoned long ago: pending for ever.
    let abandoned = select(
        format!(
            "'abandoned_' || i, {ref_}, {payer}, {PREMIUM}, {old}",
            ref_ = h64("3000000 + i"),
            payer = h40("i"),
        ),
        "WHERE i % 4 = 0",
    );
    db.execute(&format!(
        "INSERT INTO orders (id, order_ref, wallet_address, premium_usdc, created_at)
         {abandoned}"
    ))
    .await;
    // Deep reorgs long acknowledged.
    let incidents = select(
        format!("31337, '{contract}', 10, {block_of}, {block_of} + 10, '[]', {old}, {old}"),
        "WHERE i % 100 = 0",
    );
    db.execute(&format!(
        "INSERT INTO reorg_incidents (chain_id, contract_address, depth, ancestor_block,
           old_checkpoint, reversed_orders, detected_at, acknowledged_at)
         {incidents}"
    ))
    .await;
    // A malformed log and a treasury move every ten blocks.
    let treasury = format!("{:#x}", chain.treasury);
    let sparse = select(
        format!(
            "31337, '{contract}', {tx}, 1, {block_of}, {block}",
            tx = h64("i"),
            block = h64(&block_of),
        ),
        "WHERE i % 100 = 0",
    );
    db.execute(&format!(
        "INSERT INTO malformed_logs (chain_id, contract_address, tx_hash, log_index,
           block_number, block_hash, topics_json, data, reason)
         SELECT *, '[]', '0x', 'history' FROM ({sparse}) AS s"
    ))
    .await;
    db.execute(&format!(
        "INSERT INTO treasury_changes (chain_id, contract_address, tx_hash, log_index,
           block_number, block_hash, old_treasury, new_treasury)
         SELECT *, '{treasury}', '{treasury}' FROM ({sparse}) AS s"
    ))
    .await;
    assert_eq!(
        db.count("SELECT COUNT(*) FROM contract_events").await,
        n as i64
    );
}
