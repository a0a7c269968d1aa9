//! The node, as the indexer needs it: head numbers, headers, ranged
//! `eth_getLogs` filtered by the checkout contract and both topic0s, and new
//! head notifications. Every call has a timeout; rate limits are retried by
//! alloy's `RetryBackoffLayer` (with `retry_policy::RateLimitsOnly`, which
//! never re-sends a refused range); range refusals come back parsed
//! (`refusal`); everything else is reported to the caller, which owns the
//! retry policy (`crate::retry`).

use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::B256;
use alloy::providers::{DynProvider, Provider, ProviderBuilder, WsConnect};
use alloy::rpc::client::RpcClient;
use alloy::rpc::types::{Filter, Header, Log};
use alloy::transports::layers::RetryBackoffLayer;
use alloy::transports::ws::WebSocketConfig;
use alloy::transports::TransportError;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::budget::{Budget, BudgetLayer};
use super::decode;
use super::http::{self, BoundedHttp};
use super::refusal::Refusal;
use super::retry_policy::{refusal_of, RateLimitsOnly};
use crate::domain::{BlockHeader, RequestBounds, Scope};
use crate::secret::SecretUrl;

/// Errors of the chain boundary.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("{endpoint}: {method} timed out after {timeout:?}")]
    Timeout {
        endpoint: String,
        method: &'static str,
        timeout: Duration,
    },
    #[error("{endpoint}: {method} failed: {message}")]
    Rpc {
        endpoint: String,
        method: &'static str,
        message: String,
    },
    #[error("{endpoint}: the node refused the block range {from}..={to}: {message}")]
    RangeRefused {
        endpoint: String,
        from: u64,
        to: u64,
        /// What the provider said its limit is.
        refusal: Refusal,
        message: String,
    },
    #[error("{endpoint}: block {number} is not known to the node")]
    MissingBlock { endpoint: String, number: u64 },
    /// `eth_getLogs` by block hash (EIP-234) on a node that does not have
    /// the block (behind, or the block was orphaned).
    #[error("{endpoint}: the node does not have block {hash:#x}: {message}")]
    UnknownBlock {
        endpoint: String,
        hash: alloy::primitives::B256,
        message: String,
    },
    #[error("{endpoint}: cannot connect: {message}")]
    Connect { endpoint: String, message: String },
}

impl ChainError {
    /// The kind of failure, for logs: a failure episode logs each new kind
    /// once (a node that times out, then answers 500s, says both).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::Connect { .. } => "connect",
            Self::MissingBlock { .. } => "missing_block",
            Self::UnknownBlock { .. } => "unknown_block",
            Self::RangeRefused { .. } => "range_refused",
            Self::Rpc { message, .. } => rpc_kind(message),
        }
    }
}

/// The kind of a transport or JSON-RPC error, from alloy's wording.
fn rpc_kind(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("429") || m.contains("rate limit") || m.contains("too many requests") {
        "rate_limited"
    } else if m.contains("error sending request") || m.contains("connection") {
        "connection"
    } else if m.contains("deserializ") || m.contains("parse") || m.contains("eof while") {
        "bad_response"
    } else if m.contains("http error") {
        "http_status"
    } else if m.contains("error code") || m.contains("error response") {
        "rpc_error"
    } else {
        "other"
    }
}

/// True when an error message is a provider refusing a range that is too
/// big (see [`super::refusal`] for the wordings known).
pub fn is_range_refusal(message: &str) -> bool {
    super::refusal::parse(message).is_some()
}

/// One RPC endpoint.
#[derive(Clone)]
pub struct ChainSource {
    provider: DynProvider,
    url: SecretUrl,
    endpoint: String,
    filter: Filter,
    bounds: RequestBounds,
    ws: bool,
}

impl std::fmt::Debug for ChainSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainSource")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl ChainSource {
    /// Connects to `url` (http(s) or ws(s)); every request within `bounds`.
    pub async fn connect(
        url: &SecretUrl,
        scope: &Scope,
        bounds: RequestBounds,
    ) -> Result<Self, ChainError> {
        Self::connect_within(url, scope, bounds, None).await
    }

    /// Same, every request (retries included) taking a token of `budget`
    /// first, when there is one.
    #[tracing::instrument(skip_all, fields(endpoint = %url))]
    pub async fn connect_within(
        url: &SecretUrl,
        scope: &Scope,
        bounds: RequestBounds,
        budget: Option<Budget>,
    ) -> Result<Self, ChainError> {
        let endpoint = url.redacted();
        // Rate limits (429, Retry-After, -32005 worded as one) are retried
        // here, a few times; range refusals never (see `RateLimitsOnly`).
        let retry = RetryBackoffLayer::new_with_policy(5, 200, 10_000, RateLimitsOnly);
        // Below the retry layer, so that a retry spends the budget too.
        let budget = BudgetLayer(budget);
        let connect = async {
            let builder = RpcClient::builder().layer(retry).layer(budget);
            if url.is_ws() {
                let client = builder
                    .ws(ws_connect(url, bounds))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(ProviderBuilder::new().connect_client(client).erased())
            } else {
                let transport =
                    BoundedHttp::new(http::client()?, url.expose().clone(), bounds.max_answer);
                let local = alloy::transports::utils::guess_local_url(url.expose().as_str());
                let client = builder.transport(transport, local);
                Ok(ProviderBuilder::new().connect_client(client).erased())
            }
        };
        let provider = tokio::time::timeout(bounds.timeout, connect)
            .await
            .map_err(|_| ChainError::Timeout {
                endpoint: endpoint.clone(),
                method: "connect",
                timeout: bounds.timeout,
            })?
            .map_err(|message| ChainError::Connect {
                endpoint: endpoint.clone(),
                message: url.sanitise(&message, SHOWN_CHARS),
            })?;
        let filter = Filter::new()
            .address(scope.contract)
            .event_signature(decode::topics());
        Ok(Self {
            provider,
            url: url.clone(),
            endpoint,
            filter,
            bounds,
            ws: url.is_ws(),
        })
    }

    /// The endpoint's redacted name, for logs and metrics.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// An error of this endpoint as it may be printed: its first
    /// [`SHOWN_CHARS`] characters, the URL's secrets redacted.
    fn describe(&self, error: &TransportError) -> String {
        self.url.sanitise(&error.to_string(), SHOWN_CHARS)
    }

    /// True when the endpoint can push new heads.
    pub fn is_ws(&self) -> bool {
        self.ws
    }

    async fn call<T, F>(&self, method: &'static str, fut: F) -> Result<T, ChainError>
    where
        F: std::future::IntoFuture<Output = Result<T, TransportError>>,
    {
        self.call_raw(method, fut)
            .await?
            .map_err(|e| ChainError::Rpc {
                endpoint: self.endpoint.clone(),
                method,
                message: self.describe(&e),
            })
    }

    /// `fut` with the request timeout; the transport's error left as it is.
    async fn call_raw<T, F>(
        &self,
        method: &'static str,
        fut: F,
    ) -> Result<Result<T, TransportError>, ChainError>
    where
        F: std::future::IntoFuture<Output = Result<T, TransportError>>,
    {
        tokio::time::timeout(self.bounds.timeout, fut)
            .await
            .map_err(|_| ChainError::Timeout {
                endpoint: self.endpoint.clone(),
                method,
                timeout: self.bounds.timeout,
            })
    }

    /// The node's chain id.
    pub async fn chain_id(&self) -> Result<u64, ChainError> {
        self.call("eth_chainId", self.provider.get_chain_id()).await
    }

    /// The latest block number.
    pub async fn head(&self) -> Result<u64, ChainError> {
        self.call("eth_blockNumber", self.provider.get_block_number())
            .await
    }

    /// The number of the block a tag (`safe`, `finalized`) points at.
    pub async fn tagged(&self, tag: BlockNumberOrTag) -> Result<u64, ChainError> {
        let number = match tag {
            BlockNumberOrTag::Number(n) => n,
            _ => u64::MAX,
        };
        Ok(self.block(tag, number).await?.number)
    }

    /// The header of block `number`.
    pub async fn header(&self, number: u64) -> Result<BlockHeader, ChainError> {
        self.block(BlockNumberOrTag::Number(number), number).await
    }

    async fn block(&self, tag: BlockNumberOrTag, number: u64) -> Result<BlockHeader, ChainError> {
        let block = self
            .call(
                "eth_getBlockByNumber",
                self.provider.get_block_by_number(tag),
            )
            .await?;
        let block = block.ok_or_else(|| ChainError::MissingBlock {
            endpoint: self.endpoint.clone(),
            number,
        })?;
        Ok(to_header(&block.header))
    }

    /// The checkout contract's `PremiumPaid` logs in `from..=to`.
    pub async fn logs(&self, from: u64, to: u64) -> Result<Vec<Log>, ChainError> {
        let filter = self.filter.clone().from_block(from).to_block(to);
        self.ranged_logs(from, to, &filter).await
    }

    /// `eth_getLogs` of `filter` over `from..=to`; a range refusal comes
    /// back parsed.
    async fn ranged_logs(
        &self,
        from: u64,
        to: u64,
        filter: &Filter,
    ) -> Result<Vec<Log>, ChainError> {
        let answer = self
            .call_raw("eth_getLogs", self.provider.get_logs(filter))
            .await?;
        answer.map_err(|e| {
            let message = self.describe(&e);
            match refusal_of(&e) {
                Some(refusal) => ChainError::RangeRefused {
                    endpoint: self.endpoint.clone(),
                    from,
                    to,
                    refusal,
                    message,
                },
                None => ChainError::Rpc {
                    endpoint: self.endpoint.clone(),
                    method: "eth_getLogs",
                    message,
                },
            }
        })
    }

    /// The checkout contract's `PremiumPaid` logs of the block `hash`
    /// (EIP-234): a node that does not have the block answers an error, which
    /// comes back as [`ChainError::UnknownBlock`], never as `[]`.
    pub async fn logs_at(&self, hash: B256) -> Result<Vec<Log>, ChainError> {
        let filter = self.filter.clone().at_block_hash(hash);
        let answer = self
            .call_raw("eth_getLogs", self.provider.get_logs(&filter))
            .await?;
        answer.map_err(|e| {
            let message = self.describe(&e);
            match e.as_error_resp() {
                Some(resp) if is_unknown_block(&resp.message) => ChainError::UnknownBlock {
                    endpoint: self.endpoint.clone(),
                    hash,
                    message,
                },
                _ => ChainError::Rpc {
                    endpoint: self.endpoint.clone(),
                    method: "eth_getLogs",
                    message,
                },
            }
        })
    }

    /// The checkout contract's `PremiumPaid` logs in `from..=to` whose
    /// orderId (topic1) is one of `refs` (an OR-list).
    pub async fn logs_of_orders(
        &self,
        from: u64,
        to: u64,
        refs: &[B256],
    ) -> Result<Vec<Log>, ChainError> {
        let filter = self
            .filter
            .clone()
            .from_block(from)
            .to_block(to)
            .topic1(refs.to_vec());
        self.ranged_logs(from, to, &filter).await
    }

    /// New heads pushed by a websocket endpoint, on a connection of their
    /// own. On the connection that carries requests, a notification sent
    /// while an answer is unacknowledged waits for our delayed ACK when the
    /// node does not set TCP_NODELAY (anvil): ~40 ms per head, measured.
    pub async fn new_heads(&self) -> Result<BoxStream<'static, BlockHeader>, ChainError> {
        let connect = ProviderBuilder::new().connect_ws(ws_connect(&self.url, self.bounds));
        let provider = self.call("connect", connect).await?;
        let sub = self
            .call("eth_subscribe", provider.subscribe_blocks())
            .await?;
        // The stream owns the connection: dropping it closes both.
        Ok(sub
            .into_stream()
            .map(move |h| {
                let _connection = &provider;
                to_header(&h)
            })
            .boxed())
    }
}

/// True when a JSON-RPC error says the node does not have the block asked
/// for by hash (geth and anvil: "unknown block"; others: "block not found",
/// "... could not be found", "header not found").
fn is_unknown_block(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "unknown block",
        "not found",
        "could not be found",
        "does not exist",
    ]
    .iter()
    .any(|w| m.contains(w))
}

/// How much of an error's text is printed (logs, `status`): a provider's
/// error body is its words, and may repeat the key in any form.
const SHOWN_CHARS: usize = 300;

/// A websocket connection to `url` whose messages are bounded like an HTTP
/// answer.
fn ws_connect(url: &SecretUrl, bounds: RequestBounds) -> WsConnect {
    let config = WebSocketConfig::default()
        .max_message_size(Some(bounds.max_answer))
        .max_frame_size(Some(bounds.max_answer));
    WsConnect::new(url.expose().as_str()).with_config(config)
}

fn to_header(h: &Header) -> BlockHeader {
    BlockHeader {
        number: h.number,
        hash: h.hash,
        parent_hash: h.parent_hash,
        timestamp: h.timestamp,
        logs_bloom: h.logs_bloom,
    }
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
