//! A hosted provider at scale, simulated: anvil cannot mine millions of
//! blocks, so this serves a virtual chain over HTTP JSON-RPC, headers and
//! logs computed on the fly in anvil's JSON shapes (`PremiumPaid` v1 logs of
//! the real ABI, with `blockHash` and `blockTimestamp`; headers whose
//! `logsBloom` holds their blocks' logs, plus other contracts' to a chosen
//! fill; logs by block hash and by orderId), optionally a head that moves
//! on (a block every `block_time`), behind a round-trip
//! latency, a getLogs block cap refused in Coinbase's words (-32005 "please
//! limit the query to at most N blocks"), an optional result cap refused in
//! Infura's words with a suggested range, and a per-second request budget (a
//! token bucket holding one second's worth) beyond which it answers HTTP 429
//! with Retry-After. For the provider-scale bench rows, and the tests of
//! what only such a provider shows (rate limits): correctness tests of the
//! chain's contents stay on anvil.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::{keccak256, Address, Bloom, BloomInput, B256, U256};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use liqpass_indexer::chain::bindings::CheckoutV1;
use serde_json::{json, Value};

use alloy::sol_types::SolEvent;

/// The chain id the simulator answers (Base mainnet's).
pub const CHAIN_ID: u64 = 8453;
/// Base mainnet's USDC, the token a user configures.
pub const USDC: &str = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
const GENESIS_TIME: u64 = 1_700_000_000;
/// Seconds per block (Base's).
const BLOCK_TIME: u64 = 2;

/// How the provider behaves.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub latency: Duration,
    /// getLogs over more blocks is refused.
    pub range_cap: u64,
    /// getLogs answering more logs is refused with a suggested range.
    pub result_cap: Option<u64>,
    /// Requests per second (each call of a batch counts).
    pub per_second: u64,
    /// Share of each header's bloom bits set by other contracts' logs
    /// (busy Base blocks: 0.5-0.75).
    pub bloom_fill: f64,
    /// A new block this often (`None`: the head stays where it starts).
    pub block_time: Option<Duration>,
}

/// A payment on the virtual chain.
#[derive(Debug, Clone, Copy)]
pub struct Paid {
    pub order_ref: B256,
    pub buyer: Address,
    pub amount: u64,
}

/// What the simulator answered.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub get_logs: AtomicU64,
    pub headers: AtomicU64,
    pub refused: AtomicU64,
    pub rate_limited: AtomicU64,
}

struct Sim {
    profile: Profile,
    /// The head when the simulator started (it moves on with `block_time`).
    head: u64,
    started: Instant,
    contract: Address,
    payments: BTreeMap<u64, Vec<Paid>>,
    /// Token bucket: tokens, when last refilled.
    bucket: Mutex<(f64, Instant)>,
    stats: Arc<Stats>,
}

/// A running simulator.
pub struct Provider {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Provider {
    /// Serves blocks `0..=head` with `payments` (by block) of `contract`.
    pub async fn start(
        profile: Profile,
        head: u64,
        contract: Address,
        payments: BTreeMap<u64, Vec<Paid>>,
    ) -> Provider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the simulator");
        let addr = listener.local_addr().expect("addr");
        let stats = Arc::new(Stats::default());
        let sim = Arc::new(Sim {
            profile,
            head,
            started: Instant::now(),
            contract,
            payments,
            bucket: Mutex::new((profile.per_second as f64, Instant::now())),
            stats: stats.clone(),
        });
        let app = axum::Router::new().fallback(serve).with_state(sim);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Provider { addr, stats, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn serve(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let json: Value = serde_json::from_slice(&body).unwrap_or_default();
    let calls = json.as_array().map_or(1, Vec::len) as u64;
    sim.stats.requests.fetch_add(calls, Ordering::Relaxed);
    tokio::time::sleep(sim.profile.latency).await;
    if !sim.take(calls) {
        sim.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
        let headers = [("retry-after", "1")];
        return (StatusCode::TOO_MANY_REQUESTS, headers, "rate limited").into_response();
    }
    let answer = match &json {
        Value::Array(batch) => Value::Array(batch.iter().map(|c| sim.answer(c)).collect()),
        call => sim.answer(call),
    };
    axum::Json(answer).into_response()
}

impl Sim {
    /// The head now.
    fn head(&self) -> u64 {
        self.profile.block_time.map_or(self.head, |t| {
            self.head + (self.started.elapsed().as_nanos() / t.as_nanos().max(1)) as u64
        })
    }

    /// Takes `n` tokens, if the bucket holds them.
    fn take(&self, n: u64) -> bool {
        let rate = self.profile.per_second as f64;
        let mut b = self.bucket.lock().expect("bucket");
        let now = Instant::now();
        b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * rate).min(rate);
        b.1 = now;
        if b.0 < n as f64 {
            return false;
        }
        b.0 -= n as f64;
        true
    }

    fn answer(&self, call: &Value) -> Value {
        let id = call["id"].clone();
        let params = &call["params"];
        let result = match call["method"].as_str().unwrap_or("") {
            "eth_chainId" => Ok(json!(hex(CHAIN_ID))),
            "net_version" => Ok(json!(CHAIN_ID.to_string())),
            "eth_blockNumber" => Ok(json!(hex(self.head()))),
            "eth_getBlockByNumber" => {
                self.stats.headers.fetch_add(1, Ordering::Relaxed);
                Ok(self.block(self.tag(&params[0])))
            }
            "eth_getBlockByHash" => {
                self.stats.headers.fetch_add(1, Ordering::Relaxed);
                let number = params[0].as_str().and_then(number_of_hash);
                Ok(self.block(number))
            }
            "eth_getLogs" => {
                self.stats.get_logs.fetch_add(1, Ordering::Relaxed);
                self.logs(&params[0])
            }
            other => Err((-32601, format!("the method {other} does not exist"))),
        };
        match result {
            Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
            Err((code, message)) => {
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
            }
        }
    }

    fn tag(&self, v: &Value) -> Option<u64> {
        let head = self.head();
        match v.as_str()? {
            "latest" | "pending" => Some(head),
            "safe" => Some(head.saturating_sub(60)),
            "finalized" => Some(head.saturating_sub(600)),
            "earliest" => Some(0),
            n => parse(n).filter(|n| *n <= head),
        }
    }

    fn block(&self, number: Option<u64>) -> Value {
        let Some(n) = number.filter(|n| *n <= self.head()) else {
            return Value::Null;
        };
        let parent = if n == 0 {
            B256::ZERO
        } else {
            block_hash(n - 1)
        };
        let empty = "0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421";
        json!({
            "hash": block_hash(n), "parentHash": parent,
            "sha3Uncles": "0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347",
            "miner": Address::ZERO, "stateRoot": empty, "transactionsRoot": empty,
            "receiptsRoot": empty, "logsBloom": self.bloom(n),
            "difficulty": "0x0", "number": hex(n), "gasLimit": "0x1c9c380", "gasUsed": "0x0",
            "timestamp": hex(timestamp(n)), "extraData": "0x", "mixHash": B256::ZERO,
            "nonce": "0x0000000000000000", "baseFeePerGas": "0x3b9aca00",
            "withdrawalsRoot": empty, "blobGasUsed": "0x0", "excessBlobGas": "0x0",
            "parentBeaconBlockRoot": B256::ZERO, "totalDifficulty": "0x0", "size": "0x267",
            "uncles": [], "transactions": [], "withdrawals": []
        })
    }

    /// Block `n`'s bloom: its payments' logs, and other contracts' logs
    /// (pseudo-random inputs, the same for the same block) to the profile's
    /// fill.
    fn bloom(&self, n: u64) -> Bloom {
        let mut bloom = Bloom::ZERO;
        for p in self.payments.get(&n).into_iter().flatten() {
            bloom.accrue_raw_log(self.contract, &self.topics(p));
        }
        // Inputs that set about `fill` of the bits: 1 - (1 - 1/2048)^(3k).
        let fill = self.profile.bloom_fill.clamp(0.0, 0.999);
        let inputs = ((1.0 - fill).ln() / (3.0 * (1.0 - 1.0 / 2048.0f64).ln())).round() as u64;
        for i in 0..inputs {
            let input = keccak256([n.to_be_bytes(), i.to_be_bytes()].concat());
            bloom.accrue(BloomInput::Hash(input));
        }
        bloom
    }

    fn topics(&self, p: &Paid) -> [B256; 4] {
        [
            CheckoutV1::PremiumPaid::SIGNATURE_HASH,
            p.order_ref,
            B256::left_padding_from(p.buyer.as_slice()),
            B256::ZERO,
        ]
    }

    fn logs(&self, filter: &Value) -> Result<Value, (i64, String)> {
        if let Some(hash) = filter["blockHash"].as_str() {
            let n = number_of_hash(hash).filter(|n| *n <= self.head());
            let Some(n) = n else {
                return Err((-32000, "unknown block".into()));
            };
            return self.logs_between(n, n, filter);
        }
        let from = self.tag(&filter["fromBlock"]).unwrap_or(0);
        let to = self.tag(&filter["toBlock"]).unwrap_or(self.head());
        if to < from {
            return Ok(json!([]));
        }
        let cap = self.profile.range_cap;
        if to - from + 1 > cap {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            let message = format!("please limit the query to at most {cap} blocks");
            return Err((-32005, message));
        }
        self.logs_between(from, to, filter)
    }

    /// The logs of `from..=to` that `filter`'s address and orderIds (topic1)
    /// select, or a result-cap refusal.
    fn logs_between(&self, from: u64, to: u64, filter: &Value) -> Result<Value, (i64, String)> {
        let address = filter["address"]
            .as_str()
            .and_then(|a| a.parse::<Address>().ok());
        if address.is_some_and(|a| a != self.contract) {
            return Ok(json!([]));
        }
        let orders: Option<Vec<B256>> = match &filter["topics"][1] {
            Value::String(s) => s.parse().ok().map(|r| vec![r]),
            Value::Array(a) => Some(a.iter().filter_map(|v| v.as_str()?.parse().ok()).collect()),
            _ => None,
        };
        let mut logs = Vec::new();
        for (&block, paid) in self.payments.range(from..=to) {
            for (i, p) in paid.iter().enumerate() {
                if orders.as_ref().is_none_or(|o| o.contains(&p.order_ref)) {
                    logs.push(self.log(block, i as u64, p));
                }
            }
            if let Some(max) = self.profile.result_cap.filter(|m| logs.len() as u64 > *m) {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                let ok_to = block.saturating_sub(1).max(from);
                let message = format!(
                    "query returned more than {max} results. Try with this block range [{}, {}].",
                    hex(from),
                    hex(ok_to)
                );
                return Err((-32005, message));
            }
        }
        Ok(Value::Array(logs))
    }

    /// A v1 `PremiumPaid` log, as anvil writes one (one transaction per
    /// payment, its only log).
    fn log(&self, block: u64, index: u64, p: &Paid) -> Value {
        let tx = keccak256([block.to_be_bytes(), index.to_be_bytes()].concat());
        json!({
            "address": self.contract,
            "topics": self.topics(p),
            "data": B256::from(U256::from(p.amount)),
            "blockHash": block_hash(block),
            "blockNumber": hex(block),
            "blockTimestamp": hex(timestamp(block)),
            "transactionHash": tx,
            "transactionIndex": hex(index),
            "logIndex": hex(index),
            "removed": false
        })
    }
}

fn hex(n: u64) -> String {
    format!("{n:#x}")
}

fn parse(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

fn timestamp(n: u64) -> u64 {
    GENESIS_TIME + n * BLOCK_TIME
}

/// A block's hash: 24 bytes of a digest, then its number (so that a hash
/// gives its block back, for `eth_getBlockByHash`).
fn block_hash(n: u64) -> B256 {
    let mut h = keccak256(n.to_be_bytes());
    h[24..].copy_from_slice(&n.to_be_bytes());
    h
}

fn number_of_hash(s: &str) -> Option<u64> {
    let h: B256 = s.parse().ok()?;
    let n = u64::from_be_bytes(h[24..].try_into().ok()?);
    (block_hash(n) == h).then_some(n)
}
