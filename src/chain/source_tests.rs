use super::is_range_refusal;

#[test]
fn provider_range_refusals_are_recognised() {
    for msg in [
        "query returned more than 10000 results",
        "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range",
        "exceed maximum block range: 5000",
        "query exceeds max block range 100000",
        "block range is too wide",
        "eth_getLogs is limited to a 10,000 range",
        "Maximum allowed number of requested blocks is 500",
    ] {
        assert!(is_range_refusal(msg), "{msg}");
    }
}

#[test]
fn rpc_errors_are_told_apart_by_kind() {
    for (msg, kind) in [
        ("HTTP error 429 with body: rate limited", "rate_limited"),
        ("HTTP error 500 with body: boom", "http_status"),
        (
            "error sending request for url (http://127.0.0.1:1/)",
            "connection",
        ),
        (
            "deserialization error: EOF while parsing an object",
            "bad_response",
        ),
        (
            "server returned an error response: error code -32000: header not found",
            "rpc_error",
        ),
    ] {
        assert_eq!(super::rpc_kind(msg), kind, "{msg}");
    }
}

#[test]
fn other_errors_are_not_range_refusals() {
    for msg in [
        "connection refused",
        "invalid params",
        "header not found",
        "internal error",
    ] {
        assert!(!is_range_refusal(msg), "{msg}");
    }
}
