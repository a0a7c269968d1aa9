//! Several RPC endpoints behind one handle. Requests go to the current
//! endpoint; after repeated failures (connection errors, timeouts, 5xx, 429
//! past alloy's own retries) it is rested, its connection dropped so that it
//! is rebuilt when next used, and the next endpoint takes over. A rested
//! endpoint comes back after its rest, which doubles while it keeps failing.
//! Each endpoint's chain id is checked before it serves any data, and the
//! getLogs block limit it stated in a refusal is remembered with it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::budget::Budget;
use super::source::{ChainError, ChainSource};
use crate::domain::{RequestBounds, Scope};
use crate::secret::SecretUrl;

/// Consecutive failures before an endpoint is rested.
const FAILURES_BEFORE_REST: u32 = 3;
const FIRST_REST: Duration = Duration::from_secs(5);
const LONGEST_REST: Duration = Duration::from_secs(300);

struct Endpoint {
    url: SecretUrl,
    /// `url` redacted, as logs, metrics and errors name the endpoint.
    name: String,
    source: Option<ChainSource>,
    verified: bool,
    failures: u32,
    rest: Duration,
    resting_until: Option<Instant>,
    /// The getLogs block limit the endpoint stated (or implied) in a refusal.
    range_cap: Option<u64>,
    /// Its request budget, kept across rebuilt connections.
    budget: Option<Budget>,
}

/// What went wrong when choosing an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// A reachable endpoint serves another chain: a configuration error.
    #[error(
        "the RPC endpoint {endpoint} serves chain id {actual}, but chain.chain_id is {expected}"
    )]
    WrongChain {
        endpoint: String,
        expected: u64,
        actual: u64,
    },
    #[error(transparent)]
    Chain(#[from] ChainError),
}

/// The endpoints of `chain.rpc_url` / `chain.rpc_urls`, in order of preference.
pub struct RpcPool {
    /// Guarded by short, synchronous critical sections only (never across an await).
    endpoints: Mutex<Vec<Endpoint>>,
    current: Mutex<usize>,
    scope: Scope,
    bounds: RequestBounds,
}

impl std::fmt::Debug for RpcPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcPool").finish_non_exhaustive()
    }
}

impl RpcPool {
    pub fn new(urls: &[SecretUrl], scope: Scope, bounds: RequestBounds) -> Self {
        let endpoints = urls
            .iter()
            .map(|url| Endpoint {
                url: url.clone(),
                name: url.redacted(),
                source: None,
                verified: false,
                failures: 0,
                rest: FIRST_REST,
                resting_until: None,
                range_cap: None,
                budget: None,
            })
            .collect();
        Self {
            endpoints: Mutex::new(endpoints),
            current: Mutex::new(0),
            scope,
            bounds,
        }
    }

    /// Gives every endpoint a budget of its own, of `per_second` requests
    /// (`None`: learned from its rate limits), counting its rate-limit
    /// answers on `rate_limited(endpoint name)`.
    pub fn with_rate_budget(
        self,
        per_second: Option<u64>,
        rate_limited: impl Fn(&str) -> prometheus::IntCounter,
    ) -> Self {
        for ep in self.lock().iter_mut() {
            ep.budget = Some(Budget::new(per_second, rate_limited(&ep.name)));
        }
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Endpoint>> {
        self.endpoints.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn index(&self) -> usize {
        *self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The endpoint to use now: connected, and its chain id verified.
    pub async fn source(&self) -> Result<ChainSource, PoolError> {
        let i = self.index();
        let (url, existing, verified, budget) = {
            let eps = self.lock();
            let ep = &eps[i];
            (
                ep.url.clone(),
                ep.source.clone(),
                ep.verified,
                ep.budget.clone(),
            )
        };
        let source = match existing {
            Some(s) => s,
            None => {
                let s = ChainSource::connect_within(&url, &self.scope, self.bounds, budget).await?;
                self.lock()[i].source = Some(s.clone());
                s
            }
        };
        if !verified {
            let actual = source.chain_id().await?;
            if actual != self.scope.chain_id {
                return Err(PoolError::WrongChain {
                    endpoint: url.redacted(),
                    expected: self.scope.chain_id,
                    actual,
                });
            }
            self.lock()[i].verified = true;
        }
        Ok(source)
    }

    /// The current endpoint answered.
    pub fn succeeded(&self) {
        let i = self.index();
        let mut eps = self.lock();
        eps[i].failures = 0;
        eps[i].rest = FIRST_REST;
    }

    /// The current endpoint failed. After repeated failures it is rested and
    /// its connection dropped; returns true when another endpoint took over
    /// (so the caller may retry at once instead of backing off).
    pub fn failed(&self) -> bool {
        let i = self.index();
        let mut eps = self.lock();
        eps[i].failures += 1;
        // A websocket carries every request on one connection, and alloy
        // sends a request again on each reconnect until it is answered: one
        // answer over the cap (a message tungstenite refuses, which closes
        // the connection) would come back on every reconnect and time out
        // every other request. The next request gets a new connection.
        if eps[i].source.as_ref().is_some_and(ChainSource::is_ws) {
            eps[i].source = None;
        }
        if eps[i].failures < FAILURES_BEFORE_REST {
            return false;
        }
        let ep = &mut eps[i];
        ep.failures = 0;
        ep.source = None; // rebuilt (a new connection) when next used
        ep.resting_until = Some(Instant::now() + ep.rest);
        tracing::warn!(endpoint = %ep.url, rest_s = ep.rest.as_secs(), "endpoint keeps failing; resting it");
        ep.rest = (ep.rest * 2).min(LONGEST_REST);
        let next = pick(&eps, i);
        drop(eps);
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = next;
        next != i
    }

    /// Takes the current endpoint out of use for a day (it serves another
    /// chain) and moves on.
    pub fn disable(&self) {
        let i = self.index();
        let mut eps = self.lock();
        eps[i].source = None;
        eps[i].resting_until = Some(Instant::now() + Duration::from_secs(86_400));
        let next = pick(&eps, i);
        drop(eps);
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = next;
    }

    /// The same endpoints, starting from the second (`None` with only one),
    /// each with the same request budget (shared) and the block limit
    /// learned so far: for the completeness audit, which asks another
    /// endpoint than the one that answered first when there is one.
    pub fn others_first(&self) -> Option<RpcPool> {
        let eps = self.lock();
        if eps.len() < 2 {
            return None;
        }
        let rotated = eps[1..].iter().chain(&eps[..1]).map(|ep| Endpoint {
            url: ep.url.clone(),
            name: ep.name.clone(),
            source: None,
            verified: false,
            failures: 0,
            rest: FIRST_REST,
            resting_until: None,
            range_cap: ep.range_cap,
            budget: ep.budget.clone(),
        });
        Some(RpcPool {
            endpoints: Mutex::new(rotated.collect()),
            current: Mutex::new(0),
            scope: self.scope,
            bounds: self.bounds,
        })
    }

    /// Checks endpoint `i`'s chain id now (at start-up), making it current.
    pub async fn check_chain_id(&self, i: usize) -> Result<(), PoolError> {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = i;
        self.source().await.map(|_| ())
    }

    /// Drops the current connection so that the next request opens a new one
    /// (after a stall: a websocket that went quiet without closing).
    pub fn rebuild(&self) {
        let i = self.index();
        self.lock()[i].source = None;
    }

    /// The getLogs block limit learned for the current endpoint.
    pub fn range_cap(&self) -> Option<u64> {
        self.lock()[self.index()].range_cap
    }

    /// Remembers a getLogs block limit for the endpoint named `endpoint`
    /// (redacted, as in [`ChainError`]): the one that refused, even if
    /// another took over meanwhile. A limit only ever goes down.
    pub fn learn_range_cap(&self, endpoint: &str, cap: u64) {
        let mut eps = self.lock();
        for ep in eps.iter_mut().filter(|ep| ep.name == endpoint) {
            ep.range_cap = Some(ep.range_cap.map_or(cap, |c| c.min(cap)));
        }
    }

    /// The requests per second the budget of the endpoint named `endpoint`
    /// allows now (`None`: no budget, or unlimited so far).
    pub fn budget_rate(&self, endpoint: &str) -> Option<f64> {
        let eps = self.lock();
        let ep = eps.iter().find(|ep| ep.name == endpoint)?;
        ep.budget.as_ref().and_then(Budget::rate)
    }

    /// The current endpoint's budget (`None`: a pool without budgets).
    pub fn budget(&self) -> Option<Budget> {
        self.lock()[self.index()].budget.clone()
    }

    /// True when the current endpoint can push new heads.
    pub fn is_ws(&self) -> bool {
        self.lock()[self.index()].url.is_ws()
    }

    /// The current endpoint's name, redacted.
    pub fn endpoint(&self) -> String {
        self.lock()[self.index()].name.clone()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The next endpoint after `from` that is not resting; if all rest, the one
/// whose rest ends first.
fn pick(eps: &[Endpoint], from: usize) -> usize {
    let now = Instant::now();
    let n = eps.len();
    (1..=n)
        .map(|k| (from + k) % n)
        .find(|&j| eps[j].resting_until.is_none_or(|t| t <= now))
        .unwrap_or_else(|| {
            (0..n)
                .min_by_key(|&j| eps[j].resting_until.unwrap_or(now))
                .expect("at least one endpoint")
        })
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
