//! How the completeness task asks: within its share of requests, one
//! request at a time, each recorded in the metrics; a failure logged once
//! per episode and left to the next round (never retried in a loop here).
//! Ranges are sized like the deep ones: a refusal, or a timeout (a node
//! scanning too many blocks), shrinks the next one.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use alloy::primitives::B256;
use alloy::rpc::types::Log;
use tokio_util::sync::CancellationToken;

use super::Auditor;
use crate::chain::pool::{PoolError, RpcPool};
use crate::chain::refusal::{Limit, Refusal};
use crate::chain::source::{ChainError, ChainSource};
use crate::domain::BlockHeader;
use crate::indexer::Stop;
use crate::retry::Cancelled;

/// How often the share is looked at again while it is spent.
const SHARE_POLL: Duration = Duration::from_millis(100);

impl Auditor {
    /// Waits until the share allows one more request, then spends it.
    pub(super) async fn take_share(&mut self, cancel: &CancellationToken) -> Result<(), Cancelled> {
        loop {
            let main = self.main_requests.load(Ordering::Relaxed);
            if self.share.allows(main, Instant::now()) {
                self.share.spend();
                return Ok(());
            }
            tokio::select! {
                _ = cancel.cancelled() => return Err(Cancelled),
                _ = tokio::time::sleep(SHARE_POLL) => {}
            }
        }
    }

    /// One request to `pool`'s current endpoint, recorded in the metrics;
    /// a failure is logged once per episode and left to the next round.
    pub(super) async fn call<T, F, Fut>(
        &mut self,
        pool: &RpcPool,
        method: &'static str,
        op: F,
    ) -> Result<T, ChainError>
    where
        F: FnOnce(ChainSource) -> Fut,
        Fut: std::future::Future<Output = Result<T, ChainError>>,
    {
        let endpoint = pool.endpoint();
        let started = Instant::now();
        let result = match pool.source().await {
            Ok(source) => op(source).await,
            Err(PoolError::Chain(e)) => Err(e),
            Err(e @ PoolError::WrongChain { .. }) => Err(ChainError::Connect {
                endpoint: endpoint.clone(),
                message: e.to_string(),
            }),
        };
        self.metrics
            .record_rpc(method, &endpoint, started.elapsed(), result.is_ok());
        match &result {
            Ok(_) | Err(ChainError::RangeRefused { .. }) | Err(ChainError::UnknownBlock { .. }) => {
                pool.succeeded();
                if std::mem::take(&mut self.failing) {
                    tracing::info!(endpoint, "completeness checks: RPC recovered");
                }
            }
            Err(e) => {
                pool.failed();
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(endpoint, error = %e,
                        "completeness checks: RPC failing; asking again next round");
                }
            }
        }
        result
    }

    /// Asks the audit's endpoint for the logs of a range from `from` (at
    /// most to `upto`, sized like the deep ranges), of the orders `refs`
    /// only when given: the range and its logs; the range and `None` when
    /// it was refused or timed out (the next one is smaller); `None` when
    /// the endpoint failed (asked again next round).
    pub(super) async fn ask_range(
        &mut self,
        from: u64,
        upto: u64,
        refs: Option<&[B256]>,
        cancel: &CancellationToken,
    ) -> Result<Option<((u64, u64), Option<Vec<Log>>)>, Stop> {
        self.sizer.set_cap(self.asked.pool.range_cap());
        let (from, to) = self.sizer.next_range(from, upto);
        self.take_share(cancel).await?;
        let pool = self.asked.pool.clone();
        let refs = refs.map(<[B256]>::to_vec);
        let answer = self
            .call(&pool, "eth_getLogs", |s| async move {
                match refs {
                    Some(refs) => s.logs_of_orders(from, to, &refs).await,
                    None => s.logs(from, to).await,
                }
            })
            .await;
        let (endpoint, refusal) = match answer {
            Ok(logs) => {
                self.sizer.accepted(to - from + 1, logs.len() as u64);
                return Ok(Some(((from, to), Some(logs))));
            }
            Err(ChainError::RangeRefused {
                endpoint, refusal, ..
            }) => (Some(endpoint), refusal),
            // Sent again unchanged, a range that timed out would time out
            // again: smaller, as a result limit would make it.
            Err(ChainError::Timeout {
                method: "eth_getLogs",
                ..
            }) => {
                let refusal = Refusal {
                    limit: Limit::Results,
                    max: None,
                    suggested: None,
                };
                (None, refusal)
            }
            Err(_) => return Ok(None),
        };
        match self.sizer.refused(to - from + 1, &refusal) {
            Some(shrunk) => {
                if let (Some(cap), Some(endpoint)) = (shrunk.cap, endpoint) {
                    self.asked.pool.learn_range_cap(&endpoint, cap);
                }
                Ok(Some(((from, to), None)))
            }
            None => Ok(None),
        }
    }

    /// The primary's header of block `number` (`None` when it could not
    /// be read: asked again next round).
    pub(super) async fn primary_header(
        &mut self,
        number: u64,
        cancel: &CancellationToken,
    ) -> Result<Option<BlockHeader>, Stop> {
        self.take_share(cancel).await?;
        let primary = self.primary.clone();
        let header = self
            .call(&primary, "eth_getBlockByNumber", |s| async move {
                s.header(number).await
            })
            .await;
        Ok(header.ok())
    }

    /// The head of the endpoint the audit asks (`None`: it did not answer).
    pub(super) async fn asked_head(
        &mut self,
        cancel: &CancellationToken,
    ) -> Result<Option<u64>, Stop> {
        self.take_share(cancel).await?;
        let pool = self.asked.pool.clone();
        let head = self
            .call(&pool, "eth_blockNumber", |s| async move { s.head().await })
            .await;
        Ok(head.ok())
    }
}
