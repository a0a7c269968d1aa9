//! Test proxies in front of anvil, bound to 127.0.0.1 only:
//! - [`TcpProxy`] forwards bytes (HTTP or websocket) and can cut every open
//!   connection, or stall them (deliver nothing, close nothing);
//! - [`RpcProxy`] forwards HTTP JSON-RPC and injects faults: range refusals
//!   (a generic one, or a provider's own wording: [`Wording`]), a latency,
//!   and a seeded schedule of resets, 500s, 429s, timeouts, truncated JSON
//!   and wrong-chain answers, or fails the getLogs ranges covering one
//!   block a few times. It records every getLogs range asked for (and how
//!   many it answered at once),
//!   counts requests by method, and can rewrite the logs of `eth_getLogs`
//!   answers (a lying provider) or leave logs out of them without an error
//!   ([`Omit`], in `omit`: a provider behind a load balancer, or dropping
//!   logs).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub use super::omit::Omit;
use super::omit::{lagging, Omitting};
use super::wording::{over_log_cap, refusal};
pub use super::wording::{Cap, Wording};

/// A byte-level proxy whose connections can be cut or stalled.
pub struct TcpProxy {
    pub addr: SocketAddr,
    epoch: Arc<tokio::sync::watch::Sender<u64>>,
    stalled: Arc<AtomicBool>,
    pub connections: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl TcpProxy {
    pub async fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (epoch, _) = tokio::sync::watch::channel(0u64);
        let epoch = Arc::new(epoch);
        let stalled = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let (e, s, c, st) = (
            epoch.clone(),
            stalled.clone(),
            connections.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    _ = st.cancelled() => return,
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                };
                c.fetch_add(1, Ordering::Relaxed);
                let mut cut = e.subscribe();
                let stalled = s.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut ri, mut wi) = inbound.split();
                    let (mut ro, mut wo) = outbound.split();
                    let up = pump(&mut ri, &mut wo, stalled.clone());
                    let down = pump(&mut ro, &mut wi, stalled);
                    tokio::select! {
                        _ = cut.changed() => {}
                        _ = async { tokio::join!(up, down) } => {}
                    }
                });
            }
        });
        TcpProxy {
            addr,
            epoch,
            stalled,
            connections,
            stop,
        }
    }

    /// Closes every open connection (new ones are accepted).
    pub fn cut(&self) {
        self.epoch.send_modify(|e| *e += 1);
    }

    /// While stalled, bytes are swallowed: the connection stays open but
    /// delivers nothing, like a websocket that goes quiet.
    pub fn stall(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::Relaxed);
    }

    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut();
    }
}

async fn pump<R, W>(r: &mut R, w: &mut W, stalled: Arc<AtomicBool>)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stalled.load(Ordering::Relaxed) {
            continue;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The faults [`RpcProxy`] can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Reset,
    Status500,
    TooMany,
    Timeout,
    Truncated,
    WrongChain,
    RangeRefused,
}

pub const ALL_FAULTS: [Fault; 7] = [
    Fault::Reset,
    Fault::Status500,
    Fault::TooMany,
    Fault::Timeout,
    Fault::Truncated,
    Fault::WrongChain,
    Fault::RangeRefused,
];

#[derive(Default)]
struct Plan {
    /// Refuse getLogs in a provider's words above a cap.
    wording: Option<(Wording, u64)>,
    /// Every getLogs range asked for, in order, and those refused.
    ranges: Vec<(u64, u64)>,
    refused: Vec<(u64, u64)>,
    /// Added to every answer.
    latency: Duration,
    /// getLogs over more blocks than this answers after that long.
    slow_over: Option<(u64, Duration)>,
    /// Requests allowed per one-second window (from the proxy's start),
    /// beyond which it answers 429 with Retry-After: 1.
    per_second: Option<u64>,
    window: (u64, u64),
    too_many: u64,
    /// eth_getLogs over more than this many blocks is refused (None: never).
    max_range: Option<u64>,
    /// Probability that a request gets a fault, and the seeded generator.
    fault_rate: f64,
    rng: Option<ChaCha8Rng>,
    injected: Vec<Fault>,
    refused_ranges: u64,
    forwarded: u64,
    /// Requests received, by JSON-RPC method.
    calls: BTreeMap<String, u64>,
    dead: bool,
    /// getLogs ranges covering this block fail (HTTP 500) this many more
    /// times; and how many did.
    fail_covering: Option<(u64, u64)>,
    failed_covering: u64,
    /// Requests for the held header (`RpcProxy::hold_header`).
    held: u64,
    /// getLogs requests being answered now, and the most at once.
    logs_in_flight: u64,
    most_logs_in_flight: u64,
}

/// Counts a getLogs request in flight until dropped.
struct InFlight(Arc<Mutex<Plan>>);

impl InFlight {
    fn start(plan: &Arc<Mutex<Plan>>) -> InFlight {
        let mut p = plan.lock().expect("plan");
        p.logs_in_flight += 1;
        p.most_logs_in_flight = p.most_logs_in_flight.max(p.logs_in_flight);
        InFlight(plan.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.lock().expect("plan").logs_in_flight -= 1;
    }
}

/// Rewrites the `result` array of an `eth_getLogs` answer.
pub type LogRewrite = Arc<dyn Fn(&mut Vec<serde_json::Value>) + Send + Sync>;

/// An HTTP JSON-RPC proxy with injected faults.
#[derive(Clone)]
pub struct RpcProxy {
    pub addr: SocketAddr,
    started: std::time::Instant,
    plan: Arc<Mutex<Plan>>,
    rewrite: Arc<Mutex<Option<LogRewrite>>>,
    pub(super) omitting: Arc<Mutex<Option<Omitting>>>,
    pub(super) upstream: String,
    pub(super) client: reqwest::Client,
    /// The block whose `eth_getBlockByNumber` waits (`hold_header`).
    hold: Arc<tokio::sync::watch::Sender<Option<u64>>>,
}

impl RpcProxy {
    pub async fn start(upstream: &str) -> RpcProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind rpc proxy");
        let addr = listener.local_addr().expect("addr");
        let proxy = RpcProxy {
            addr,
            started: std::time::Instant::now(),
            upstream: upstream.to_owned(),
            plan: Arc::new(Mutex::new(Plan::default())),
            rewrite: Arc::new(Mutex::new(None)),
            omitting: Arc::new(Mutex::new(None)),
            client: reqwest::Client::new(),
            hold: Arc::new(tokio::sync::watch::Sender::new(None)),
        };
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(proxy.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        proxy
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `eth_getBlockByNumber` for `block` waits until [`RpcProxy::release`].
    pub fn hold_header(&self, block: u64) {
        self.hold.send_replace(Some(block));
    }

    /// Lets the held header requests through (`hold_header`).
    pub fn release(&self) {
        self.hold.send_replace(None);
    }

    /// Requests for the held header that arrived (waiting, or let through).
    pub fn held(&self) -> u64 {
        self.plan.lock().expect("plan").held
    }

    /// Refuse getLogs ranges wider than `blocks`, as providers do.
    pub fn refuse_ranges_over(&self, blocks: u64) {
        self.plan.lock().expect("plan").max_range = Some(blocks);
    }

    /// Inject a fault into this fraction of requests, drawn from `seed`.
    pub fn inject(&self, seed: u64, rate: f64) {
        let mut p = self.plan.lock().expect("plan");
        p.rng = Some(ChaCha8Rng::seed_from_u64(seed));
        p.fault_rate = rate;
    }

    /// Stop injecting random faults.
    pub fn heal(&self) {
        self.plan.lock().expect("plan").fault_rate = 0.0;
    }

    /// Answer nothing at all (connection refused-like 502s).
    pub fn kill(&self, dead: bool) {
        self.plan.lock().expect("plan").dead = dead;
    }

    pub fn injected(&self) -> Vec<Fault> {
        self.plan.lock().expect("plan").injected.clone()
    }

    pub fn refused_ranges(&self) -> u64 {
        self.plan.lock().expect("plan").refused_ranges
    }

    pub fn forwarded(&self) -> u64 {
        self.plan.lock().expect("plan").forwarded
    }

    /// Requests received for `method` so far.
    pub fn calls(&self, method: &str) -> u64 {
        let p = self.plan.lock().expect("plan");
        p.calls.get(method).copied().unwrap_or(0)
    }

    /// Requests received so far, every method.
    pub fn all_calls(&self) -> BTreeMap<String, u64> {
        self.plan.lock().expect("plan").calls.clone()
    }

    /// Lie: pass every `eth_getLogs` answer's logs through `f`.
    pub fn rewrite_logs(&self, f: impl Fn(&mut Vec<serde_json::Value>) + Send + Sync + 'static) {
        *self.rewrite.lock().expect("rewrite") = Some(Arc::new(f));
    }

    /// Leave logs out of `eth_getLogs` answers as `how` says.
    pub fn omit(&self, how: Omit) {
        *self.omitting.lock().expect("omitting") = Some(Omitting::new(how));
    }

    /// Logs left out of answers so far (with [`RpcProxy::omit`]), and
    /// requests answered as a lagging node would.
    pub fn omitted(&self) -> u64 {
        self.omitting
            .lock()
            .expect("omitting")
            .as_ref()
            .map_or(0, |o| o.omitted)
    }

    /// Refuse getLogs as `wording`'s provider does, above `cap` blocks or
    /// logs.
    pub fn refuse_like(&self, wording: Wording, cap: u64) {
        self.plan.lock().expect("plan").wording = Some((wording, cap));
    }

    /// Delay every answer by `latency` (a hosted provider's round trip).
    pub fn slow(&self, latency: Duration) {
        self.plan.lock().expect("plan").latency = latency;
    }

    /// Answer getLogs over more than `blocks` blocks only after `delay` (a
    /// node that scans a wide range slowly).
    pub fn slow_over(&self, blocks: u64, delay: Duration) {
        self.plan.lock().expect("plan").slow_over = Some((blocks, delay));
    }

    /// Answer 429 (Retry-After: 1) to requests beyond `n` in a second, as
    /// a provider's plan does.
    pub fn rate_limit(&self, n: u64) {
        self.plan.lock().expect("plan").per_second = Some(n);
    }

    /// Requests answered 429 by [`RpcProxy::rate_limit`].
    pub fn too_many(&self) -> u64 {
        self.plan.lock().expect("plan").too_many
    }

    /// Fail (HTTP 500) the next `times` getLogs ranges that cover `block`.
    pub fn fail_logs_covering(&self, block: u64, times: u64) {
        self.plan.lock().expect("plan").fail_covering = Some((block, times));
    }

    /// getLogs requests failed by [`RpcProxy::fail_logs_covering`].
    pub fn failed_covering(&self) -> u64 {
        self.plan.lock().expect("plan").failed_covering
    }

    /// The most getLogs requests the proxy was answering at once.
    pub fn most_logs_in_flight(&self) -> u64 {
        self.plan.lock().expect("plan").most_logs_in_flight
    }

    /// Every getLogs range asked for, in order.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.plan.lock().expect("plan").ranges.clone()
    }

    /// The getLogs ranges refused in a provider's words, in order.
    pub fn refused(&self) -> Vec<(u64, u64)> {
        self.plan.lock().expect("plan").refused.clone()
    }
}

/// `fromBlock..=toBlock` of a getLogs request.
pub(super) fn bounds_of(body: &serde_json::Value) -> Option<(u64, u64)> {
    if body["method"] != "eth_getLogs" {
        return None;
    }
    let f = &body["params"][0];
    let num =
        |v: &serde_json::Value| u64::from_str_radix(v.as_str()?.trim_start_matches("0x"), 16).ok();
    Some((num(&f["fromBlock"])?, num(&f["toBlock"])?))
}

fn range_of(body: &serde_json::Value) -> Option<u64> {
    bounds_of(body).map(|(from, to)| to.saturating_sub(from) + 1)
}

async fn handle(State(proxy): State<RpcProxy>, headers: HeaderMap, body: Bytes) -> Response {
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let id = json["id"].clone();
    let method = json["method"].as_str().unwrap_or("").to_owned();
    let bounds = bounds_of(&json);
    let _in_flight = bounds.map(|_| InFlight::start(&proxy.plan));
    let (latency, wording) = {
        let mut p = proxy.plan.lock().expect("plan");
        p.ranges.extend(bounds);
        let wide = matches!((p.slow_over, bounds), (Some((n, _)), Some((f, t))) if t - f + 1 > n);
        let slow = p.slow_over.filter(|_| wide).map(|(_, d)| d);
        (p.latency + slow.unwrap_or_default(), p.wording)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    {
        let second = proxy.started.elapsed().as_secs();
        let mut p = proxy.plan.lock().expect("plan");
        if let Some(n) = p.per_second {
            if p.window.0 != second {
                p.window = (second, 0);
            }
            p.window.1 += 1;
            if p.window.1 > n {
                p.too_many += 1;
                drop(p);
                let headers = [("retry-after", "1")];
                return (StatusCode::TOO_MANY_REQUESTS, headers, "rate limited").into_response();
            }
        }
    }
    if let Some((from, to)) = bounds {
        let mut p = proxy.plan.lock().expect("plan");
        if let Some((block, left)) = p
            .fail_covering
            .filter(|(b, n)| *n > 0 && (from..=to).contains(b))
        {
            p.fail_covering = Some((block, left - 1));
            p.failed_covering += 1;
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
        }
    }
    if let (Some((w, cap)), Some((from, to))) = (wording, bounds) {
        if w.cap == Cap::Blocks && to - from + 1 > cap {
            proxy.plan.lock().expect("plan").refused.push((from, to));
            return refusal(&w, &id, w.render(cap, from, to, from + cap - 1));
        }
    }
    let fault = {
        let mut p = proxy.plan.lock().expect("plan");
        *p.calls.entry(method.clone()).or_default() += 1;
        if p.dead {
            return (StatusCode::BAD_GATEWAY, "upstream down").into_response();
        }
        let too_wide = matches!((p.max_range, range_of(&json)), (Some(max), Some(r)) if r > max);
        if too_wide {
            p.refused_ranges += 1;
            Some(Fault::RangeRefused)
        } else {
            let rate = p.fault_rate;
            let pick = p.rng.as_mut().and_then(|rng| {
                (rng.random::<f64>() < rate)
                    .then(|| ALL_FAULTS[rng.random_range(0..ALL_FAULTS.len())])
            });
            if let Some(f) = pick {
                p.injected.push(f);
            }
            pick
        }
    };
    let error = |code: i64, message: &str| {
        axum::Json(serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}))
            .into_response()
    };
    match fault {
        Some(Fault::RangeRefused) => {
            return error(-32005, "query returned more than 10000 results")
        }
        Some(Fault::Reset) => {
            return (StatusCode::BAD_GATEWAY, "connection reset by peer").into_response()
        }
        Some(Fault::Status500) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
        Some(Fault::TooMany) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                "rate limited",
            )
                .into_response()
        }
        Some(Fault::Timeout) => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            return (StatusCode::GATEWAY_TIMEOUT, "timeout").into_response();
        }
        Some(Fault::Truncated) => {
            return (StatusCode::OK, "{\"jsonrpc\":\"2.0\",\"id\":").into_response()
        }
        Some(Fault::WrongChain) if json["method"] == "eth_chainId" => {
            return axum::Json(serde_json::json!({"jsonrpc": "2.0", "id": id, "result": "0x1"}))
                .into_response()
        }
        Some(Fault::WrongChain) => return error(-32000, "header not found"),
        None => {}
    }
    if method == "eth_getBlockByNumber" {
        let number = json["params"][0]
            .as_str()
            .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok());
        if number.is_some() && *proxy.hold.borrow() == number {
            proxy.plan.lock().expect("plan").held += 1;
            let mut hold = proxy.hold.subscribe();
            let _ = hold.wait_for(|h| *h != number).await;
        }
    }
    if method == "eth_getLogs" {
        if let Some(answer) = lagging(&proxy, &json).await {
            return answer;
        }
    }
    proxy.plan.lock().expect("plan").forwarded += 1;
    let mut req = proxy.client.post(&proxy.upstream).body(body.to_vec());
    if let Some(ct) = headers.get("content-type") {
        req = req.header("content-type", ct.as_bytes());
    }
    match req.send().await {
        Ok(resp) => {
            let status =
                StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut bytes = resp.bytes().await.unwrap_or_default().to_vec();
            if let (Some((w, cap)), Some((from, to))) = (wording, bounds) {
                let over = over_log_cap(&bytes, cap, from).filter(|_| w.cap == Cap::Logs);
                if let Some(ok_to) = over {
                    proxy.plan.lock().expect("plan").refused.push((from, to));
                    return refusal(&w, &id, w.render(cap, from, to, ok_to));
                }
            }
            let rewrite = proxy.rewrite.lock().expect("rewrite").clone();
            if let (Some(f), "eth_getLogs") = (rewrite, method.as_str()) {
                bytes = rewritten(&bytes, &*f);
            }
            if method == "eth_getLogs" {
                let filter = json["params"][0].clone();
                let omitting = proxy.omitting.clone();
                bytes = rewritten(&bytes, &move |logs: &mut Vec<serde_json::Value>| {
                    if let Some(o) = omitting.lock().expect("omitting").as_mut() {
                        o.leave_out(&filter, logs);
                    }
                });
            }
            (status, [("content-type", "application/json")], bytes).into_response()
        }
        Err(_) => (StatusCode::BAD_GATEWAY, "upstream unreachable").into_response(),
    }
}

/// An `eth_getLogs` answer with its logs passed through `f` (other answers,
/// e.g. errors, unchanged).
fn rewritten(body: &[u8], f: &(dyn Fn(&mut Vec<serde_json::Value>) + Send + Sync)) -> Vec<u8> {
    let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return body.to_vec();
    };
    let Some(logs) = json.get_mut("result").and_then(|r| r.as_array_mut()) else {
        return body.to_vec();
    };
    f(logs);
    serde_json::to_vec(&json).expect("JSON re-serialises")
}
