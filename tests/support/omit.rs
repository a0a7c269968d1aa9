//! The omissions [`super::proxy::RpcProxy`] can make: logs left out of
//! `eth_getLogs` answers without an error, as load-balanced providers do.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use axum::response::{IntoResponse, Response};

use super::proxy::{bounds_of, RpcProxy};

/// How [`RpcProxy::omit`] leaves logs out of `eth_getLogs` answers, without
/// an error, as providers do. A log is known by its tx hash and log index.
#[derive(Debug, Clone)]
pub enum Omit {
    /// Each log is left out of the first answer that would hold it; later
    /// answers hold it (a request that landed on a node a moment behind). A
    /// log is known by its block hash, tx hash and log index here: the same
    /// log re-included by a reorg is left out once more.
    FirstAnswer,
    /// The logs of these orders (topic1, 0x + 64 hex) are left out of
    /// their first `n` answers.
    FirstAnswers { refs: Vec<String>, n: u64 },
    /// Each log is left out of each answer with probability `p` (seeded).
    Random { p: f64, seed: u64 },
    /// A node `blocks` behind the head behind a load balancer: the first
    /// request touching a block within `blocks` of the head lands on it,
    /// and answers `[]` (a range) or "unknown block" (by block hash, as
    /// EIP-234 says); later requests reach an up-to-date node.
    Lagging { blocks: u64 },
    /// The logs of these orders are left out of every answer whose filter
    /// does not name them by orderId (topic1).
    UnlessByOrder { refs: Vec<String> },
}

/// What [`Omit`] keeps between answers.
pub(super) struct Omitting {
    how: Omit,
    rng: ChaCha8Rng,
    /// Answers that held each log so far (for `FirstAnswer(s)`).
    shown: std::collections::HashMap<(String, String), u64>,
    /// Blocks some request touched while near the head (`Lagging`).
    touched: std::collections::HashSet<u64>,
    /// Logs left out so far (a log left out twice counts twice).
    pub(super) omitted: u64,
}

impl Omitting {
    pub(super) fn new(how: Omit) -> Self {
        let seed = match &how {
            Omit::Random { seed, .. } => *seed,
            _ => 0,
        };
        Self {
            how,
            rng: ChaCha8Rng::seed_from_u64(seed),
            shown: Default::default(),
            touched: Default::default(),
            omitted: 0,
        }
    }

    /// Leaves logs out of `logs`, the answer to a request for `filter`.
    pub(super) fn leave_out(
        &mut self,
        filter: &serde_json::Value,
        logs: &mut Vec<serde_json::Value>,
    ) {
        let by_order = |refs: &[String]| {
            let named = &filter["topics"][1];
            let named: Vec<&str> = match named {
                serde_json::Value::String(s) => vec![s.as_str()],
                serde_json::Value::Array(a) => a.iter().filter_map(|v| v.as_str()).collect(),
                _ => Vec::new(),
            };
            refs.iter().any(|r| named.contains(&r.as_str()))
        };
        let before = logs.len();
        let how = self.how.clone();
        logs.retain(|log| {
            // By block too: a log a reorg re-included elsewhere is new.
            let key = (
                log["blockHash"].as_str().unwrap_or("").to_owned(),
                format!(
                    "{}#{}",
                    log["transactionHash"].as_str().unwrap_or(""),
                    log["logIndex"].as_str().unwrap_or("")
                ),
            );
            let order = log["topics"][1].as_str().unwrap_or("");
            match &how {
                Omit::FirstAnswer => {
                    let shown = self.shown.entry(key).or_default();
                    *shown += 1;
                    *shown > 1
                }
                Omit::FirstAnswers { refs, n } => {
                    if !refs.iter().any(|r| r == order) {
                        return true;
                    }
                    let shown = self.shown.entry(key).or_default();
                    *shown += 1;
                    *shown > *n
                }
                Omit::Random { p, .. } => self.rng.random::<f64>() >= *p,
                Omit::UnlessByOrder { refs } => !refs.iter().any(|r| r == order) || by_order(refs),
                Omit::Lagging { .. } => true,
            }
        });
        self.omitted += (before - logs.len()) as u64;
    }
}

/// With [`Omit::Lagging`], the answer of a node behind the head to the
/// `eth_getLogs` request `json`, when this request lands on it: the first
/// request touching a block within the lag of the head.
pub(super) async fn lagging(proxy: &RpcProxy, json: &serde_json::Value) -> Option<Response> {
    let lag = match proxy.omitting.lock().expect("omitting").as_ref()?.how {
        Omit::Lagging { blocks } => blocks,
        _ => return None,
    };
    let head = upstream_head(proxy).await?;
    let filter = &json["params"][0];
    let (blocks, by_hash) = match filter["blockHash"].as_str() {
        Some(hash) => {
            let block = upstream_block_of(proxy, hash).await?;
            (block..=block, true)
        }
        None => {
            let (from, to) = bounds_of(json)?;
            (from.max(head.saturating_sub(lag))..=to, false)
        }
    };
    let near: Vec<u64> = blocks.filter(|b| *b + lag >= head).collect();
    {
        let mut guard = proxy.omitting.lock().expect("omitting");
        let o = guard.as_mut()?;
        if near.is_empty() || near.iter().all(|b| o.touched.contains(b)) {
            return None;
        }
        o.touched.extend(near);
        o.omitted += 1;
    }
    let id = json["id"].clone();
    let body = if by_hash {
        serde_json::json!({"jsonrpc": "2.0", "id": id,
            "error": {"code": -32000, "message": "unknown block"}})
    } else {
        serde_json::json!({"jsonrpc": "2.0", "id": id, "result": []})
    };
    Some(axum::Json(body).into_response())
}

/// The `result` the upstream node answers to `method`.
async fn upstream(
    proxy: &RpcProxy,
    method: &str,
    params: serde_json::Value,
) -> Option<serde_json::Value> {
    let request =
        serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let answer: serde_json::Value = proxy
        .client
        .post(&proxy.upstream)
        .json(&request)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(answer["result"].clone())
}

/// A hex quantity as a number.
fn quantity(v: &serde_json::Value) -> Option<u64> {
    u64::from_str_radix(v.as_str()?.trim_start_matches("0x"), 16).ok()
}

/// The upstream node's head.
async fn upstream_head(proxy: &RpcProxy) -> Option<u64> {
    quantity(&upstream(proxy, "eth_blockNumber", serde_json::json!([])).await?)
}

/// The number of the block `hash` on the upstream node.
async fn upstream_block_of(proxy: &RpcProxy, hash: &str) -> Option<u64> {
    let block = upstream(
        proxy,
        "eth_getBlockByHash",
        serde_json::json!([hash, false]),
    )
    .await?;
    quantity(&block["number"])
}
