//! The read-only HTTP endpoint: `/healthz` (the loop is alive), `/readyz`
//! (database answers, RPC answers, caught up, no unacknowledged deep reorg)
//! and `/metrics` (Prometheus text). GET only; nothing here writes, and no
//! response carries a secret.
//!
//! The endpoint may face more than Prometheus and the kubelet, so it is
//! bounded: at most [`MAX_CONNECTIONS`] connections are served at once
//! (more wait in the kernel's backlog), a client has
//! [`HEADER_READ_TIMEOUT`] to send its request's headers and
//! [`CONNECTION_TIMEOUT`] for the whole exchange, one request per
//! connection; and however many requests come, the database is asked
//! whether it answers at most once per [`DB_CHECK_EVERY`] (the answer is
//! shared), so requests cannot load it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus::Registry;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::metrics::Metrics;
use crate::store::Store;

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    pub health: Health,
    pub store: Store,
    pub registry: Arc<Registry>,
    pub metrics: Metrics,
    pub max_ready_lag_blocks: u64,
    /// The database's last answer to a ping, shared by every request.
    pub db_check: Arc<DbCheck>,
}

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;
/// How long a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection (its one request and answer) may last.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// How old the database's last answer may be before it is asked again.
pub const DB_CHECK_EVERY: Duration = Duration::from_secs(1);
/// `/readyz`'s reason when the database does not answer its ping.
pub const DB_DOES_NOT_ANSWER: &str = "database does not answer";
/// How long the database has to answer a ping.
const DB_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the database answered, asked at most once per
/// [`DB_CHECK_EVERY`]: requests that come while it is being asked wait for
/// that answer.
#[derive(Default)]
pub struct DbCheck(Mutex<Option<(Instant, bool)>>);

impl DbCheck {
    async fn answers(&self, store: &Store) -> bool {
        let mut last = self.0.lock().await;
        if let Some((at, answered)) = *last {
            if at.elapsed() < DB_CHECK_EVERY {
                return answered;
            }
        }
        // Stamped when asked: an answer is never older than it says.
        let asked = Instant::now();
        let answered = matches!(
            tokio::time::timeout(DB_CHECK_TIMEOUT, store.ping()).await,
            Ok(Ok(()))
        );
        *last = Some((asked, answered));
        answered
    }
}

/// The router, for tests and for [`serve`].
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// How long a shutdown waits for the connections in flight.
const DRAIN: Duration = Duration::from_secs(4);

/// Serves on `listener` until `shutdown` fires, then waits for the
/// connections in flight, [`DRAIN`] at most.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(state);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: pause, as axum::serve does.
                    tracing::warn!(error = %e, "HTTP endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            // A client too slow to send or to read is dropped.
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
        });
    }
    // The caller waits 5 s for this task: connections still open at 4 s
    // are dropped with it.
    let _ = tokio::time::timeout(DRAIN, slots.acquire_many(MAX_CONNECTIONS as u32)).await;
    Ok(())
}

async fn healthz(State(state): State<AppState>) -> Response {
    if state.health.alive() {
        (StatusCode::OK, Json(json!({"alive": true}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"alive": false})),
        )
            .into_response()
    }
}

/// `None` when ready, else why not; also sets the `ready` gauge.
async fn not_ready(state: &AppState) -> Option<String> {
    let db_answers = state.db_check.answers(&state.store).await;
    let waiting = state.store.lock_wait();
    state.metrics.db_lock_wait_seconds.set(
        waiting
            .as_ref()
            .map_or(0.0, |w| w.since.elapsed().as_secs_f64()),
    );
    let reason = if db_answers {
        state
            .health
            .readiness(state.max_ready_lag_blocks, waiting)
            .err()
            .map(|r| r.to_string())
    } else {
        Some(DB_DOES_NOT_ANSWER.to_owned())
    };
    state.metrics.ready.set(i64::from(reason.is_none()));
    state.metrics.stalled.set(i64::from(state.health.stalled()));
    reason
}

async fn readyz(State(state): State<AppState>) -> Response {
    match not_ready(&state).await {
        None => (
            StatusCode::OK,
            Json(json!({"ready": true, "role": state.health.role()})),
        )
            .into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": reason, "role": state.health.role()})),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    not_ready(&state).await;
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        crate::metrics::render(&state.registry),
    )
        .into_response()
}
