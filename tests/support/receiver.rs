//! A real webhook receiver: an HTTP server on a local port that records
//! every request (headers and body) and answers as the test scripts it:
//! a queue of replies for the next requests, then a default; a status per
//! order; or a hang longer than the sender's timeout.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

/// What the receiver answers to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Status(u16),
    /// No answer for this long (then 200, which the sender no longer reads).
    Hang(Duration),
}

/// One request as received, and what it was answered.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
    pub reply: Reply,
}

impl Delivery {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
    pub fn accepted(&self) -> bool {
        matches!(self.reply, Reply::Status(s) if (200..300).contains(&s))
    }
}

#[derive(Default)]
struct Script {
    next: VecDeque<Reply>,
    default: Option<Reply>,
    by_order: HashMap<String, Reply>,
    seen: Vec<Delivery>,
}

/// A running receiver; it stops when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    stop: CancellationToken,
}

impl Receiver {
    /// A receiver on a free port answering `first` to the first requests,
    /// in turn, then 200.
    pub async fn start(first: &[Reply]) -> Receiver {
        Self::start_on("127.0.0.1:0".parse().expect("an address"), first).await
    }

    /// The same on `addr` (a port reserved earlier with [`free_port`]).
    pub async fn start_on(addr: SocketAddr, first: &[Reply]) -> Receiver {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("an address");
        let script = Arc::new(Mutex::new(Script {
            next: first.iter().copied().collect(),
            default: Some(Reply::Status(200)),
            ..Script::default()
        }));
        let app = Router::new()
            .route("/hooks", post(receive))
            .with_state(script.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await
                .expect("the receiver serves")
        });
        Receiver { addr, script, stop }
    }

    /// The URL to configure, with a token in its query (a secret the
    /// daemon must never print).
    pub fn url(&self) -> String {
        url_of(self.addr)
    }

    /// Answers every request not scripted otherwise with `reply`.
    pub fn always(&self, reply: Reply) {
        self.script().default = Some(reply);
    }

    /// Answers every request about `order_id` with `reply` (`None`: as the
    /// rest).
    pub fn for_order(&self, order_id: &str, reply: Option<Reply>) {
        let mut s = self.script();
        match reply {
            Some(r) => s.by_order.insert(order_id.to_owned(), r),
            None => s.by_order.remove(order_id),
        };
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Delivery> {
        self.script().seen.clone()
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().expect("receiver lock")
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The receiver URL for `addr`.
pub fn url_of(addr: SocketAddr) -> String {
    format!("http://{addr}/hooks?token={URL_TOKEN}")
}

/// The token in the receiver URL's query.
pub const URL_TOKEN: &str = "tok3n-in-the-query";

/// A local port nothing listens on (yet): connections to it are refused.
pub async fn free_port() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    l.local_addr().expect("an address")
}

async fn receive(
    State(script): State<Arc<Mutex<Script>>>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let order = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["data"]["order_id"].as_str().map(str::to_owned));
    let reply = {
        let mut s = script.lock().expect("receiver lock");
        let reply = match order.as_ref().and_then(|o| s.by_order.get(o)) {
            Some(r) => *r,
            None => match s.next.pop_front() {
                Some(r) => r,
                None => s.default.unwrap_or(Reply::Status(200)),
            },
        };
        s.seen.push(Delivery {
            id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
            body,
            reply,
        });
        reply
    };
    match reply {
        Reply::Status(s) => StatusCode::from_u16(s).expect("a status"),
        Reply::Hang(d) => {
            tokio::time::sleep(d).await;
            StatusCode::OK
        }
    }
}

/// A signing key as the daemon's `webhooks.secret` takes it.
pub fn secret_of(key: &[u8]) -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// Verifies `signature` (space-separated `v1,<base64>` values) over
/// `id.timestamp.body` with `key`, as README "Webhooks" tells a receiver
/// to: written here from the specification, not shared with the daemon.
pub fn verifies(key: &[u8], id: &str, timestamp: &str, body: &str, signature: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    signature
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|s| s == expected)
}
