//! Hosted providers' refusals of a getLogs range, as [`super::proxy::RpcProxy`]
//! sends them: a wording with its HTTP status and JSON-RPC code, and a cap
//! in blocks or in logs.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// What a provider's refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// Ranges wider than the cap, in blocks, are refused.
    Blocks,
    /// Answers holding more than the cap, in logs, are refused.
    Logs,
}

/// How a provider words its refusal of a getLogs range. In `message`,
/// `{N}` is the cap (`{N,}` with thousands separators), `{LEN}` the refused
/// range's length, `{FROM}`/`{TO}` a range that would be accepted (hex),
/// `{from}`/`{to}` the same in decimal.
#[derive(Debug, Clone, Copy)]
pub struct Wording {
    pub provider: &'static str,
    pub status: u16,
    pub code: i64,
    pub message: &'static str,
    pub cap: Cap,
}

impl Wording {
    pub fn render(&self, cap: u64, from: u64, to: u64, ok_to: u64) -> String {
        let thousands = {
            let digits = cap.to_string();
            let mut out = String::new();
            for (i, c) in digits.chars().enumerate() {
                if i > 0 && (digits.len() - i).is_multiple_of(3) {
                    out.push(',');
                }
                out.push(c);
            }
            out
        };
        self.message
            .replace("{N,}", &thousands)
            .replace("{N}", &cap.to_string())
            .replace("{LEN}", &(to - from + 1).to_string())
            .replace("{FROM}", &format!("{from:#x}"))
            .replace("{TO}", &format!("{ok_to:#x}"))
            .replace("{from}", &from.to_string())
            .replace("{to}", &ok_to.to_string())
    }
}

/// A provider's refusal as it sends it: its HTTP status, and a JSON-RPC
/// error with its code and words.
pub fn refusal(w: &Wording, id: &serde_json::Value, message: String) -> Response {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {"code": w.code, "message": message}});
    let status = StatusCode::from_u16(w.status).expect("a valid status");
    (status, axum::Json(body)).into_response()
}

/// For a log cap: the answer when it holds more than `cap` logs, with a
/// range that would have held at most `cap` (up to the block before the
/// first log over the cap), as Infura suggests one.
pub fn over_log_cap(answer: &[u8], cap: u64, from: u64) -> Option<u64> {
    let json: serde_json::Value = serde_json::from_slice(answer).ok()?;
    let logs = json["result"].as_array()?;
    let first_over = logs.get(cap as usize)?;
    let block = u64::from_str_radix(
        first_over["blockNumber"].as_str()?.trim_start_matches("0x"),
        16,
    )
    .ok()?;
    Some(block.saturating_sub(1).max(from))
}
