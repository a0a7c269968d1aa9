//! A request budget per endpoint (`chain.max_requests_per_second`): a token
//! bucket that every request to the endpoint takes a token from before it
//! is sent, alloy's retries included (the layer sits below the retry layer).
//! The rate adapts (AIMD): a rate limit halves it and pauses the bucket for
//! as long as the provider asked (Retry-After, "try again in N ms",
//! Infura's `data.rate.backoff_seconds`), and answers that are not rate
//! limits raise it again, linearly in time (a fiftieth of the configured
//! rate per second), back up to the configured rate. The bucket's lock is
//! never held across an await.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use alloy::rpc::json_rpc::{RequestPacket, ResponsePacket};
use alloy::transports::layers::RetryPolicy;
use alloy::transports::{TransportError, TransportFut};

use super::retry_policy::{is_rate_limit, RateLimitsOnly};

/// The lowest rate a run of rate limits brings the budget down to.
const FLOOR_PER_S: f64 = 0.5;
/// Share of the configured rate won back per second of answers that are
/// not rate limits: from half the rate back to all of it in 25 s.
const GAIN_PER_S: f64 = 1.0 / 50.0;
/// A rate limit without a hint pauses the bucket this long.
const DEFAULT_PAUSE: Duration = Duration::from_secs(1);
/// Tokens the bucket holds at most, as a share of a second's worth: any
/// one-second window sees at most 1.2 times the rate.
const BURST: f64 = 0.2;

/// The bucket (pure: time comes in as an argument).
#[derive(Debug)]
struct Bucket {
    max: f64,
    rate: f64,
    tokens: f64,
    refilled: Instant,
    paused_until: Option<Instant>,
    /// Since when answers have raised the rate.
    gained: Instant,
    /// Rate limits seen since start.
    limits: u64,
}

impl Bucket {
    fn new(per_second: f64, now: Instant) -> Self {
        let max = per_second.max(FLOOR_PER_S);
        Self {
            max,
            rate: max,
            tokens: (max * BURST).max(1.0),
            refilled: now,
            paused_until: None,
            gained: now,
            limits: 0,
        }
    }

    /// Takes a token now, or says how long to wait before asking again.
    fn take(&mut self, now: Instant) -> Option<Duration> {
        if let Some(until) = self.paused_until {
            if now < until {
                return Some(until - now);
            }
            self.paused_until = None;
            self.refilled = until;
        }
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        // Bursts stay small: providers count requests per (rolling) second.
        self.tokens = (self.tokens + elapsed * self.rate).min((self.rate * BURST).max(1.0));
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }

    /// The provider said "too many": halve the rate, pause for its hint.
    fn limited(&mut self, now: Instant, hint: Option<Duration>) {
        self.rate = (self.rate / 2.0).max(FLOOR_PER_S);
        self.tokens = 0.0;
        self.limits += 1;
        let until = now + hint.unwrap_or(DEFAULT_PAUSE);
        let until = self.paused_until.map_or(until, |u| u.max(until));
        self.paused_until = Some(until);
        self.gained = until;
    }

    /// An answer that is not a rate limit: win back the rate, in proportion
    /// to the time since the last gain.
    fn answered(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.gained).as_secs_f64();
        self.gained = self.gained.max(now);
        self.rate = (self.rate + self.max * GAIN_PER_S * elapsed).min(self.max);
    }
}

/// One endpoint's budget, shared by its connections (kept by the pool, so
/// that a rebuilt connection does not start over at full rate).
#[derive(Debug, Clone)]
pub struct Budget(Arc<Mutex<Bucket>>);

impl Budget {
    pub fn new(per_second: u64) -> Self {
        Self(Arc::new(Mutex::new(Bucket::new(
            per_second as f64,
            Instant::now(),
        ))))
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True when both are the same bucket (two pools sharing an endpoint's
    /// budget).
    pub fn is_shared_with(&self, other: &Budget) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Waits for a token.
    pub async fn acquire(&self) {
        loop {
            let wait = self.bucket().take(Instant::now());
            match wait {
                None => return,
                Some(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// The requests per second currently allowed.
    pub fn rate(&self) -> f64 {
        self.bucket().rate
    }

    /// The configured rate: the most the budget ever allows.
    pub fn ceiling(&self) -> f64 {
        self.bucket().max
    }

    /// Rate-limit answers seen since start.
    pub fn rate_limits(&self) -> u64 {
        self.bucket().limits
    }

    /// Adapts the rate to an answer.
    pub fn observe(&self, error: Option<&TransportError>) {
        match error {
            Some(e) if is_rate_limit(e) => {
                let hint = RateLimitsOnly.backoff_hint(e);
                self.bucket().limited(Instant::now(), hint);
            }
            _ => self.bucket().answered(Instant::now()),
        }
    }
}

/// The tower layer that puts a [`Budget`] (if any) in front of a transport.
#[derive(Debug, Clone)]
pub struct BudgetLayer(pub Option<Budget>);

impl<S> tower::Layer<S> for BudgetLayer {
    type Service = BudgetService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BudgetService {
            inner,
            budget: self.0.clone(),
        }
    }
}

/// See [`BudgetLayer`].
#[derive(Debug, Clone)]
pub struct BudgetService<S> {
    inner: S,
    budget: Option<Budget>,
}

impl<S> tower::Service<RequestPacket> for BudgetService<S>
where
    S: tower::Service<
            RequestPacket,
            Response = ResponsePacket,
            Future = TransportFut<'static>,
            Error = TransportError,
        > + Send
        + Clone
        + 'static,
{
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: RequestPacket) -> Self::Future {
        // The clone is not known to be ready: keep the ready one for this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some(budget) = self.budget.clone() else {
            return inner.call(request);
        };
        Box::pin(async move {
            budget.acquire().await;
            let answer = inner.call(request).await;
            match &answer {
                Ok(packet) => match packet.as_error() {
                    Some(e) => budget.observe(Some(&TransportError::ErrorResp(e.clone()))),
                    None => budget.observe(None),
                },
                Err(e) => budget.observe(Some(e)),
            }
            answer
        })
    }
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
