//! Typed settings, loaded in layers (built-in `config/default.toml`, then
//! `config/$LIQPASS_ENV.toml`, then `--config FILE`, then `LIQPASS__*`
//! environment variables) and validated all at once: every bad or unknown
//! key is reported in one error, and the program exits 64.
//!
//! It must never print a secret (RPC URLs carry API keys: see [`RpcUrl`]) and
//! never replace a bad value by a default.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use alloy::primitives::Address;
use config::{Config, Environment, File, FileFormat, Value, ValueKind};
use url::Url;

/// The built-in first layer: the shipped `config/default.toml`.
pub const DEFAULTS: &str = include_str!("../config/default.toml");

/// Every known key, by section.
const KEYS: &[(&str, &[&str])] = &[
    ("database", &["url", "busy_timeout_ms", "max_connections"]),
    (
        "chain",
        &[
            "rpc_url",
            "rpc_urls",
            "chain_id",
            "contract",
            "token",
            "treasury",
            "start_block",
            "confirmations",
            "finality",
            "max_block_range",
            "poll_interval_ms",
            "reorg_window",
            "stall_after_s",
            "request_timeout_ms",
            "max_requests_per_second",
        ],
    ),
    ("reconcile", &["overpayment"]),
    ("http", &["listen", "max_ready_lag_blocks"]),
    ("log", &["format", "level"]),
    ("shutdown", &["grace_s"]),
];

/// All settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub chain: ChainSettings,
    pub reconcile: ReconcileSettings,
    pub http: HttpSettings,
    pub log: LogSettings,
    pub shutdown: ShutdownSettings,
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// An sqlx SQLite URL (`sqlite:...`).
    pub url: String,
    pub busy_timeout: Duration,
    pub max_connections: u32,
}

#[derive(Debug, Clone)]
pub struct ChainSettings {
    /// `rpc_url` first, then `rpc_urls`; never empty.
    pub rpc_urls: Vec<RpcUrl>,
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
    pub request_timeout: Duration,
    /// Request budget per endpoint; `None`: unlimited.
    pub max_requests_per_second: Option<u64>,
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
}

/// What an overpayment does to its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverpaymentPolicy {
    Accept,
    Flag,
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

/// An RPC URL: a secret. `Display` and `Debug` show only scheme, host and
/// port; [`RpcUrl::expose`] is the one way to the full URL.
#[derive(Clone, PartialEq, Eq)]
pub struct RpcUrl(Url);

impl RpcUrl {
    /// Parses an http(s) or ws(s) URL.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url =
            Url::parse(text).map_err(|e| format!("not a URL ({e}): {}", redact_url_str(text)))?;
        match url.scheme() {
            "http" | "https" | "ws" | "wss" if url.host_str().is_some() => Ok(Self(url)),
            "http" | "https" | "ws" | "wss" => Err(format!("no host in {}", redact_url_str(text))),
            other => Err(format!("scheme {other:?} is not http, https, ws or wss")),
        }
    }

    /// The full URL, secret included. Only for connecting.
    pub fn expose(&self) -> &Url {
        &self.0
    }

    /// True for ws:// and wss://.
    pub fn is_ws(&self) -> bool {
        matches!(self.0.scheme(), "ws" | "wss")
    }

    /// scheme://host[:port], plus `/<redacted>` when anything else was there.
    pub fn redacted(&self) -> String {
        let u = &self.0;
        let mut out = format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""));
        if let Some(port) = u.port() {
            out.push_str(&format!(":{port}"));
        }
        let hidden = (u.path() != "/" && !u.path().is_empty())
            || u.query().is_some()
            || u.fragment().is_some()
            || !u.username().is_empty()
            || u.password().is_some();
        if hidden {
            out.push_str("/<redacted>");
        }
        out
    }
}

impl fmt::Display for RpcUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for RpcUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RpcUrl({})", self.redacted())
    }
}

/// A printable stand-in for a URL-ish string that did not parse: the scheme
/// and host if they can be found, never the rest.
pub fn redact_url_str(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = host.rsplit('@').next().unwrap_or("");
            format!("{scheme}://{host}/<redacted>")
        }
        None => "<redacted>".to_owned(),
    }
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

/// Loads and validates the settings, reporting every problem at once.
pub fn load(sources: &Sources) -> Result<Settings, ConfigError> {
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
    let settings = r.settings();
    match settings {
        Some(s) if r.problems.is_empty() => Ok(s),
        _ => Err(ConfigError {
            problems: r.problems,
        }),
    }
}

fn problem(key: &str, message: impl Into<String>) -> Problem {
    Problem {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// Reads keys one by one, collecting problems instead of stopping.
struct Reader {
    cfg: Config,
    problems: Vec<Problem>,
}

impl Reader {
    fn bad(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(problem(key, message));
    }

    fn value(&mut self, key: &str) -> Option<Value> {
        match self.cfg.get::<Value>(key) {
            Ok(v) if !matches!(v.kind, ValueKind::Nil) => Some(v),
            _ => None,
        }
    }

    fn required(&mut self, key: &str) -> Option<Value> {
        let v = self.value(key);
        if v.is_none() {
            let env = format!("LIQPASS__{}", key.replace('.', "__").to_uppercase());
            self.bad(key, format!("missing (set it in a config file or {env})"));
        }
        v
    }

    fn string(&mut self, key: &str, required: bool) -> Option<String> {
        let v = if required {
            self.required(key)?
        } else {
            self.value(key)?
        };
        match v.kind {
            ValueKind::String(s) => Some(s),
            other => {
                self.bad(key, format!("expected a string, got {other}"));
                None
            }
        }
    }

    fn int(&mut self, key: &str, min: u64, max: u64) -> Option<u64> {
        let v = self.required(key)?;
        let n = match &v.kind {
            ValueKind::I64(n) => u64::try_from(*n).ok(),
            ValueKind::U64(n) => Some(*n),
            ValueKind::I128(n) => u64::try_from(*n).ok(),
            ValueKind::U128(n) => u64::try_from(*n).ok(),
            ValueKind::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                self.bad(key, format!("{n} is out of range {min}..={max}"));
                None
            }
            None => {
                self.bad(
                    key,
                    format!(
                        "expected an integer in {min}..={max}, got {:?}",
                        v.kind.to_string()
                    ),
                );
                None
            }
        }
    }

    fn millis(&mut self, key: &str, min: u64, max: u64) -> Option<Duration> {
        self.int(key, min, max).map(Duration::from_millis)
    }

    fn address(&mut self, key: &str, required: bool) -> Option<Address> {
        let text = self.string(key, required)?;
        match parse_address(&text) {
            Ok(a) => Some(a),
            Err(e) => {
                self.bad(key, e);
                None
            }
        }
    }

    fn choice<T: Copy>(&mut self, key: &str, options: &[(&str, T)]) -> Option<T> {
        let text = self.string(key, true)?;
        let found = options
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, v)| *v);
        if found.is_none() {
            let names: Vec<_> = options.iter().map(|(n, _)| *n).collect();
            self.bad(key, format!("{text:?} is not one of {names:?}"));
        }
        found
    }

    fn rpc_urls(&mut self) -> Vec<RpcUrl> {
        let mut texts = Vec::new();
        if let Some(one) = self
            .string("chain.rpc_url", false)
            .filter(|s| !s.is_empty())
        {
            texts.push(("chain.rpc_url", one));
        }
        if let Some(v) = self.value("chain.rpc_urls") {
            match v.kind {
                ValueKind::Array(items) => {
                    for item in items {
                        match item.kind {
                            ValueKind::String(s) if !s.is_empty() => {
                                texts.push(("chain.rpc_urls", s))
                            }
                            ValueKind::String(_) => {}
                            other => self.bad(
                                "chain.rpc_urls",
                                format!("expected URL strings, got {other}"),
                            ),
                        }
                    }
                }
                ValueKind::String(s) if !s.is_empty() => texts.push(("chain.rpc_urls", s)),
                ValueKind::String(_) => {}
                other => self.bad(
                    "chain.rpc_urls",
                    format!("expected a list of URLs, got {other}"),
                ),
            }
        }
        let mut urls: Vec<RpcUrl> = Vec::new();
        for (key, text) in texts {
            match RpcUrl::parse(&text) {
                Ok(u) if urls.contains(&u) => self.bad(key, format!("{u} is listed twice")),
                Ok(u) => urls.push(u),
                Err(e) => self.bad(key, e),
            }
        }
        if urls.is_empty()
            && !self
                .problems
                .iter()
                .any(|p| p.key.starts_with("chain.rpc_url"))
        {
            self.bad(
                "chain.rpc_url",
                "missing (set LIQPASS__CHAIN__RPC_URL or chain.rpc_urls)",
            );
        }
        urls
    }

    fn unknown_keys(&mut self) {
        let table = match self
            .cfg
            .clone()
            .try_deserialize::<config::Map<String, Value>>()
        {
            Ok(table) => table,
            Err(e) => {
                self.bad("(all)", format!("cannot read the settings as tables: {e}"));
                return;
            }
        };
        for (section, value) in table {
            let Some((_, keys)) = KEYS.iter().find(|(s, _)| *s == section) else {
                let known: Vec<_> = KEYS.iter().map(|(s, _)| *s).collect();
                self.bad(
                    &section,
                    format!("unknown section; known sections: {}", known.join(", ")),
                );
                continue;
            };
            let ValueKind::Table(entries) = value.kind else {
                self.bad(&section, "expected a table of settings");
                continue;
            };
            for key in entries.keys() {
                if !keys.contains(&key.as_str()) {
                    self.bad(
                        &format!("{section}.{key}"),
                        format!(
                            "unknown key; known keys in [{section}]: {}",
                            keys.join(", ")
                        ),
                    );
                }
            }
        }
    }

    fn settings(&mut self) -> Option<Settings> {
        let database = (|| {
            let url = self.string("database.url", true);
            if let Some(u) = &url {
                if !u.starts_with("sqlite:") {
                    self.bad("database.url", format!("{u:?} is not a sqlite: URL"));
                }
            }
            Some(DatabaseSettings {
                url: url?,
                busy_timeout: self.millis("database.busy_timeout_ms", 1, 600_000)?,
                max_connections: u32::try_from(self.int("database.max_connections", 1, 64)?)
                    .ok()?,
            })
        })();
        let chain = self.chain();
        let reconcile = self
            .choice(
                "reconcile.overpayment",
                &[
                    ("accept", OverpaymentPolicy::Accept),
                    ("flag", OverpaymentPolicy::Flag),
                ],
            )
            .map(|overpayment| ReconcileSettings { overpayment });
        let http = (|| {
            let listen = self.string("http.listen", true);
            let listen = listen.and_then(|l| match l.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.bad(
                        "http.listen",
                        format!("{l:?} is not an address like 127.0.0.1:9464"),
                    );
                    None
                }
            });
            let lag = self.int("http.max_ready_lag_blocks", 0, 1_000_000);
            Some(HttpSettings {
                listen: listen?,
                max_ready_lag_blocks: lag?,
            })
        })();
        let log = (|| {
            let format = self.choice(
                "log.format",
                &[("text", LogFormat::Text), ("json", LogFormat::Json)],
            );
            let level = self.string("log.level", true);
            if let Some(l) = &level {
                if let Err(e) = tracing_subscriber::EnvFilter::try_new(l) {
                    self.bad("log.level", format!("{l:?} is not a tracing filter: {e}"));
                }
            }
            Some(LogSettings {
                format: format?,
                level: level?,
            })
        })();
        let shutdown = self
            .int("shutdown.grace_s", 1, 3600)
            .map(|s| ShutdownSettings {
                grace: Duration::from_secs(s),
            });
        Some(Settings {
            database: database?,
            chain: chain?,
            reconcile: reconcile?,
            http: http?,
            log: log?,
            shutdown: shutdown?,
        })
    }

    fn chain(&mut self) -> Option<ChainSettings> {
        let rpc_urls = self.rpc_urls();
        let chain_id = self.int("chain.chain_id", 1, u64::MAX >> 1);
        let contract = self.address("chain.contract", true);
        let token = self.address("chain.token", true);
        let treasury = self.address("chain.treasury", false);
        let start_block = self.int("chain.start_block", 0, i64::MAX as u64);
        let confirmations = self.int("chain.confirmations", 0, 10_000);
        let finality = self.choice(
            "chain.finality",
            &[
                ("depth", Finality::Depth),
                ("safe", Finality::Safe),
                ("finalized", Finality::Finalized),
            ],
        );
        let max_block_range = self.int("chain.max_block_range", 1, 1_000_000);
        let poll_interval = self.millis("chain.poll_interval_ms", 10, 600_000);
        let reorg_window = self.int("chain.reorg_window", 1, 100_000);
        if let (Some(w), Some(c)) = (reorg_window, confirmations) {
            if w <= c {
                self.bad(
                    "chain.reorg_window",
                    format!("{w} must be greater than chain.confirmations ({c})"),
                );
            }
        }
        let stall_after = self
            .int("chain.stall_after_s", 1, 86_400)
            .map(Duration::from_secs);
        let request_timeout = self.millis("chain.request_timeout_ms", 100, 600_000);
        let rps_key = "chain.max_requests_per_second";
        let max_requests_per_second = match self.value(rps_key) {
            None => Some(None),
            Some(_) => self.int(rps_key, 1, 100_000).map(Some),
        };
        if rpc_urls.is_empty() {
            return None;
        }
        Some(ChainSettings {
            rpc_urls,
            chain_id: chain_id?,
            contract: contract?,
            token: token?,
            treasury,
            start_block: start_block?,
            confirmations: confirmations?,
            finality: finality?,
            max_block_range: max_block_range?,
            poll_interval: poll_interval?,
            reorg_window: reorg_window?,
            stall_after: stall_after?,
            request_timeout: request_timeout?,
            max_requests_per_second: max_requests_per_second?,
        })
    }
}

/// Parses a 0x address; mixed case must carry a valid EIP-55 checksum.
pub fn parse_address(text: &str) -> Result<Address, String> {
    let hex = text
        .strip_prefix("0x")
        .ok_or_else(|| format!("{text:?} is not a 0x-prefixed address"))?;
    if hex.len() != 40 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("{text:?} is not 20 bytes of hex"));
    }
    let mixed =
        hex.chars().any(|c| c.is_ascii_lowercase()) && hex.chars().any(|c| c.is_ascii_uppercase());
    if mixed {
        Address::parse_checksummed(text, None)
            .map_err(|_| format!("{text:?} has a bad EIP-55 checksum"))
    } else {
        text.parse().map_err(|e| format!("{text:?}: {e}"))
    }
}

impl Settings {
    /// The effective settings as TOML, in the layout of `default.toml`, RPC
    /// URLs redacted.
    pub fn to_redacted_toml(&self) -> String {
        let mut doc: BTreeMap<&str, toml::Table> = BTreeMap::new();
        let mut put = |section: &'static str, key: &str, value: toml::Value| {
            doc.entry(section)
                .or_default()
                .insert(key.to_owned(), value);
        };
        let int = |n: u64| toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX));
        let ms = |d: Duration| int(d.as_millis() as u64);
        let s = |t: String| toml::Value::String(t);
        let d = &self.database;
        put("database", "url", s(d.url.clone()));
        put("database", "busy_timeout_ms", ms(d.busy_timeout));
        put(
            "database",
            "max_connections",
            int(u64::from(d.max_connections)),
        );
        let c = &self.chain;
        let urls = c.rpc_urls.iter().map(|u| s(u.redacted())).collect();
        put("chain", "rpc_urls", toml::Value::Array(urls));
        put("chain", "chain_id", int(c.chain_id));
        put("chain", "contract", s(format!("{:#x}", c.contract)));
        put("chain", "token", s(format!("{:#x}", c.token)));
        if let Some(t) = c.treasury {
            put("chain", "treasury", s(format!("{t:#x}")));
        }
        put("chain", "start_block", int(c.start_block));
        put("chain", "confirmations", int(c.confirmations));
        let finality = match c.finality {
            Finality::Depth => "depth",
            Finality::Safe => "safe",
            Finality::Finalized => "finalized",
        };
        put("chain", "finality", s(finality.into()));
        put("chain", "max_block_range", int(c.max_block_range));
        put("chain", "poll_interval_ms", ms(c.poll_interval));
        put("chain", "reorg_window", int(c.reorg_window));
        put("chain", "stall_after_s", int(c.stall_after.as_secs()));
        put("chain", "request_timeout_ms", ms(c.request_timeout));
        if let Some(rps) = c.max_requests_per_second {
            put("chain", "max_requests_per_second", int(rps));
        }
        let over = match self.reconcile.overpayment {
            OverpaymentPolicy::Accept => "accept",
            OverpaymentPolicy::Flag => "flag",
        };
        put("reconcile", "overpayment", s(over.into()));
        put("http", "listen", s(self.http.listen.to_string()));
        put(
            "http",
            "max_ready_lag_blocks",
            int(self.http.max_ready_lag_blocks),
        );
        let format = match self.log.format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        };
        put("log", "format", s(format.into()));
        put("log", "level", s(self.log.level.clone()));
        put("shutdown", "grace_s", int(self.shutdown.grace.as_secs()));
        let mut out = String::new();
        for (section, _) in KEYS {
            if let Some(table) = doc.get(section) {
                out.push_str(&format!("[{section}]\n"));
                out.push_str(&toml::to_string(table).expect("a table of plain values serialises"));
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
