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
