//! The effective settings as TOML (`check-config`), secrets redacted.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Finality, LogFormat, OverpaymentPolicy, Settings, KEYS};

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
        put("database", "url", s(crate::secret::display_db_url(&d.url)));
        put("database", "schema", s(d.schema.clone()));
        put("database", "busy_timeout_ms", ms(d.busy_timeout));
        put(
            "database",
            "max_connections",
            int(u64::from(d.max_connections)),
        );
        put("database", "max_write_ms", ms(d.max_write));
        put("database", "write_gap_ms", ms(d.write_gap));
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
        let verifiers = c.verify_rpc_urls.iter().map(|u| s(u.redacted())).collect();
        put("chain", "verify_rpc_urls", toml::Value::Array(verifiers));
        put("chain", "verify_quorum", int(c.verify_quorum as u64));
        put(
            "chain",
            "max_concurrent_requests",
            int(c.max_concurrent_requests as u64),
        );
        if let Some(rps) = c.max_requests_per_second {
            put("chain", "max_requests_per_second", int(rps));
        }
        let over = match self.reconcile.overpayment {
            OverpaymentPolicy::Accept => "accept",
            OverpaymentPolicy::Flag => "flag",
        };
        put("reconcile", "overpayment", s(over.into()));
        let r = &self.reconcile;
        let sweep = r.pending_sweep_interval.map_or(0, |d| d.as_secs());
        put("reconcile", "pending_sweep_interval_s", int(sweep));
        put(
            "reconcile",
            "pending_sweep_grace_s",
            int(r.pending_sweep_grace.as_secs()),
        );
        let audit = self.audit.interval.map_or(0, |d| d.as_millis() as u64);
        put("audit", "interval_ms", int(audit));
        put(
            "audit",
            "request_share_percent",
            int(u64::from(self.audit.request_share_percent)),
        );
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
        put(
            "log",
            "progress_interval_ms",
            ms(self.log.progress_interval),
        );
        put("shutdown", "grace_s", int(self.shutdown.grace.as_secs()));
        put(
            "outbox",
            "retention_days",
            int(u64::from(self.outbox.retention_days)),
        );
        match &self.webhooks {
            None => put("webhooks", "url", s(String::new())),
            Some(w) => {
                put("webhooks", "url", s(w.url.redacted()));
                put("webhooks", "secret", s(w.secret.to_string()));
                put("webhooks", "request_timeout_ms", ms(w.request_timeout));
                put(
                    "webhooks",
                    "give_up_after_s",
                    int(w.give_up_after.as_secs()),
                );
                put("webhooks", "retry_initial_ms", ms(w.retry_initial));
                put("webhooks", "retry_max_ms", ms(w.retry_max));
                put("webhooks", "max_in_flight", int(w.max_in_flight as u64));
            }
        }
        put(
            "ha",
            "lease_ttl_ms",
            int(self.ha.lease_ttl.as_millis() as u64),
        );
        put(
            "ha",
            "renew_interval_ms",
            int(self.ha.renew_interval.as_millis() as u64),
        );
        put("ha", "replica_id", s(self.ha.replica_id.clone()));
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
