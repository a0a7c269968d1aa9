//! Endpoints that answer too much, or try to make the daemon print its
//! keys: an answer over `chain.max_answer_mib` is not read to its end (and
//! a getLogs range too large for it shrinks, like a result-limit refusal);
//! an error body is not read past 64 KiB; and at `trace`, with a filter
//! that asks for the network crates' internals, no output holds an API
//! key, a password, or either in another form.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::support::chain::{order_ref, Chain};
use crate::support::daemon::{command, env_for, with, Daemon};
use crate::support::db::Db;
use crate::support::wait_for;

const KEY: &str = "KeYoFtHePrOvIdEr0123";
const QUERY_KEY: &str = "QuErYkEy4567890abc";
const WS_USER: &str = "wsuser123";
const WS_PASSWORD: &str = "PaSsWoRd-0f-tHe-WS";
/// What a hostile endpoint streams, at most: far more than any cap here.
const HUGE: u64 = 256 << 20;

/// Bytes each streaming endpoint handed to its socket.
#[derive(Default)]
struct Streamed {
    ok: AtomicU64,
    error: AtomicU64,
}

/// A body of `HUGE` bytes that counts what is taken from it.
fn huge(prefix: &'static str, counter: Arc<Streamed>, ok: bool) -> Body {
    const CHUNK: usize = 64 * 1024;
    let chunks = futures::stream::unfold(0u64, move |sent| {
        let counter = counter.clone();
        async move {
            if sent >= HUGE {
                return None;
            }
            let chunk = if sent == 0 {
                let mut c = prefix.as_bytes().to_vec();
                c.resize(CHUNK, b'a');
                c
            } else {
                vec![b'a'; CHUNK]
            };
            let which = if ok { &counter.ok } else { &counter.error };
            which.fetch_add(CHUNK as u64, Ordering::Relaxed);
            Some((
                Ok::<_, std::io::Error>(Bytes::from(chunk)),
                sent + CHUNK as u64,
            ))
        }
    });
    Body::from_stream(chunks)
}

/// A JSON-RPC endpoint misbehaving as its first path segment says; the key
/// is in every URL's path and query.
async fn hostile() -> (String, Arc<Streamed>) {
    let streamed = Arc::new(Streamed::default());
    let counter = streamed.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let counter = counter.clone();
        async move {
            let path = uri.path().to_owned();
            let echo = format!("https:\\/\\/rpc.example\\/v2\\/{KEY}?apikey={QUERY_KEY}");
            let json = |status: StatusCode, body: serde_json::Value| -> Response {
                (status, axum::Json(body)).into_response()
            };
            match path.split('/').nth(1).unwrap_or("") {
                "huge200" => Response::new(huge(
                    r#"{"jsonrpc":"2.0","id":1,"result":"0x"#,
                    counter,
                    true,
                )),
                "huge500" => {
                    let mut r = Response::new(huge("oops ", counter, false));
                    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                    r
                }
                // The key echoed JSON-escaped, in a plain error body…
                "echo500" => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(r#"{{"error":"no such key: {echo}"}}"#),
                )
                    .into_response(),
                // …in a JSON-RPC error's message and data…
                "echorpc" => json(
                    StatusCode::OK,
                    serde_json::json!({"jsonrpc": "2.0", "id": 0, "error": {
                        "code": -32000,
                        "message": format!("invalid api key {KEY} for {path}"),
                        "data": echo,
                    }}),
                ),
                // …and in a redirect's target (never followed).
                _ => (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(
                        "location",
                        format!("http://127.0.0.1:9/v2/{KEY}?apikey={QUERY_KEY}"),
                    )],
                )
                    .into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (format!("http://{addr}"), streamed)
}

/// A websocket endpoint that refuses the handshake, echoing the request
/// (its `Authorization` header included) in the refusal.
async fn refusing_ws() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = vec![0u8; 4096];
                let n = socket.read(&mut request).await.unwrap_or(0);
                let echoed = String::from_utf8_lossy(&request[..n]).replace("\r\n", " | ");
                let answer = format!(
                    "HTTP/1.1 401 Unauthorized\r\ncontent-length: {}\r\n\r\n{echoed}",
                    echoed.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    format!("ws://{WS_USER}:{WS_PASSWORD}@{addr}/v2/{KEY}")
}

/// Every form of a secret this file hands out that must never be printed.
fn secrets() -> Vec<String> {
    use base64::Engine as _;
    vec![
        KEY.to_owned(),
        QUERY_KEY.to_owned(),
        WS_PASSWORD.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(format!("{WS_USER}:{WS_PASSWORD}")),
    ]
}

fn assert_no_secret(output: &str, what: &str) {
    for secret in secrets() {
        assert!(
            !output.contains(&secret),
            "{what} printed a secret ({secret}):\n{output}"
        );
    }
}

/// `status --json` against one endpoint: its `head_error`, and everything
/// it printed.
async fn status_against(url: String, pairs: &[(&str, String)]) -> (String, String) {
    let chain = Chain::start().await;
    let db = Db::new().await;
    let mut set = vec![("LIQPASS__CHAIN__RPC_URL", url)];
    set.extend(pairs.iter().cloned());
    let env = with(&env_for(&chain, &db), &set);
    let out = tokio::task::spawn_blocking(move || command(&env, &["status", "--json"]))
        .await
        .expect("status ran");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let error = doc["head_error"]
        .as_str()
        .unwrap_or_else(|| panic!("no head_error: {doc}"))
        .to_owned();
    (error, format!("{stdout}\n{stderr}"))
}

/// Far below `HUGE`: what a reader that stops at the cap lets through
/// socket buffers.
const READ_AT_MOST: u64 = 32 << 20;

#[tokio::test]
async fn an_answer_over_the_cap_and_a_huge_error_body_are_not_read_to_their_end() {
    let (base, streamed) = hostile().await;
    let cap = [("LIQPASS__CHAIN__MAX_ANSWER_MIB", "1".to_owned())];

    let (error, _) = status_against(format!("{base}/huge200/v2/{KEY}"), &cap).await;
    assert!(
        error.contains("larger than 1048576 bytes"),
        "the cap is named: {error}"
    );
    let sent = streamed.ok.load(Ordering::Relaxed);
    assert!(
        sent < READ_AT_MOST,
        "{sent} bytes of a 200 answer were taken; the cap is 1 MiB"
    );

    let (error, _) = status_against(format!("{base}/huge500/v2/{KEY}"), &cap).await;
    assert!(
        error.contains("HTTP error 500") && error.contains("body over 65536 bytes"),
        "{error}"
    );
    let sent = streamed.error.load(Ordering::Relaxed);
    assert!(
        sent < READ_AT_MOST,
        "{sent} bytes of an error body were taken"
    );
}

/// Payments in the chain that `indexed_past_the_cap` builds.
const OVER_THE_CAP: u64 = 2_400;

/// 2,400 payments in 24 blocks, then blocks enough to put them below the
/// reorg window (whose blocks are fetched one by one): about 2 MB of
/// getLogs answer, over a 1 MiB cap, which the first range asks for whole.
/// A daemon on `rpc_url` (the chain's, as `url` makes it) indexes every
/// payment once; its log.
async fn indexed_past_the_cap(url: fn(&Chain) -> String) -> String {
    let chain = Chain::start().await;
    for i in 0..OVER_THE_CAP / 100 {
        chain
            .emit_many(chain.buyers[0], order_ref(50_000 + i * 100), 100, 1)
            .await;
    }
    chain.mine(40).await;
    let db = Db::new().await;
    let env = with(
        &env_for(&chain, &db),
        &[
            ("LIQPASS__CHAIN__RPC_URL", url(&chain)),
            ("LIQPASS__CHAIN__MAX_ANSWER_MIB", "1".into()),
            ("LIQPASS__CHAIN__REORG_WINDOW", "8".into()),
            ("LIQPASS__CHAIN__REQUEST_TIMEOUT_MS", "2000".into()),
        ],
    );
    let daemon = Daemon::spawn(&env);
    db.wait_events(OVER_THE_CAP as i64).await;
    assert_eq!(db.events().await.len() as u64, OVER_THE_CAP, "each once");
    daemon.logs()
}

/// Over http the answer is refused as too large, and the range shrinks.
#[tokio::test]
async fn a_getlogs_answer_over_the_cap_shrinks_the_range() {
    let logs = indexed_past_the_cap(Chain::rpc_url).await;
    assert!(
        logs.contains("larger than 1048576 bytes"),
        "the first range's answer was over the cap: {logs}"
    );
}

/// Over a websocket (`ws://`) a message over the cap closes the
/// connection, and alloy sends the request again on each reconnect, so it
/// times out; the connection is then dropped (not reused for the next
/// request, which would time out behind it), the range shrunk, and every
/// payment indexed once, without the endpoint ever being rested.
#[tokio::test]
async fn over_a_websocket_an_answer_over_the_cap_shrinks_the_range_too() {
    let logs = indexed_past_the_cap(Chain::ws_url).await;
    assert!(
        logs.contains("getLogs timed out; shrinking the range"),
        "an answer was over the cap: {logs}"
    );
    assert!(
        !logs.contains("endpoint keeps failing; resting it"),
        "the endpoint was rested: {logs}"
    );
}

/// The daemon at `trace`, `RUST_LOG` asking for alloy's HTTP transport and
/// tungstenite at their most verbose, against endpoints failing in every
/// way above (and a websocket one whose URL holds a user and password):
/// each failure is logged, and no line holds a secret in any form. Then
/// `status --json` against each: the same.
#[tokio::test]
async fn at_trace_no_output_holds_a_key_or_password() {
    let (base, _) = hostile().await;
    let ws = refusing_ws().await;
    let q = format!("apikey={QUERY_KEY}");
    let urls = vec![
        format!("{base}/echo500/v2/{KEY}?{q}"),
        format!("{base}/echorpc/v2/{KEY}?{q}"),
        format!("{base}/redirect/v2/{KEY}?{q}"),
        format!("{base}/huge200/v2/{KEY}?{q}"),
        format!("{base}/huge500/v2/{KEY}?{q}"),
        ws,
    ];
    let loud = [
        (
            "RUST_LOG",
            "trace,alloy_transport_http::reqwest_transport=trace,tungstenite=trace,\
             tokio_tungstenite=trace,hyper=trace,reqwest=trace"
                .to_owned(),
        ),
        ("LIQPASS__CHAIN__MAX_ANSWER_MIB", "1".to_owned()),
    ];

    let chain = Chain::start().await;
    let db = Db::new().await;
    let mut set = vec![("LIQPASS__CHAIN__RPC_URLS", urls.join(","))];
    set.push(("LIQPASS__CHAIN__RPC_URL", String::new()));
    set.extend(loud.iter().cloned());
    let daemon = Daemon::spawn(&with(&env_for(&chain, &db), &set));
    let logs = wait_for(
        "a warning for each endpoint",
        Duration::from_secs(60),
        || async {
            let logs = daemon.logs();
            (logs.matches("endpoint unreachable at start").count() >= urls.len()).then_some(logs)
        },
    )
    .await;
    drop(daemon);
    assert!(
        logs.contains("DEBUG sqlx::query") && logs.contains("<redacted>"),
        "the daemon logged at RUST_LOG's level, and redacted: {logs}"
    );
    assert_no_secret(&logs, "run at trace");

    for url in urls {
        let (error, output) = status_against(url, &loud).await;
        assert!(!error.is_empty());
        assert_no_secret(&output, "status --json at trace");
    }
}
