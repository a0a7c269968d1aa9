//! The HTTP transport under every RPC client: alloy's reqwest transport, with
//! three differences that keep an endpoint from hurting the daemon.
//!
//! - **An answer is read up to a cap** (`chain.max_answer_mib`), never to its
//!   end when larger: alloy's own transport reads the whole body, so a 400 MB
//!   answer took the process to 1.8 GB. A getLogs answer over the cap comes
//!   back as [`AnswerTooLarge`], which the range logic treats like a
//!   provider's result-limit refusal (the range shrinks).
//! - **An error answer's body is kept to 64 KiB**: enough for any provider's
//!   refusal wording, which the range logic parses.
//! - **No URL in any error or span**: request failures drop the URL
//!   (`reqwest::Error::without_url`), and nothing here logs, so the API key in
//!   the URL's path or query cannot reach a log through this layer.
//!
//! Redirects are not followed and no `Referer` is sent (the client is built
//! by [`client`]).

use std::task;
use std::time::Duration;

use alloy::rpc::json_rpc::{RequestPacket, ResponsePacket};
use alloy::transports::{TransportError, TransportErrorKind, TransportFut};
use url::Url;

/// The most of an error answer's body that is read.
pub const ERROR_BODY_MAX: usize = 64 * 1024;

/// A successful answer larger than the cap: not read to its end.
#[derive(Debug, thiserror::Error)]
#[error("the answer is larger than {max} bytes (chain.max_answer_mib); not read to its end")]
pub struct AnswerTooLarge {
    pub max: usize,
}

/// The HTTP client every RPC endpoint is reached with: redirects are not
/// followed (a 3xx to another host would take the request, whose URL
/// carries the API key, and bring back an answer from a server nobody
/// configured; it fails as an HTTP error) and no `Referer` is sent.
pub fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .build()
        .map_err(|e| e.without_url().to_string())
}

/// One endpoint's transport (a `tower::Service`, as alloy's transports are).
#[derive(Clone)]
pub struct BoundedHttp {
    client: reqwest::Client,
    url: Url,
    max_answer: usize,
}

impl BoundedHttp {
    pub fn new(client: reqwest::Client, url: Url, max_answer: usize) -> Self {
        Self {
            client,
            url,
            max_answer,
        }
    }

    async fn send(self, request: RequestPacket) -> Result<ResponsePacket, TransportError> {
        let body = serde_json::to_vec(&request).map_err(TransportError::ser_err)?;
        let response = self
            .client
            .post(self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .headers(request.headers())
            .body(body)
            .send()
            .await
            .map_err(|e| TransportErrorKind::custom(e.without_url()))?;
        let status = response.status();
        // Delay-seconds form only, as alloy reads it.
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_secs);
        let http_error = |body: String| {
            TransportErrorKind::http_error_with_retry_after(status.as_u16(), body, retry_after)
        };
        if !status.is_success() {
            return match read_at_most(response, ERROR_BODY_MAX).await {
                Ok(body) => match serde_json::from_slice::<ResponsePacket>(&body) {
                    // A JSON-RPC error sent with an error status: the error,
                    // unless the status says more (a 413 is a refusal
                    // whatever its body; a Retry-After is a rate limit's).
                    Ok(packet)
                        if packet.is_error() && status.as_u16() != 413 && retry_after.is_none() =>
                    {
                        Ok(packet)
                    }
                    _ => Err(http_error(String::from_utf8_lossy(&body).into_owned())),
                },
                Err(Unread::TooLarge) => Err(http_error(format!(
                    "<a body over {ERROR_BODY_MAX} bytes, not read>"
                ))),
                Err(Unread::Failed(e)) => Err(http_error(format!(
                    "<the body could not be read: {}>",
                    e.without_url()
                ))),
            };
        }
        let body = match read_at_most(response, self.max_answer).await {
            Ok(body) => body,
            Err(Unread::TooLarge) => {
                return Err(TransportErrorKind::custom(AnswerTooLarge {
                    max: self.max_answer,
                }))
            }
            Err(Unread::Failed(e)) => return Err(TransportErrorKind::custom(e.without_url())),
        };
        serde_json::from_slice(&body).map_err(|e| {
            // alloy reads a bare JSON-RPC error object from the text, so it
            // gets the body whole up to ERROR_BODY_MAX (a larger one is no
            // error object); printed, it is cut short and redacted.
            let shown = &body[..body.len().min(ERROR_BODY_MAX)];
            TransportError::deser_err(e, String::from_utf8_lossy(shown))
        })
    }
}

/// Why a body was not read whole.
enum Unread {
    TooLarge,
    Failed(reqwest::Error),
}

/// The body, if it is at most `max` bytes; read chunk by chunk, stopping as
/// soon as it is known to be larger (a `Content-Length` over `max` is not
/// read at all).
async fn read_at_most(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, Unread> {
    let declared = response.content_length().unwrap_or(0);
    if declared > max as u64 {
        return Err(Unread::TooLarge);
    }
    let mut body = Vec::with_capacity(declared as usize);
    while let Some(chunk) = response.chunk().await.map_err(Unread::Failed)? {
        if body.len() + chunk.len() > max {
            return Err(Unread::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl tower::Service<RequestPacket> for BoundedHttp {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _: &mut task::Context<'_>) -> task::Poll<Result<(), Self::Error>> {
        // reqwest is always ready.
        task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: RequestPacket) -> Self::Future {
        Box::pin(self.clone().send(request))
    }
}
