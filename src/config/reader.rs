//! Reads the layered configuration key by key, collecting every problem
//! instead of stopping at the first; each section has its own method, so a
//! command validates the sections it reads and no others.

use std::net::SocketAddr;
use std::time::Duration;

use alloy::primitives::Address;
use config::{Config, Value, ValueKind};

use super::{
    kind_of, AuditSettings, ChainSettings, DatabaseSettings, Endpoints, Finality, HaSettings,
    HttpSettings, Kind, LogFormat, LogSettings, OutboxSettings, OverpaymentPolicy, Problem,
    ReconcileSettings, SecretUrl, Settings, ShutdownSettings, KEYS,
};
use crate::domain::{RequestBounds, Scope};

mod webhooks;

pub(super) fn problem(key: &str, message: impl Into<String>) -> Problem {
    Problem {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// Reads keys one by one, collecting problems instead of stopping.
pub(super) struct Reader {
    pub(super) cfg: Config,
    pub(super) problems: Vec<Problem>,
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

    /// An integer in the range [`KEYS`] gives `key`.
    fn int(&mut self, key: &str) -> Option<u64> {
        let Kind::Int(min, max) = kind_of(key) else {
            panic!("{key} is not an integer in config::KEYS");
        };
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

    fn millis(&mut self, key: &str) -> Option<Duration> {
        self.int(key).map(Duration::from_millis)
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

    /// One of the words [`KEYS`] gives `key`, as the value `options` pair
    /// with it.
    fn choice<T: Copy>(&mut self, key: &str, options: &[(&str, T)]) -> Option<T> {
        debug_assert!(
            matches!(kind_of(key), Kind::Choice(names)
                if names.iter().eq(options.iter().map(|(n, _)| n))),
            "{key}: the reader's choices are the key table's"
        );
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

    fn rpc_urls(&mut self) -> Vec<SecretUrl> {
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
        let mut urls: Vec<SecretUrl> = Vec::new();
        for (key, text) in texts {
            match SecretUrl::parse(&text) {
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

    pub(super) fn unknown_keys(&mut self) {
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
            if section == "notify" {
                self.bad(
                    "notify",
                    "renamed: the outbox's retention is outbox.retention_days \
                     (LIQPASS__OUTBOX__RETENTION_DAYS)",
                );
                continue;
            }
            let sections = super::sections();
            if !sections.contains(&section.as_str()) {
                self.bad(
                    &section,
                    format!("unknown section; known sections: {}", sections.join(", ")),
                );
                continue;
            }
            let keys: Vec<&str> = KEYS
                .iter()
                .filter_map(|(k, _)| k.strip_prefix(section.as_str())?.strip_prefix('.'))
                .collect();
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

    pub(super) fn database(&mut self) -> Option<DatabaseSettings> {
        let url = self.string("database.url", true);
        if let Some(u) = &url {
            if let Err(why) = check_db_url(u) {
                self.bad("database.url", why);
            }
        }
        let schema = self.string("database.schema", true);
        if let Some(s) = &schema {
            let ok = s.len() <= 63
                && s.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                self.bad(
                    "database.schema",
                    format!("{s:?} is not a plain lower-case identifier (a-z, 0-9, _; at most 63)"),
                );
            }
        }
        let busy_timeout = self.millis("database.busy_timeout_ms");
        let max_connections = self.int("database.max_connections");
        let max_write = self.millis("database.max_write_ms");
        let write_gap = self.millis("database.write_gap_ms");
        let alone_after = self.int("database.alone_after_s");
        let alone_max_write = self.millis("database.alone_max_write_ms");
        Some(DatabaseSettings {
            url: url?,
            schema: schema?,
            busy_timeout: busy_timeout?,
            max_connections: u32::try_from(max_connections?).ok()?,
            max_write: max_write?,
            write_gap: write_gap?,
            alone_after: Some(alone_after?)
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
            alone_max_write: alone_max_write?,
        })
    }

    pub(super) fn log(&mut self) -> Option<LogSettings> {
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
        let progress_interval = self.millis("log.progress_interval_ms");
        Some(LogSettings {
            format: format?,
            level: level?,
            progress_interval: progress_interval?,
        })
    }

    pub(super) fn reconcile(&mut self) -> Option<ReconcileSettings> {
        let overpayment = self.choice(
            "reconcile.overpayment",
            &[
                ("accept", OverpaymentPolicy::Accept),
                ("flag", OverpaymentPolicy::Flag),
            ],
        );
        let sweep = self.int("reconcile.pending_sweep_interval_s");
        let grace = self.int("reconcile.pending_sweep_grace_s");
        Some(ReconcileSettings {
            overpayment: overpayment?,
            pending_sweep_interval: off_when_zero(Duration::from_secs(sweep?)),
            pending_sweep_grace: Duration::from_secs(grace?),
        })
    }

    pub(super) fn audit(&mut self) -> Option<AuditSettings> {
        let interval = self.millis("audit.interval_ms");
        let share = self.int("audit.request_share_percent");
        Some(AuditSettings {
            interval: off_when_zero(interval?),
            request_share_percent: share? as u32,
        })
    }

    pub(super) fn http(&mut self) -> Option<HttpSettings> {
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
        let lag = self.int("http.max_ready_lag_blocks");
        Some(HttpSettings {
            listen: listen?,
            max_ready_lag_blocks: lag?,
        })
    }

    pub(super) fn shutdown(&mut self) -> Option<ShutdownSettings> {
        self.int("shutdown.grace_s").map(|s| ShutdownSettings {
            grace: Duration::from_secs(s),
        })
    }

    pub(super) fn outbox(&mut self) -> Option<OutboxSettings> {
        self.int("outbox.retention_days")
            .map(|days| OutboxSettings {
                retention_days: days as u32,
            })
    }

    pub(super) fn ha(&mut self) -> Option<HaSettings> {
        let ttl = self.millis("ha.lease_ttl_ms");
        let renew = self.millis("ha.renew_interval_ms");
        let id = self.string("ha.replica_id", true);
        if let (Some(ttl), Some(renew)) = (ttl, renew) {
            if renew * 3 > ttl {
                self.bad(
                    "ha.renew_interval_ms",
                    format!(
                        "{} ms is more than a third of ha.lease_ttl_ms ({} ms): a leader \
                         must be able to miss a renewal and still step down before its \
                         lease expires",
                        renew.as_millis(),
                        ttl.as_millis()
                    ),
                );
            }
        }
        let id = id?;
        if id.len() > 200 {
            self.bad("ha.replica_id", "longer than 200 characters".to_owned());
        }
        Some(HaSettings {
            lease_ttl: ttl?,
            renew_interval: renew?,
            replica_id: if id.trim().is_empty() {
                default_replica_id()
            } else {
                id
            },
        })
    }

    /// `chain.chain_id` and `chain.contract`: what the stored rows belong to.
    pub(super) fn scope(&mut self) -> Option<Scope> {
        let chain_id = self.int("chain.chain_id");
        let contract = self.address("chain.contract", true);
        Some(Scope {
            chain_id: chain_id?,
            contract: contract?,
        })
    }

    /// `chain.start_block`: where indexing starts.
    pub(super) fn start_block(&mut self) -> Option<u64> {
        self.int("chain.start_block")
    }

    /// The RPC endpoints and their request timeout.
    pub(super) fn endpoints(&mut self) -> Option<Endpoints> {
        let urls = self.rpc_urls();
        let timeout = self.millis("chain.request_timeout_ms");
        let max_answer = self.int("chain.max_answer_mib");
        if urls.is_empty() {
            return None;
        }
        Some(Endpoints {
            urls,
            requests: RequestBounds {
                timeout: timeout?,
                max_answer: max_answer? as usize * 1024 * 1024,
            },
        })
    }

    /// Everything: what `run`, `backfill` and `check-config` read.
    pub(super) fn settings(&mut self) -> Option<Settings> {
        let database = self.database();
        let chain = self.chain();
        let reconcile = self.reconcile();
        let http = self.http();
        let log = self.log();
        let shutdown = self.shutdown();
        let ha = self.ha();
        let outbox = self.outbox();
        let audit = self.audit();
        let webhooks = self.webhooks();
        Some(Settings {
            database: database?,
            chain: chain?,
            reconcile: reconcile?,
            http: http?,
            log: log?,
            shutdown: shutdown?,
            ha: ha?,
            outbox: outbox?,
            audit: audit?,
            webhooks: webhooks?,
            shown: super::render::effective(&self.cfg),
        })
    }

    fn chain(&mut self) -> Option<ChainSettings> {
        let scope = self.scope();
        let endpoints = self.endpoints();
        let token = self.address("chain.token", true);
        let treasury = self.address("chain.treasury", false);
        let start_block = self.start_block();
        let confirmations = self.int("chain.confirmations");
        let finality = self.choice(
            "chain.finality",
            &[
                ("depth", Finality::Depth),
                ("safe", Finality::Safe),
                ("finalized", Finality::Finalized),
            ],
        );
        let max_block_range = self.int("chain.max_block_range");
        let poll_interval = self.millis("chain.poll_interval_ms");
        let reorg_window = self.int("chain.reorg_window");
        if let (Some(w), Some(c)) = (reorg_window, confirmations) {
            if w <= c {
                self.bad(
                    "chain.reorg_window",
                    format!("{w} must be greater than chain.confirmations ({c})"),
                );
            }
        }
        let stall_after = self.int("chain.stall_after_s").map(Duration::from_secs);
        let rps_key = "chain.max_requests_per_second";
        let max_requests_per_second = match self.value(rps_key) {
            None => Some(None),
            Some(_) => self.int(rps_key).map(Some),
        };
        let max_concurrent_requests = self.int("chain.max_concurrent_requests");
        let primary = endpoints.as_ref().map_or(&[][..], |e| e.urls.as_slice());
        let (verify_rpc_urls, verify_quorum) = self.verification(primary);
        let (scope, endpoints) = (scope?, endpoints?);
        Some(ChainSettings {
            rpc_urls: endpoints.urls,
            chain_id: scope.chain_id,
            contract: scope.contract,
            token: token?,
            treasury,
            start_block: start_block?,
            confirmations: confirmations?,
            finality: finality?,
            max_block_range: max_block_range?,
            poll_interval: poll_interval?,
            reorg_window: reorg_window?,
            stall_after: stall_after?,
            requests: endpoints.requests,
            verify_rpc_urls,
            verify_quorum: verify_quorum?,
            max_requests_per_second: max_requests_per_second?,
            max_concurrent_requests: max_concurrent_requests? as usize,
        })
    }

    /// `chain.verify_rpc_urls` (secrets, none of them one of `primary`) and
    /// `chain.verify_quorum` (1..=their number).
    fn verification(&mut self, primary: &[SecretUrl]) -> (Vec<SecretUrl>, Option<usize>) {
        const KEY: &str = "chain.verify_rpc_urls";
        let mut texts = Vec::new();
        match self.value(KEY).map(|v| v.kind) {
            None => {}
            Some(ValueKind::Array(items)) => {
                for item in items {
                    match item.kind {
                        ValueKind::String(s) if s.is_empty() => {}
                        ValueKind::String(s) => texts.push(s),
                        other => self.bad(KEY, format!("expected URL strings, got {other}")),
                    }
                }
            }
            Some(ValueKind::String(s)) if s.is_empty() => {}
            Some(ValueKind::String(s)) => texts.push(s),
            Some(other) => self.bad(KEY, format!("expected a list of URLs, got {other}")),
        }
        let mut urls: Vec<SecretUrl> = Vec::new();
        for text in texts {
            match SecretUrl::parse(&text) {
                Ok(u) if urls.contains(&u) => self.bad(KEY, format!("{u} is listed twice")),
                Ok(u) if primary.contains(&u) => self.bad(
                    KEY,
                    format!("{u} is also in chain.rpc_url(s): a verifier must be independent"),
                ),
                Ok(u) => urls.push(u),
                Err(e) => self.bad(KEY, e),
            }
        }
        let quorum = self
            .int("chain.verify_quorum")
            .and_then(|q| usize::try_from(q).ok());
        let quorum = match quorum {
            Some(q) if q > 1 && urls.is_empty() => {
                self.bad(
                    "chain.verify_quorum",
                    format!("{q} needs chain.verify_rpc_urls (none set: only 1 is accepted)"),
                );
                None
            }
            Some(q) if q > urls.len().max(1) => {
                self.bad(
                    "chain.verify_quorum",
                    format!(
                        "{q} is more than the {n} endpoint(s) of chain.verify_rpc_urls \
                         (it must be 1..={n})",
                        n = urls.len()
                    ),
                );
                None
            }
            other => other,
        };
        (urls, quorum)
    }
}

/// Parses a 0x address; mixed case must carry a valid EIP-55 checksum.
/// `None` for a zero interval (the feature is off), else the interval.
fn off_when_zero(interval: Duration) -> Option<Duration> {
    (!interval.is_zero()).then_some(interval)
}

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

/// `<hostname>:<pid>:<start ms>`: unique among replicas (a pod's hostname is
/// its name) and across restarts of one.
fn default_replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{host}:{}:{started}", std::process::id())
}

/// Whether `url` is a database URL the store can open (the settings'
/// check, so that `check-config` refuses what `run` would); the reason,
/// printable, when not.
fn check_db_url(url: &str) -> Result<(), String> {
    use std::str::FromStr;
    let parsed = if crate::secret::is_postgres_url(url) {
        sqlx::postgres::PgConnectOptions::from_str(url).map(drop)
    } else if url.starts_with("sqlite:") {
        sqlx::sqlite::SqliteConnectOptions::from_str(url).map(drop)
    } else {
        return Err(format!(
            "{} is neither a sqlite: nor a postgres:// URL",
            crate::secret::display_db_url(url)
        ));
    };
    parsed.map_err(|e| format!("{} does not parse: {e}", crate::secret::display_db_url(url)))
}
