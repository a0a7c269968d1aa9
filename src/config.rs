//! Typed settings, loaded in layers (built-in `config/default.toml`, then
//! `config/$LIQPASS_ENV.toml`, then `--config FILE`, then `LIQPASS__*`
//! environment variables) and validated all at once: every bad or unknown
//! key is reported in one error, and the program exits 64.
//!
//! Each command reads only what it uses, so it is given only that: `migrate`
//! the database ([`load_store`]), `status` and `ack-reorg` the database and
//! which chain and contract ([`load_scoped`]), `run`, `backfill` and
//! `check-config` everything ([`load`]). Unknown keys are an error for every
//! command: a typo is never what was meant.
//!
//! It must never print a secret (RPC URLs carry API keys: see [`SecretUrl`]) and
//! never replace a bad value by a default.

mod reader;
mod render;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use alloy::primitives::Address;
use config::{Config, Environment, File, FileFormat};

pub use crate::domain::{OverpaymentPolicy, RequestBounds};
pub use crate::secret::{redact_url_str, SecretUrl, WebhookSecret};
pub use reader::parse_address;
use reader::{problem, Reader};

/// The built-in first layer: the shipped `config/default.toml`.
pub const DEFAULTS: &str = include_str!("../config/default.toml");

/// What values a setting takes, and how `check-config` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An integer in `min..=max` (a time in the unit its name ends with).
    Int(u64, u64),
    /// Text.
    Text,
    /// One of these words.
    Choice(&'static [&'static str]),
    /// A `0x` address (its checksum checked when it has mixed case).
    Address,
    /// A database URL: printed without its password.
    DatabaseUrl,
    /// A URL that may carry a secret: printed as scheme, host and port.
    SecretUrl,
    /// A list of them.
    SecretUrls,
    /// A secret never printed.
    Secret,
}

/// Every setting, `section.key`, with what it takes: the one table that
/// reading (ranges, choices), unknown-key errors, `check-config` and the
/// docs test go by.
pub const KEYS: &[(&str, Kind)] = &[
    ("database.url", Kind::DatabaseUrl),
    ("database.schema", Kind::Text),
    ("database.busy_timeout_ms", Kind::Int(1, 600_000)),
    ("database.max_connections", Kind::Int(1, 64)),
    ("database.max_write_ms", Kind::Int(1, 60_000)),
    ("database.write_gap_ms", Kind::Int(0, 1_000)),
    ("database.alone_after_s", Kind::Int(0, 86_400)),
    ("database.alone_max_write_ms", Kind::Int(1, 10_000)),
    ("chain.rpc_url", Kind::SecretUrl),
    ("chain.rpc_urls", Kind::SecretUrls),
    ("chain.chain_id", Kind::Int(1, u64::MAX >> 1)),
    ("chain.contract", Kind::Address),
    ("chain.token", Kind::Address),
    ("chain.treasury", Kind::Address),
    ("chain.start_block", Kind::Int(0, i64::MAX as u64)),
    ("chain.confirmations", Kind::Int(0, 10_000)),
    (
        "chain.finality",
        Kind::Choice(&["depth", "safe", "finalized"]),
    ),
    ("chain.max_block_range", Kind::Int(1, 1_000_000)),
    ("chain.poll_interval_ms", Kind::Int(10, 600_000)),
    ("chain.reorg_window", Kind::Int(1, 100_000)),
    ("chain.stall_after_s", Kind::Int(1, 86_400)),
    ("chain.request_timeout_ms", Kind::Int(100, 600_000)),
    ("chain.max_answer_mib", Kind::Int(1, 1_024)),
    ("chain.verify_rpc_urls", Kind::SecretUrls),
    ("chain.verify_quorum", Kind::Int(1, 1_000)),
    ("chain.max_requests_per_second", Kind::Int(1, 100_000)),
    ("chain.max_concurrent_requests", Kind::Int(1, 64)),
    ("reconcile.overpayment", Kind::Choice(&["accept", "flag"])),
    ("reconcile.pending_sweep_interval_s", Kind::Int(0, 86_400)),
    ("reconcile.pending_sweep_grace_s", Kind::Int(1, 86_400)),
    ("audit.interval_ms", Kind::Int(0, 86_400_000)),
    ("audit.request_share_percent", Kind::Int(1, 100)),
    ("http.listen", Kind::Text),
    ("http.max_ready_lag_blocks", Kind::Int(0, 1_000_000)),
    ("log.format", Kind::Choice(&["text", "json"])),
    ("log.level", Kind::Text),
    ("log.progress_interval_ms", Kind::Int(100, 3_600_000)),
    ("shutdown.grace_s", Kind::Int(1, 3600)),
    ("ha.lease_ttl_ms", Kind::Int(300, 600_000)),
    ("ha.renew_interval_ms", Kind::Int(100, 200_000)),
    ("ha.replica_id", Kind::Text),
    ("outbox.retention_days", Kind::Int(1, 36_500)),
    ("webhooks.url", Kind::SecretUrl),
    ("webhooks.secret", Kind::Secret),
    ("webhooks.request_timeout_ms", Kind::Int(100, 600_000)),
    ("webhooks.give_up_after_s", Kind::Int(1, 365 * 86_400)),
    ("webhooks.retry_initial_ms", Kind::Int(100, 86_400_000)),
    ("webhooks.retry_max_ms", Kind::Int(100, 86_400_000)),
    ("webhooks.max_in_flight", Kind::Int(1, 256)),
];

/// What `key` takes. Every key the reader asks for is in [`KEYS`] (a test
/// reads them all): one that is not is a bug, not a configuration problem.
pub(crate) fn kind_of(key: &str) -> Kind {
    KEYS.iter()
        .find(|(k, _)| *k == key)
        .map(|(_, kind)| *kind)
        .unwrap_or_else(|| panic!("{key} is not in config::KEYS"))
}

/// The sections of [`KEYS`], in their order.
pub fn sections() -> Vec<&'static str> {
    let mut out: Vec<&str> = Vec::new();
    for (key, _) in KEYS {
        let section = key.split_once('.').map_or(*key, |(s, _)| s);
        if !out.contains(&section) {
            out.push(section);
        }
    }
    out
}

/// All settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub chain: ChainSettings,
    pub reconcile: ReconcileSettings,
    pub http: HttpSettings,
    pub log: LogSettings,
    pub shutdown: ShutdownSettings,
    pub ha: HaSettings,
    pub outbox: OutboxSettings,
    pub audit: AuditSettings,
    /// `None` when `webhooks.url` is empty: no dispatcher runs.
    pub webhooks: Option<WebhookSettings>,
    /// Every key with a value, as `check-config` prints it (secrets
    /// redacted): taken from the layers by the key table (`render`).
    shown: Vec<(&'static str, toml::Value)>,
}

/// The outbox (`payment_notifications`).
#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// Days a notification is kept; an undelivered one is kept longer while
    /// a webhook dispatcher is configured (until it is delivered).
    pub retention_days: u32,
}

/// The webhook dispatcher (`webhooks`): where and how each outbox row is
/// POSTed, signed as Standard Webhooks says.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// The receiver (a secret like an RPC URL: it may carry a token).
    pub url: SecretUrl,
    /// One signing key, or two while keys rotate (both signatures sent).
    pub secret: WebhookSecret,
    pub request_timeout: Duration,
    /// A notification still undelivered this long after it was written is
    /// given up (kept, marked, counted).
    pub give_up_after: Duration,
    /// The first retry's delay; each further one doubles, up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// Requests in flight at once, at most (one per order at a time).
    pub max_in_flight: usize,
}

impl WebhookSettings {
    /// A warning when deliveries would cross a network in clear text: an
    /// `http://` receiver on another host (payloads and signatures readable
    /// and replayable on the way). Loopback is not warned about.
    pub fn clear_text_warning(&self) -> Option<String> {
        let url = self.url.expose();
        let local = match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        (url.scheme() == "http" && !local).then(|| {
            format!(
                "webhooks.url {} is http://: payloads and their signatures cross the network \
                 in clear text, readable and replayable on the way; use https://",
                self.url
            )
        })
    }
}

#[derive(Clone)]
pub struct DatabaseSettings {
    /// The database, as an sqlx URL: `sqlite:...` or `postgres://...` (a
    /// secret: print it through `secret::display_db_url`).
    pub url: String,
    /// PostgreSQL: the schema holding the contract's tables.
    pub schema: String,
    pub busy_timeout: Duration,
    pub max_connections: u32,
    /// How long one of our write transactions may hold the write lock.
    pub max_write: Duration,
    /// How long the lock stays free after our commit before our next `BEGIN`.
    pub write_gap: Duration,
    /// SQLite: quiet this long (no other connection's commit) and the write
    /// budget becomes `alone_max_write`; `None`: always `max_write`.
    pub alone_after: Option<Duration>,
    /// The write budget while alone.
    pub alone_max_write: Duration,
}

/// The URL through `secret::display_db_url`: a PostgreSQL password never
/// reaches a log line or an error that prints settings.
impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &crate::secret::display_db_url(&self.url))
            .field("schema", &self.schema)
            .field("busy_timeout", &self.busy_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_write", &self.max_write)
            .field("write_gap", &self.write_gap)
            .field("alone_after", &self.alone_after)
            .field("alone_max_write", &self.alone_max_write)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct ChainSettings {
    /// `rpc_url` first, then `rpc_urls`; never empty.
    pub rpc_urls: Vec<SecretUrl>,
    pub chain_id: u64,
    pub contract: Address,
    pub token: Address,
    pub treasury: Option<Address>,
    pub start_block: u64,
    pub confirmations: u64,
    pub finality: Finality,
    pub max_block_range: u64,
    pub poll_interval: Duration,
    pub reorg_window: u64,
    pub stall_after: Duration,
    /// Every RPC request's timeout and answer cap.
    pub requests: RequestBounds,
    /// Independent endpoints (another provider) that must confirm a payment's
    /// log before its order is `paid`; empty: no second opinion. Secrets.
    pub verify_rpc_urls: Vec<SecretUrl>,
    /// How many of `verify_rpc_urls` must confirm (1..=their number).
    pub verify_quorum: usize,
    /// Request budget per endpoint; `None`: unlimited.
    pub max_requests_per_second: Option<u64>,
    /// Deep `eth_getLogs` ranges in flight at once while catching up (≥ 1).
    pub max_concurrent_requests: usize,
}

impl ChainSettings {
    /// The chain and contract these settings follow.
    pub fn scope(&self) -> crate::domain::Scope {
        crate::domain::Scope {
            chain_id: self.chain_id,
            contract: self.contract,
        }
    }
}

/// What makes a payment final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finality {
    Depth,
    Safe,
    Finalized,
}

#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    pub overpayment: OverpaymentPolicy,
    /// How often the leader looks for the logs of still-pending orders by
    /// their orderId (`None`: never).
    pub pending_sweep_interval: Option<Duration>,
    /// How long an order is `pending` before the sweep looks for it.
    pub pending_sweep_grace: Duration,
}

/// The completeness audit (docs/operations.md, "Completeness").
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// How often the ranges that became final are asked for again
    /// (`None`: never).
    pub interval: Option<Duration>,
    /// The most the audit and the pending-order sweep may ask, as a share
    /// of the requests the indexer makes (1..=100).
    pub request_share_percent: u32,
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    pub max_ready_lag_blocks: u64,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
    /// How often a catch-up logs its progress (`log.progress_interval_ms`).
    pub progress_interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct ShutdownSettings {
    pub grace: Duration,
}

/// The write lease (docs/operations.md, "Replicas and the write lease").
#[derive(Debug, Clone)]
pub struct HaSettings {
    /// How long a lease lasts without renewal: the takeover bound.
    pub lease_ttl: Duration,
    /// How often the leader renews it (at most a third of the TTL).
    pub renew_interval: Duration,
    /// This replica's name in the lease; `ha.replica_id`, or
    /// `<hostname>:<pid>:<start ms>` when that is empty.
    pub replica_id: String,
}

/// One bad key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

/// Every problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration: {} problem(s)",
            self.problems.len()
        )?;
        for p in &self.problems {
            write!(f, "\n  - {}: {}", p.key, p.message)?;
        }
        Ok(())
    }
}

/// Where settings come from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Directory of `<environment>.toml` files.
    pub config_dir: PathBuf,
    /// `LIQPASS_ENV`: which file of `config_dir` to layer.
    pub environment: Option<String>,
    /// `--config FILE`.
    pub file: Option<PathBuf>,
    /// Environment variables (only `LIQPASS__*` are read).
    pub env: Vec<(String, String)>,
}

impl Sources {
    /// The process's own sources: `$LIQPASS_CONFIG_DIR` (default `config`),
    /// `$LIQPASS_ENV`, `--config`, and the environment.
    pub fn from_process(file: Option<PathBuf>) -> Self {
        Self {
            config_dir: std::env::var_os("LIQPASS_CONFIG_DIR")
                .map_or_else(|| "config".into(), PathBuf::from),
            environment: std::env::var("LIQPASS_ENV").ok().filter(|e| !e.is_empty()),
            file,
            env: std::env::vars().collect(),
        }
    }
}

/// What `migrate` reads.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub database: DatabaseSettings,
    pub log: LogSettings,
}

/// What `status` and `ack-reorg` read: the database, which chain and
/// contract its rows belong to, and (for the head) the endpoints.
#[derive(Debug, Clone)]
pub struct ScopedSettings {
    pub database: DatabaseSettings,
    pub log: LogSettings,
    pub scope: crate::domain::Scope,
    pub endpoints: Endpoints,
    /// `chain.start_block`: `status` measures the sync from it.
    pub start_block: u64,
    /// `http.listen`: where `status` asks the daemon for its counters.
    pub http_listen: std::net::SocketAddr,
}

/// The RPC endpoints, in order of preference, and how their requests are
/// bounded.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub urls: Vec<SecretUrl>,
    pub requests: RequestBounds,
}

/// Loads and validates every setting (`run`, `backfill`, `check-config`),
/// reporting every problem at once.
pub fn load(sources: &Sources) -> Result<Settings, ConfigError> {
    load_with(sources, Reader::settings)
}

/// Loads what `migrate` reads: `[database]` and `[log]`.
pub fn load_store(sources: &Sources) -> Result<StoreSettings, ConfigError> {
    load_with(sources, |r| {
        let database = r.database();
        let log = r.log();
        Some(StoreSettings {
            database: database?,
            log: log?,
        })
    })
}

/// Loads what `status` and `ack-reorg` read: `[database]`, `[log]`,
/// `chain.chain_id`, `chain.contract`, the endpoints and `[http]`.
pub fn load_scoped(sources: &Sources) -> Result<ScopedSettings, ConfigError> {
    load_with(sources, |r| {
        let database = r.database();
        let log = r.log();
        let scope = r.scope();
        let endpoints = r.endpoints();
        let start_block = r.start_block();
        let http = r.http();
        Some(ScopedSettings {
            database: database?,
            log: log?,
            scope: scope?,
            endpoints: endpoints?,
            start_block: start_block?,
            http_listen: http?.listen,
        })
    })
}

/// Layers the sources, checks for unknown keys, and reads what `read` asks
/// for; fails with every problem found.
fn load_with<T>(
    sources: &Sources,
    read: impl FnOnce(&mut Reader) -> Option<T>,
) -> Result<T, ConfigError> {
    let mut problems = Vec::new();
    let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
    if let Some(env) = &sources.environment {
        let path = sources.config_dir.join(format!("{env}.toml"));
        if path.is_file() {
            builder = builder.add_source(File::from(path));
        } else {
            problems.push(problem(
                "LIQPASS_ENV",
                format!("no file {} for environment {env:?}", path.display()),
            ));
        }
    }
    if let Some(path) = &sources.file {
        if path.is_file() {
            builder = builder.add_source(File::from(path.clone()));
        } else {
            problems.push(problem(
                "--config",
                format!("no such file {}", path.display()),
            ));
        }
    }
    let vars: config::Map<String, String> = sources
        .env
        .iter()
        .filter(|(k, _)| k.starts_with("LIQPASS__"))
        .cloned()
        .collect();
    builder = builder.add_source(
        Environment::with_prefix("LIQPASS")
            .prefix_separator("__")
            .separator("__")
            .list_separator(",")
            .with_list_parse_key("chain.rpc_urls")
            .with_list_parse_key("chain.verify_rpc_urls")
            .try_parsing(true)
            .source(Some(vars)),
    );
    let cfg = match builder.build() {
        Ok(cfg) => cfg,
        Err(e) => {
            problems.push(problem("(files)", e.to_string()));
            return Err(ConfigError { problems });
        }
    };
    let mut r = Reader { cfg, problems };
    r.unknown_keys();
    match read(&mut r) {
        Some(s) if r.problems.is_empty() => Ok(s),
        _ => Err(ConfigError {
            problems: r.problems,
        }),
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
