//! Live latency: from each block's announcement (and from the call that
//! mined it) to the order's next state in the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::providers::{Provider, ProviderBuilder, WsConnect};
use futures::StreamExt;

use super::support::chain::{order_ref, Chain};
use super::support::db::Db;
use super::{sorted, support};

/// Latencies of live payments, in milliseconds, sorted.
pub struct Live {
    /// Block announced to the bench -> order `confirming`.
    pub seen: Vec<f64>,
    /// Next block announced -> order `paid`.
    pub paid: Vec<f64>,
    /// The same, from sending the payment / asking for the next block: upper
    /// bounds that include anvil's mining.
    pub seen_sent: Vec<f64>,
    pub paid_sent: Vec<f64>,
}

/// `n` live payments, each with its order: from each block's announcement
/// (a newHeads notification on the bench's own websocket) and from the call
/// that mined it, to the order's next state in the database (polled every
/// 0.5 ms; an observation is never earlier than the call's return).
pub async fn live(chain: &Chain, db: &Db, first: u64, n: u64) -> Live {
    let announced = announcements(chain).await;
    let (mut seen, mut paid, mut seen_sent, mut paid_sent) = (vec![], vec![], vec![], vec![]);
    for k in first..first + n {
        let id = format!("live_{k}");
        db.insert_order(&id, order_ref(k), chain.buyers[2], 1_000_000)
            .await;
        let sent = Instant::now();
        let receipt = chain.pay(chain.buyers[2], order_ref(k), 1_000_000).await;
        let block = receipt.block_number.expect("mined");
        wait_status(db, &id, &["confirming", "paid"]).await;
        let observed = Instant::now();
        seen_sent.push((observed - sent).as_secs_f64() * 1000.0);
        seen.push(since(&announced, block, observed).await);
        let sent = Instant::now();
        chain.mine(1).await;
        wait_status(db, &id, &["paid"]).await;
        let observed = Instant::now();
        paid_sent.push((observed - sent).as_secs_f64() * 1000.0);
        paid.push(since(&announced, block + 1, observed).await);
    }
    Live {
        seen: sorted(seen),
        paid: sorted(paid),
        seen_sent: sorted(seen_sent),
        paid_sent: sorted(paid_sent),
    }
}

/// Milliseconds from `block`'s announcement to `observed` (0 if the
/// announcement came later).
async fn since(announced: &Mutex<HashMap<u64, Instant>>, block: u64, observed: Instant) -> f64 {
    let at = support::wait_for("the block's announcement", Duration::from_secs(30), || {
        let at = announced.lock().expect("lock").get(&block).copied();
        async move { at }
    })
    .await;
    observed.saturating_duration_since(at).as_secs_f64() * 1000.0
}

/// When each block's newHeads notification reached the bench, recorded by
/// a task of its own on a websocket of its own, from now on.
async fn announcements(chain: &Chain) -> Arc<Mutex<HashMap<u64, Instant>>> {
    let ws = ProviderBuilder::new()
        .connect_ws(WsConnect::new(chain.ws_url()))
        .await
        .expect("bench websocket");
    let mut heads = ws
        .subscribe_blocks()
        .await
        .expect("newHeads subscription")
        .into_stream();
    let at = Arc::new(Mutex::new(HashMap::new()));
    let record = at.clone();
    tokio::spawn(async move {
        let _connection = ws;
        while let Some(h) = heads.next().await {
            record
                .lock()
                .expect("lock")
                .insert(h.number, Instant::now());
        }
    });
    at
}

async fn wait_status(db: &Db, id: &str, any_of: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s: String = sqlx::query_scalar("SELECT payment_status FROM orders WHERE id = ?")
            .bind(id)
            .fetch_one(db.store.sqlite_pool().expect("an SQLite store"))
            .await
            .expect("order");
        if any_of.contains(&s.as_str()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "order {id} never reached {any_of:?}"
        );
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}
