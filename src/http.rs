//! The read-only HTTP endpoint: `/healthz` (the loop is alive), `/readyz`
//! (database answers, RPC answers, caught up, no unacknowledged deep reorg)
//! and `/metrics` (Prometheus text). GET only; nothing here writes, and no
//! response carries a secret.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus::Registry;
use serde_json::json;
use tokio::net::TcpListener;
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
}

/// The router, for tests and for [`serve`].
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves on `listener` until `shutdown` fires, then drains in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
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
    let db = tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await;
    let waiting = state.store.lock_wait();
    state.metrics.db_lock_wait_seconds.set(
        waiting
            .as_ref()
            .map_or(0.0, |w| w.since.elapsed().as_secs_f64()),
    );
    let reason = match db {
        Ok(Ok(())) => state
            .health
            .readiness(state.max_ready_lag_blocks, waiting)
            .err()
            .map(|r| r.to_string()),
        Ok(Err(_)) | Err(_) => Some("database does not answer".to_owned()),
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
