//! `review`, `resolve` and `order`: the commands of people handling
//! payments that need them. Each opens the store, runs one store function
//! and prints its result (a plain table, or JSON for scripts).

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::open_store;
use crate::config::DatabaseSettings;
use crate::store::exceptions::{self, Resolution, Resolved, Subject, Timeline};

/// An event named on the command line as `CHAIN:TX:LOG_INDEX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRef {
    pub chain_id: i64,
    pub tx_hash: String,
    pub log_index: i64,
}

impl std::str::FromStr for EventRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not CHAIN:TX:LOG_INDEX (e.g. 8453:0xab…:0)");
        let mut parts = s.split(':');
        let (Some(chain), Some(tx), Some(index), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let hex = tx.strip_prefix("0x").unwrap_or("");
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        Ok(Self {
            chain_id: chain.parse().map_err(|_| bad())?,
            tx_hash: tx.to_ascii_lowercase(),
            log_index: index.parse().map_err(|_| bad())?,
        })
    }
}

/// Which order `resolve` acts on.
#[derive(Debug, Clone)]
pub enum Target {
    Order(String),
    Event(EventRef),
}

/// `liqpass-indexer resolve`: one transaction, or a refusal that wrote
/// nothing (an error: exit 1). With `dry_run`, the transaction runs and is
/// rolled back: what would change is printed, nothing is written.
pub async fn resolve(
    database: &DatabaseSettings,
    target: Target,
    to: Resolution,
    reason: &str,
    actor: &str,
    dry_run: bool,
) -> anyhow::Result<()> {
    let (actor, reason) = (actor.trim(), reason.trim());
    if actor.is_empty() {
        bail!("--actor is empty: name the person resolving (the audit trail keeps it); nothing written");
    }
    if actor.eq_ignore_ascii_case(exceptions::INDEXER_ACTOR) {
        bail!(
            "--actor {actor:?} is the indexer's own name in the audit trail: name the person \
             resolving; nothing written"
        );
    }
    if actor.chars().count() > 256 {
        bail!("--actor is longer than 256 characters; nothing written");
    }
    // Invisible characters would let "indexer" pass as another name, and
    // control characters reach the audit trail and the webhooks.
    let hidden = |c: char| {
        c.is_control()
            || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
    };
    if actor.chars().any(hidden) || reason.chars().any(hidden) {
        bail!("--actor or --reason holds a control or invisible character; nothing written");
    }
    if reason.is_empty() {
        bail!("--reason is empty: say why (the audit trail keeps it); nothing written");
    }
    let store = open_store(database).await?;
    let mut tx = store.begin().await?;
    let (subject, named) = match target {
        Target::Order(id) => (Subject::Order(id.clone()), format!("order {id}")),
        Target::Event(e) => (
            Subject::Event {
                chain_id: e.chain_id,
                tx_hash: e.tx_hash.clone(),
                log_index: e.log_index,
            },
            format!("event {}:{}:{}", e.chain_id, e.tx_hash, e.log_index),
        ),
    };
    let done = exceptions::resolve(&mut tx.conn(), &subject, to, actor, reason).await?;
    let change = match done {
        Resolved::NotFound => bail!("no {named}"),
        Resolved::NoOrder { order_ref } => bail!(
            "refused: {named} pays order_ref {order_ref}, which no order has (unknown_order): \
             it can be settled --as refunded or --as void; to accept it as a payment, insert \
             the order and the indexer matches the payment to it; nothing written"
        ),
        Resolved::Settled => bail!(
            "refused: {named} pays no order and was settled already (see payment_resolutions); \
             nothing written"
        ),
        Resolved::PaidWithoutPayment => bail!(
            "refused: --as paid would leave {named} paid with no payment behind it (a reversed \
             order with no payment named, or a payment whose amount is unknown); settle it --as \
             refunded or --as void, or name the payment that pays it with --event \
             CHAIN:TX:LOG_INDEX; nothing written"
        ),
        Resolved::Refused {
            status,
            payment_status,
        } => bail!(
            "refused: {named} needs no person (its order is {status}/{payment_status}; \
             exceptions are a reversed order or a payment `review` lists); nothing written"
        ),
        Resolved::Ambiguous { events } => bail!(
            "refused: {named} has {} open exceptions, name one with --event: {}; nothing written",
            events.len(),
            events.join(", ")
        ),
        Resolved::SettledNow { resolution } => {
            format!("{named}: a payment of no order, {resolution} by {actor}")
        }
        Resolved::Done { order_id, from, to } => format!(
            "{named}: order {order_id} {}/{} -> {}/{} by {actor}",
            from.0, from.1, to.0, to.1
        ),
    };
    if dry_run {
        tx.rollback().await?;
        println!("dry run: would resolve {change}; nothing written");
    } else {
        tx.commit().await?;
        println!("resolved {change}");
    }
    store.close().await;
    Ok(())
}

/// `liqpass-indexer review`.
pub async fn review(database: &DatabaseSettings, as_json: bool) -> anyhow::Result<()> {
    let store = open_store(database).await?;
    let rows = exceptions::review(&mut store.conn().await?.conn()).await?;
    store.close().await;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<24}  {:<17}  {:<24}  {:>12}  {:>12}  event",
        "since", "reason", "order", "amount_usdc", "premium_usdc"
    );
    for r in &rows {
        let event = match (&r.chain_id, &r.tx_hash, &r.log_index) {
            (Some(c), Some(t), Some(i)) => format!("{c}:{t}:{i}"),
            _ => "-".into(),
        };
        println!(
            "{:<24}  {:<17}  {:<24}  {:>12}  {:>12}  {event}",
            r.since,
            r.reason,
            r.order_id.as_deref().unwrap_or("-"),
            opt(r.amount_usdc),
            opt(r.premium_usdc),
        );
    }
    println!("{} payment(s) need a person", rows.len());
    Ok(())
}

fn opt(v: Option<i64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// `liqpass-indexer order ID`.
pub async fn order(database: &DatabaseSettings, id: &str, as_json: bool) -> anyhow::Result<()> {
    let store = open_store(database).await?;
    let found = exceptions::timeline(&mut store.begin_read().await?.conn(), id).await?;
    store.close().await;
    let Some(t) = found else {
        bail!("no order {id}");
    };
    let entries = entries(&t)?;
    if as_json {
        let out = json!({ "order": t.order, "timeline": entries });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let o = &t.order;
    println!(
        "order {}  ref {}  wallet {}  premium {} micro-USDC",
        o.id, o.order_ref, o.wallet_address, o.premium_usdc
    );
    println!(
        "status {}  payment_status {}  created {}  updated {}",
        o.status, o.payment_status, o.created_at, o.updated_at
    );
    for e in &entries {
        println!(
            "{:<24}  {:<12}  {}",
            e["at"].as_str().unwrap_or(""),
            e["kind"].as_str().unwrap_or(""),
            line(e)
        );
    }
    Ok(())
}

/// Every event, audit row and notification as one JSON object with `at` and
/// `kind`, in time order (ties keep that order: the cause before its audit
/// row before its notification).
fn entries(t: &Timeline) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut push = |kind: &str, at: &str, v: Value| {
        let mut v = v;
        v["kind"] = kind.into();
        v["at"] = at.into();
        out.push(v);
    };
    for e in &t.events {
        push("event", &e.indexed_at, serde_json::to_value(e)?);
    }
    for a in &t.audit {
        push("audit", &a.created_at, serde_json::to_value(a)?);
    }
    for n in &t.notifications {
        let mut v = serde_json::to_value(n)?;
        v["payload"] = serde_json::from_str(&n.payload).context("a notification's payload")?;
        push("notification", &n.created_at, v);
    }
    out.sort_by(|a, b| a["at"].as_str().cmp(&b["at"].as_str()));
    Ok(out)
}

/// One timeline entry as a line of text.
fn line(e: &Value) -> String {
    let s = |k: &str| e[k].as_str().unwrap_or("").to_owned();
    match e["kind"].as_str() {
        Some("event") => format!(
            "{}:{}:{} block {} amount {} {}{}",
            e["chain_id"],
            s("tx_hash"),
            e["log_index"],
            e["block_number"],
            e["amount_usdc"],
            s("match_status"),
            if e["removed"] == 1 { " (removed)" } else { "" }
        ),
        Some("audit") => format!(
            "{} by {}: {}/{} -> {}/{}{}",
            s("reason"),
            s("actor"),
            s("from_status"),
            s("from_payment_status"),
            s("to_status"),
            s("to_payment_status"),
            e["note"]
                .as_str()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        ),
        _ => format!(
            "{} {} attempts {}: {}",
            s("type"),
            s("event_id"),
            e["attempts"],
            delivery(e)
        ),
    }
}

/// A notification's delivery state, in words.
fn delivery(n: &Value) -> String {
    let last = match (n["last_status"].as_i64(), n["last_error"].as_str()) {
        (_, Some(error)) => format!(" (last: {error})"),
        (Some(status), None) => format!(" (last: HTTP {status})"),
        _ => String::new(),
    };
    if let Some(at) = n["delivered_at"].as_str() {
        format!("delivered {at}")
    } else if let Some(at) = n["gave_up_at"].as_str() {
        format!("given up {at}{last}")
    } else if let Some(at) = n["next_attempt_at"].as_str() {
        format!("next attempt {at}{last}")
    } else if n["attempts"].as_i64().unwrap_or(0) > 0 {
        format!("waiting{last}")
    } else {
        "not sent".to_owned()
    }
}
