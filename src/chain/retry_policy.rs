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
/// large) is a refusal whatever its body says.
pub fn refusal_of(error: &TransportError) -> Option<Refusal> {
    match error {
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
mod tests {
    use super::*;

    fn rpc(code: i64, message: &str) -> TransportError {
        let payload = serde_json::json!({"code": code, "message": message});
        RpcError::ErrorResp(serde_json::from_value(payload).expect("an error payload"))
    }

    fn http(status: u16, body: &str) -> TransportError {
        RpcError::Transport(TransportErrorKind::HttpError(HttpError {
            status,
            body: body.to_owned(),
        }))
    }

    #[test]
    fn rate_limits_are_retried() {
        let p = RateLimitsOnly;
        for e in [
            http(429, "Too Many Requests"),
            rpc(
                429,
                "Your app has exceeded its compute units per second capacity",
            ),
            rpc(-32005, "daily request count exceeded, request rate limited"),
            rpc(-32005, "rate limited, try again in 4ms"),
            rpc(-32005, "project ID request rate exceeded"),
            rpc(-32016, "over rate limit"),
            rpc(
                -32007,
                "100/second request limit reached - reduce calls per second",
            ),
        ] {
            assert!(p.should_retry(&e), "{e}");
        }
        assert_eq!(
            p.backoff_hint(&rpc(-32005, "rate limited, try again in 4ms")),
            Some(Duration::from_millis(4))
        );
        let infura = serde_json::json!({
            "code": -32005,
            "message": "daily request count exceeded, request rate limited",
            "data": {"rate": {"backoff_seconds": 30}}
        });
        let infura = RpcError::ErrorResp(serde_json::from_value(infura).expect("a payload"));
        assert_eq!(p.backoff_hint(&infura), Some(Duration::from_secs(30)));
        assert!(is_rate_limit(&infura));
    }

    #[test]
    fn range_refusals_are_never_retried_whatever_their_code() {
        let p = RateLimitsOnly;
        for e in [
            rpc(-32005, "please limit the query to at most 1000 blocks"),
            rpc(-32600, "please limit the query to at most 1000 blocks"),
            rpc(
                -32005,
                "query returned more than 10000 results. Try with this block range [0x1, 0x2].",
            ),
            rpc(-32602, "range 1000000 exceeds limit of 10000"),
            rpc(-32614, "eth_getLogs is limited to a 10,000 range"),
            rpc(-32005, "query timeout exceeded"),
            http(
                413,
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32614,"message":"eth_getLogs is limited to a 10,000 range"}}"#,
            ),
            http(413, ""),
            http(400, "block range is too wide"),
        ] {
            assert!(!p.should_retry(&e), "{e}");
            assert!(refusal_of(&e).is_some(), "{e}");
        }
    }

    #[test]
    fn rate_limits_are_told_from_refusals_and_other_failures() {
        for e in [
            http(429, "Too Many Requests"),
            rpc(
                429,
                "Your app has exceeded its compute units per second capacity",
            ),
            rpc(-32005, "project ID request rate exceeded"),
            rpc(-32007, "100/second request limit reached"),
            rpc(-32012, "credits limited to 6000/sec"),
            rpc(-32016, "over rate limit"),
        ] {
            assert!(is_rate_limit(&e), "{e}");
        }
        for e in [
            rpc(-32005, "please limit the query to at most 1000 blocks"),
            rpc(-32005, "query timeout exceeded"),
            http(503, "unavailable"),
            http(500, "internal error"),
            rpc(3, "execution reverted"),
        ] {
            assert!(!is_rate_limit(&e), "{e}");
        }
    }

    #[test]
    fn other_failures_keep_alloys_verdict() {
        let p = RateLimitsOnly;
        assert!(!p.should_retry(&rpc(3, "execution reverted")));
        assert!(!p.should_retry(&rpc(-32005, "something else entirely")));
        assert!(p.should_retry(&http(503, "unavailable")));
        assert!(!p.should_retry(&http(500, "internal error")));
    }
}
