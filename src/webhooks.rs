//! The webhook dispatcher: delivers each outbox row (`payment_notifications`)
//! as a signed HTTP POST, Standard Webhooks style, at least once.
//!
//! It runs on the leader only, beside the indexer, and writes each attempt's
//! result through the leader's fenced store, one short transaction each, so
//! a restart or the next leader resumes from the persisted state. Rows about
//! one order go out in id order, one at a time (`store::deliveries::due`);
//! up to `webhooks.max_in_flight` orders' rows are in flight at once, so a
//! receiver failing one order holds up no other. 2xx is delivered; 410
//! disables the endpoint until the process exits (in this term and any
//! later one; the queue gauges stay current); anything else (other
//! statuses, refused connections, timeouts) is retried with exponential
//! backoff and jitter until the row is `webhooks.give_up_after` old.
//!
//! It must never print the secret or the URL's path and query: the URL
//! prints through `SecretUrl`'s redaction and errors drop it.

mod sign;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::WebhookSettings;
use crate::metrics::Metrics;
use crate::retry;
use crate::store::deliveries::{self, Attempt, Due};
use crate::store::{Conn, Store, StoreError, TxWork};

pub use sign::signature;

/// How often an idle dispatcher looks for due rows.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// How often the queue gauges are refreshed.
const QUEUE_EVERY: Duration = Duration::from_secs(2);

/// Delivers the outbox to `settings.url` until `cancel` fires.
pub struct Dispatcher {
    sender: Arc<Sender>,
    store: Store,
    metrics: Metrics,
}

/// What one attempt needs: the client and the settings.
struct Sender {
    settings: WebhookSettings,
    client: reqwest::Client,
}

impl Dispatcher {
    /// A dispatcher writing its results through `store` (the leader's
    /// fenced store).
    pub fn new(
        settings: WebhookSettings,
        store: Store,
        metrics: Metrics,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout)
            // A redirect is an answer other than 2xx: retried, not followed.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("liqpass-indexer/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            sender: Arc::new(Sender { settings, client }),
            store,
            metrics,
        })
    }

    /// Delivers until `cancel` fires (requests in flight are dropped and
    /// sent again later: at least once). Returns `Err` only when the fence
    /// refused a write: this replica no longer leads.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), StoreError> {
        // The queue gauges are the leader's: they drop to 0 when this term
        // ends (returned, or aborted with the term), so a standby never
        // shows a stale backlog.
        let _gauges = ZeroOnDrop(self.metrics.clone());
        let url = &self.sender.settings.url;
        if self.metrics.webhook_endpoint_disabled.get() > 0 {
            tracing::error!(%url, "webhook endpoint disabled (410 Gone) earlier in this process: \
                nothing is sent until the daemon restarts");
            return self.while_disabled(&cancel).await;
        }
        tracing::info!(%url, "webhook dispatcher started");
        // Each attempt runs as its own task, so a request makes progress
        // (and its timeout counts) only while it is really waiting on the
        // receiver, never while this loop waits on the database.
        let mut flying: JoinSet<(Due, Attempt)> = JoinSet::new();
        let mut busy: HashSet<i64> = HashSet::new();
        let mut queue_at: Option<tokio::time::Instant> = None;
        let mut failing = false;
        loop {
            if queue_at.is_none_or(|t| t.elapsed() >= QUEUE_EVERY) {
                self.refresh_queue().await;
                queue_at = Some(tokio::time::Instant::now());
            }
            let room = self.sender.settings.max_in_flight - flying.len();
            if room > 0 {
                match self.due(room + busy.len()).await {
                    Ok(rows) => {
                        let fresh: Vec<Due> = rows
                            .into_iter()
                            .filter(|r| !busy.contains(&r.id))
                            .take(room)
                            .collect();
                        for row in fresh {
                            busy.insert(row.id);
                            flying.spawn(self.sender.clone().attempt(row));
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "reading due webhooks failed"),
                }
            }
            let done = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                Some(done) = flying.join_next(), if !flying.is_empty() => done,
                _ = tokio::time::sleep(IDLE_POLL) => continue,
            };
            let Ok((row, attempt)) = done else {
                // A panicked attempt: its row stays due and goes out again.
                continue;
            };
            busy.remove(&row.id);
            self.report(&row, &attempt, &mut failing);
            match self.store.write(&Record(row.id, attempt.clone())).await {
                Ok(_) => {}
                Err(e @ StoreError::Fenced { .. }) => return Err(e),
                // Not recorded: the row stays due and goes out again.
                Err(e) => {
                    tracing::warn!(id = row.id, error = %e, "recording a webhook attempt failed")
                }
            }
            if attempt == Attempt::Gone {
                self.metrics.webhook_endpoint_disabled.set(1);
                tracing::error!(
                    %url,
                    "the webhook receiver answered 410 Gone: endpoint disabled, nothing more is \
                     sent until the daemon restarts"
                );
                flying.abort_all();
                return self.while_disabled(&cancel).await;
            }
        }
    }

    /// Disabled (410): sends nothing, but keeps the queue gauges current so
    /// the backlog alert still sees the queue grow.
    async fn while_disabled(&self, cancel: &CancellationToken) -> Result<(), StoreError> {
        loop {
            self.refresh_queue().await;
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(QUEUE_EVERY) => {}
            }
        }
    }

    async fn due(&self, limit: usize) -> Result<Vec<Due>, StoreError> {
        let mut pooled = self.store.read().await?;
        deliveries::due(&mut pooled.conn(), limit).await
    }

    async fn refresh_queue(&self) {
        let read = async {
            let mut pooled = self.store.read().await?;
            deliveries::queue(&mut pooled.conn()).await
        };
        match read.await {
            Ok((depth, oldest)) => {
                self.metrics.webhook_queue_depth.set(depth);
                self.metrics.webhook_oldest_undelivered_age.set(oldest);
            }
            Err(e) => tracing::warn!(error = %e, "reading the webhook queue failed"),
        }
    }

    /// Metrics and the log lines of one attempt's result.
    fn report(&self, row: &Due, attempt: &Attempt, failing: &mut bool) {
        let result = match attempt {
            Attempt::Delivered { .. } => "delivered",
            Attempt::Failed { .. } => "failed",
            Attempt::GaveUp { .. } => "gave_up",
            Attempt::Gone => "gone",
        };
        self.metrics.record_webhook(result);
        match attempt {
            Attempt::Delivered { .. } if *failing => {
                *failing = false;
                tracing::info!("the webhook receiver accepts deliveries again");
            }
            Attempt::Failed {
                status,
                error,
                after,
            } => {
                if !*failing {
                    *failing = true;
                    tracing::warn!(id = row.id, status, %error, "webhook delivery failing; retrying with backoff");
                }
                tracing::debug!(id = row.id, attempts = row.attempts + 1, status, %error, retry_in_ms = after.as_millis() as u64, "webhook delivery failed");
            }
            Attempt::GaveUp { status, error } => tracing::warn!(
                id = row.id,
                event_id = %row.event_id,
                attempts = row.attempts + 1,
                status,
                %error,
                "webhook given up: undelivered past webhooks.give_up_after_s"
            ),
            _ => {}
        }
    }
}

impl Sender {
    /// One POST of `row`, and what it came to.
    async fn attempt(self: Arc<Self>, row: Due) -> (Due, Attempt) {
        let body = body(&row);
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let signature = signature(
            self.settings.secret.expose(),
            &row.event_id,
            timestamp,
            &body,
        );
        let sent = self
            .client
            .post(self.settings.url.expose().clone())
            .header("content-type", "application/json")
            .header("webhook-id", &row.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let failed = |status: Option<u16>, error: String| {
            if row.age_s >= self.settings.give_up_after.as_secs() as i64 {
                Attempt::GaveUp { status, error }
            } else {
                let after = retry::delivery_delay(
                    self.settings.retry_initial,
                    self.settings.retry_max,
                    row.attempts as u32 + 1,
                );
                Attempt::Failed {
                    status,
                    error,
                    after,
                }
            }
        };
        let attempt = match sent {
            Ok(r) if r.status().is_success() => Attempt::Delivered {
                status: r.status().as_u16(),
            },
            Ok(r) if r.status() == reqwest::StatusCode::GONE => Attempt::Gone,
            Ok(r) => failed(Some(r.status().as_u16()), format!("HTTP {}", r.status())),
            Err(e) => failed(None, describe(e)),
        };
        (row, attempt)
    }
}

/// Sets the queue gauges to 0 when dropped (the 410 state is the
/// process's, kept until it exits).
struct ZeroOnDrop(Metrics);

impl Drop for ZeroOnDrop {
    fn drop(&mut self) {
        self.0.webhook_queue_depth.set(0);
        self.0.webhook_oldest_undelivered_age.set(0);
    }
}

/// The POST body: the row's type, its creation time and its payload, the
/// same bytes at every attempt.
fn body(row: &Due) -> String {
    let data: serde_json::Value = serde_json::from_str(&row.payload)
        .unwrap_or_else(|_| serde_json::Value::String(row.payload.clone()));
    serde_json::json!({
        "type": row.kind,
        "timestamp": row.created_at,
        "data": data,
    })
    .to_string()
}

/// A request error and its causes, without the URL.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// One attempt's result, recorded in a fenced transaction.
struct Record(i64, Attempt);

impl TxWork for Record {
    type Output = ();
    fn run<'t>(
        &'t self,
        tx: &'t mut Conn<'t>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + 't {
        deliveries::record(tx, self.0, &self.1)
    }
}
