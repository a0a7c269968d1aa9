//! A request budget per endpoint: a token bucket that every request to the
//! endpoint takes a token from before it is sent, alloy's retries included
//! (the layer sits below the retry layer), so every rate-limit answer is
//! seen and counted here, once, per endpoint.
//!
//! With `chain.max_requests_per_second` the rate adapts under that ceiling
//! (AIMD): a rate limit halves it and pauses the bucket for as long as the
//! provider asked (Retry-After, "try again in N ms", Infura's
//! `data.rate.backoff_seconds`), and answers that are not rate limits raise
//! it again, linearly in time (a fiftieth of the configured rate per
//! second). Without it the rate is **learned**: nothing waits until the
//! first rate limit; then the rate becomes what the provider accepted over
//! the last second, a little under it, and grows slowly (half a percent a
//! second) until the next episode of rate limits cuts it again (to what was
//! accepted, less 10 %, but never below half the most the provider
//! accepted in a second over the last minute: a stray 429 at a quiet moment
//! does not throttle the next catch-up); the bucket holds a
//! second's worth, as providers' buckets do, and is full when a pause ends,
//! so the pause a provider asks for is made up by the burst its refilled
//! bucket accepts after it. The bucket's lock is never held across an
//! await.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use alloy::rpc::json_rpc::{RequestPacket, ResponsePacket};
use alloy::transports::layers::RetryPolicy;
use alloy::transports::{TransportError, TransportFut};
use prometheus::IntCounter;

use super::retry_policy::{is_rate_limit, RateLimitsOnly};

/// The lowest rate a run of rate limits brings the budget down to.
const FLOOR_PER_S: f64 = 0.5;
/// Share of the configured rate won back per second of answers that are
/// not rate limits: from half the rate back to all of it in 25 s.
const GAIN_PER_S: f64 = 1.0 / 50.0;
/// A rate limit without a hint pauses the bucket this long.
const DEFAULT_PAUSE: Duration = Duration::from_secs(1);
/// Tokens the bucket holds at most, as a share of a second's worth, under a
/// configured rate: any one-second window sees at most 1.2 times the rate.
const BURST: f64 = 0.2;
/// Learned rates: the window over which the accepted answers are counted.
const LEARN_WINDOW: Duration = Duration::from_secs(1);
/// Learned rates: the share of the accepted rate (or of the rate before)
/// the budget keeps to after a rate limit.
const LEARN_MARGIN: f64 = 0.9;
/// Learned rates: growth per second of answers that are not rate limits,
/// probing for more (a provider that raised its limit, a first estimate
/// that was low).
const LEARN_GAIN_PER_S: f64 = 0.005;

/// Learned rates: a cut never goes below this share of the most the
/// provider accepted in one window over the last [`PEAK_KEPT`].
const PEAK_SHARE: f64 = 0.5;
const PEAK_KEPT: Duration = Duration::from_secs(60);
/// Learned rates: the share of a full bucket held when a pause ends.
const AFTER_PAUSE: f64 = 0.5;

/// The bucket (pure: time comes in as an argument).
#[derive(Debug)]
struct Bucket {
    /// The configured rate; `None`: learned.
    max: Option<f64>,
    /// The rate allowed now; `None`: unlimited (learned, and no rate limit
    /// seen yet).
    rate: Option<f64>,
    tokens: f64,
    refilled: Instant,
    paused_until: Option<Instant>,
    /// Since when answers have raised the rate.
    gained: Instant,
    /// Rate limits seen since start.
    limits: u64,
    /// Learned rates: when the answers that were not rate limits came,
    /// over the last [`LEARN_WINDOW`].
    accepted: VecDeque<Instant>,
    /// Learned rates: the most answers accepted in one window lately, and
    /// when (forgotten after [`PEAK_KEPT`]).
    peak: (usize, Instant),
}

impl Bucket {
    /// A bucket of `per_second` requests a second; `None`: learned.
    fn new(per_second: Option<f64>, now: Instant) -> Self {
        let max = per_second.map(|r| r.max(FLOOR_PER_S));
        Self {
            max,
            rate: max,
            tokens: max.map_or(0.0, |m| (m * BURST).max(1.0)),
            refilled: now,
            paused_until: None,
            gained: now,
            limits: 0,
            accepted: VecDeque::new(),
            peak: (0, now),
        }
    }

    /// Tokens the bucket holds at most at `rate`.
    fn capacity(&self, rate: f64) -> f64 {
        let share = if self.max.is_some() { BURST } else { 1.0 };
        (rate * share).max(1.0)
    }

    /// Takes a token now, or says how long to wait before asking again.
    fn take(&mut self, now: Instant) -> Option<Duration> {
        if let Some(until) = self.paused_until {
            if now < until {
                return Some(until - now);
            }
            self.paused_until = None;
            self.refilled = until;
            if let (None, Some(rate)) = (self.max, self.rate) {
                // Learned: the provider's bucket refilled while we paused,
                // as ours does now; the pause costs no requests.
                self.tokens = self.capacity(rate) * AFTER_PAUSE;
            }
        }
        let rate = self.rate?;
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        // Bursts stay small under a configured rate: providers count
        // requests per (rolling) second.
        self.tokens = (self.tokens + elapsed * rate).min(self.capacity(rate));
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }

    /// The provider said "too many": a lower rate (halved under a
    /// configured one; learned: what it accepted over the last second,
    /// with a margin), and a pause for its hint.
    fn limited(&mut self, now: Instant, hint: Option<Duration>) {
        self.limits += 1;
        self.rate = Some(match (self.max, self.rate) {
            (Some(_), rate) => (rate.unwrap_or(FLOOR_PER_S) / 2.0).max(FLOOR_PER_S),
            (None, rate) => {
                self.forget_before(now);
                let accepted = self.accepted.len() as f64 / LEARN_WINDOW.as_secs_f64();
                match rate {
                    None => (accepted * LEARN_MARGIN).max(FLOOR_PER_S),
                    // The answers of one burst (before its pause ended)
                    // say it once.
                    Some(r) if self.paused_until.is_some_and(|u| now < u) => r,
                    // A new episode: what was accepted over the last second
                    // overstates the provider's rate by the burst its
                    // bucket held; a multiplicative cut converges anyway.
                    // Never below half the most it accepted lately: a stray
                    // rate limit at a quiet moment (little asked, little
                    // accepted) must not throttle the catch-up after it.
                    Some(r) => (r.min(accepted) * LEARN_MARGIN)
                        .max(self.peak.0 as f64 / LEARN_WINDOW.as_secs_f64() * PEAK_SHARE)
                        .max(FLOOR_PER_S),
                }
            }
        });
        self.tokens = 0.0;
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
        match (self.max, self.rate) {
            (Some(max), Some(rate)) => {
                self.rate = Some((rate + max * GAIN_PER_S * elapsed).min(max));
            }
            (None, rate) => {
                self.accepted.push_back(now);
                self.forget_before(now);
                let n = self.accepted.len();
                if n >= self.peak.0 || now.saturating_duration_since(self.peak.1) > PEAK_KEPT {
                    self.peak = (n, now);
                }
                self.rate = rate.map(|r| r * (1.0 + LEARN_GAIN_PER_S * elapsed));
            }
            (Some(_), None) => {}
        }
    }

    fn forget_before(&mut self, now: Instant) {
        while self
            .accepted
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > LEARN_WINDOW)
        {
            self.accepted.pop_front();
        }
    }
}

/// One endpoint's budget, shared by its connections (kept by the pool, so
/// that a rebuilt connection does not start over), and the counter of its
/// rate-limit answers.
#[derive(Debug, Clone)]
pub struct Budget {
    bucket: Arc<Mutex<Bucket>>,
    rate_limited: IntCounter,
}

impl Budget {
    /// `per_second` requests a second (`None`: learned from the provider's
    /// rate limits); each one counted on `rate_limited`.
    pub fn new(per_second: Option<u64>, rate_limited: IntCounter) -> Self {
        Self {
            bucket: Arc::new(Mutex::new(Bucket::new(
                per_second.map(|r| r as f64),
                Instant::now(),
            ))),
            rate_limited,
        }
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bucket.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True when both are the same bucket (two pools sharing an endpoint's
    /// budget).
    pub fn is_shared_with(&self, other: &Budget) -> bool {
        Arc::ptr_eq(&self.bucket, &other.bucket)
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

    /// The requests per second currently allowed (`None`: unlimited, no
    /// rate limit seen yet).
    pub fn rate(&self) -> Option<f64> {
        self.bucket().rate
    }

    /// The configured rate, the most the budget ever allows (`None`:
    /// learned).
    pub fn ceiling(&self) -> Option<f64> {
        self.bucket().max
    }

    /// Rate-limit answers seen since start.
    pub fn rate_limits(&self) -> u64 {
        self.bucket().limits
    }

    /// Adapts the rate to an answer, and counts a rate limit.
    pub fn observe(&self, error: Option<&TransportError>) {
        match error {
            Some(e) if is_rate_limit(e) => {
                let hint = RateLimitsOnly.backoff_hint(e);
                self.bucket().limited(Instant::now(), hint);
                self.rate_limited.inc();
            }
            _ => self.bucket().answered(Instant::now()),
        }
    }

    /// The rate for a progress line: `12.5/20.0` (now/configured), `47.3
    /// learned`, or `unlimited (learning)`.
    pub fn describe(&self) -> String {
        let b = self.bucket();
        match (b.rate, b.max) {
            (Some(now), Some(max)) => format!("{now:.1}/{max:.1}"),
            (Some(now), None) => format!("{now:.1} learned"),
            (None, _) => "unlimited (learning)".to_owned(),
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
