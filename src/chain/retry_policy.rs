//! Which failed requests alloy's `RetryBackoffLayer` may send again,
//! unchanged, after a pause: real rate limits only. A provider refusing a
//! getLogs range is handed back at once, so that the range shrinks.
//!
//! Why a policy of our own: alloy's default (`RateLimitRetryPolicy`) takes
//! every -32005 for a rate limit, but Infura and Coinbase's Base node answer
//! a range that is too wide with -32005 too. Re-sent unchanged, such a range
//! is refused five more times (a second lost, and five requests of the rate
//! budget), and the failure that finally comes back counts against the
//! endpoint, which the pool then rests for 5, 10, 20 s… while it is healthy.

use std::time::Duration;

use alloy::transports::layers::{RateLimitRetryPolicy, RetryPolicy};
use alloy::transports::{HttpError, RpcError, TransportError, TransportErrorKind};

use super::http::AnswerTooLarge;
use super::refusal::{self, Limit, Refusal};

/// Retries rate limits (429, 503, Retry-After, -32016/-32007/-32012, a
/// -32005 that words itself as a rate limit), never a range refusal.
#[derive(Debug, Clone, Copy, Default)]
pub struct RateLimitsOnly;

impl RetryPolicy for RateLimitsOnly {
    fn should_retry(&self, error: &TransportError) -> bool {
        if refusal_of(error).is_some() {
            return false;
        }
        if let RpcError::ErrorResp(e) = error {
            // -32005 is "limit exceeded" in EIP-1474: of requests, or of a
            // query's size. Only the first is worth the same request again.
            if e.code == -32005 {
                return is_rate_wording(&e.message);
            }
        }
        RateLimitRetryPolicy::default().should_retry(error)
    }

    /// Retry-After, Infura's `data.rate.backoff_seconds`, "try again in N ms".
    fn backoff_hint(&self, error: &TransportError) -> Option<Duration> {
        RateLimitRetryPolicy::default().backoff_hint(error)
    }
}

/// The refusal an error carries, if it is one: a JSON-RPC error (any code,
/// its message and data), or an HTTP error body; an HTTP 413 (answer too
/// large) is a refusal whatever its body says, and so is an answer over
/// our own cap (`http::AnswerTooLarge`).
pub fn refusal_of(error: &TransportError) -> Option<Refusal> {
    match error {
        // Our own cap on an answer's size: too many results, like a 413.
        RpcError::Transport(TransportErrorKind::Custom(e)) if e.is::<AnswerTooLarge>() => {
            Some(Refusal {
                limit: Limit::Results,
                max: None,
                suggested: None,
            })
        }
        RpcError::ErrorResp(e) => refusal::parse(&e.to_string()),
        RpcError::Transport(TransportErrorKind::HttpError(h))
        | RpcError::Transport(TransportErrorKind::HttpErrorWithRetryAfter { error: h, .. }) => {
            http_refusal(h)
        }
        _ => None,
    }
}

fn http_refusal(h: &HttpError) -> Option<Refusal> {
    let parsed = refusal::parse(&h.body);
    if h.status == 413 {
        return parsed.or(Some(Refusal {
            limit: Limit::Results,
            max: None,
            suggested: None,
        }));
    }
    parsed
}

/// True when the provider says we send too much (429, 503 with a
/// Retry-After, -32005/-32016/-32007/-32012 worded as a rate limit, a
/// backoff hint): what the request budget slows down for.
pub fn is_rate_limit(error: &TransportError) -> bool {
    if refusal_of(error).is_some() {
        return false;
    }
    match error {
        RpcError::Transport(TransportErrorKind::HttpError(h)) => h.status == 429,
        RpcError::Transport(TransportErrorKind::HttpErrorWithRetryAfter { error: h, .. }) => {
            matches!(h.status, 429 | 503)
        }
        RpcError::ErrorResp(e) => {
            e.code == 429
                || (matches!(e.code, -32005 | -32016 | -32007 | -32012)
                    && is_rate_wording(&e.message))
                || RateLimitsOnly.backoff_hint(error).is_some()
        }
        _ => false,
    }
}

/// True when a message speaks of a rate of requests, not of a query's size.
fn is_rate_wording(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "rate",
        "limit exceeded",
        "too many requests",
        "request limit",
        "try again",
        "capacity",
        "credits",
        "per second",
        "/sec",
    ]
    .iter()
    .any(|w| m.contains(w))
}

#[cfg(test)]
#[path = "retry_policy_tests.rs"]
mod tests;
