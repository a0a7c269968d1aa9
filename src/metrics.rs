//! Prometheus metric families, registered on a registry the caller passes in
//! (no statics). Typed `record_*` helpers hide label names; callers record
//! after a commit, never before.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

use crate::domain::{EventVersion, MatchStatus, WriteFailure};

/// Every metric the indexer exports; names are `liqpass_indexer_<thing>_<unit>`.
#[derive(Clone)]
pub struct Metrics {
    pub up: IntGauge,
    pub ready: IntGauge,
    pub head_block: IntGauge,
    pub indexed_block: IntGauge,
    pub lag_blocks: IntGauge,
    pub lag_seconds: IntGauge,
    pub last_commit_timestamp_seconds: IntGauge,
    events_indexed: IntCounterVec,
    pub ignored_logs: IntCounter,
    payments: IntCounterVec,
    transitions: IntCounterVec,
    pub reorgs: IntCounter,
    reorg_depth: Histogram,
    pub deep_reorgs: IntCounter,
    pub unacknowledged_deep_reorgs: IntGauge,
    rpc_requests: IntCounterVec,
    rpc_errors: IntCounterVec,
    rpc_duration: HistogramVec,
    getlogs_range: Histogram,
    getlogs_refusals: IntCounterVec,
    getlogs_range_cap: IntGaugeVec,
    rpc_budget: GaugeVec,
    rpc_rate_limited: IntCounterVec,
    commit_duration: Histogram,
    batch_rows: Histogram,
    lock_hold: Histogram,
    pub db_write_retries: IntCounter,
    db_write_failures: IntCounterVec,
    pub db_lock_wait_seconds: Gauge,
    pub db_writes_alone: IntGauge,
    pub stalled: IntGauge,
    pub leader: IntGauge,
    pub lease_epoch: IntGauge,
    verifications: IntCounterVec,
    pub disputed_payments: IntGauge,
    webhook_deliveries: IntCounterVec,
    pub webhook_queue_depth: IntGauge,
    pub webhook_oldest_undelivered_age: IntGauge,
    pub webhook_endpoint_disabled: IntGauge,
    logs_recovered: IntCounterVec,
    pub malformed_logs: IntCounter,
    bloom_blocks: IntCounterVec,
    pub audited_block: IntGauge,
    /// Catch-up progress (`indexer::progress`).
    pub catchup: Catchup,
}

/// Gauges of the catch-up in progress (see `indexer::progress`); the blocks
/// left and the target are `lag_blocks` and `head_block`.
#[derive(Clone)]
pub struct Catchup {
    /// 1 while catching up.
    pub active: IntGauge,
    pub start_block: IntGauge,
    /// Share of the catch-up's blocks done, 0..=1.
    pub done_ratio: Gauge,
    pub blocks_per_second: Gauge,
    pub events_per_second: Gauge,
    pub eta_seconds: Gauge,
    pub range_blocks: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn name(thing: &str) -> String {
    format!("liqpass_indexer_{thing}")
}

impl Metrics {
    /// Creates every family and registers it on `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let gauge = |thing: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name(thing), help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |thing: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name(thing), help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let counter_vec = |thing: &str,
                           help: &str,
                           labels: &[&str]|
         -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name(thing), help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let histogram =
            |thing: &str, help: &str, buckets: Vec<f64>| -> Result<Histogram, prometheus::Error> {
                let h =
                    Histogram::with_opts(HistogramOpts::new(name(thing), help).buckets(buckets))?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let seconds = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let counts = prometheus::exponential_buckets(1.0, 4.0, 10)?;

        let build_info = IntGaugeVec::new(
            Opts::new(name("build_info"), "Build information; always 1."),
            &["version"],
        )?;
        registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        let rpc_duration = HistogramVec::new(
            HistogramOpts::new(name("rpc_request_duration_seconds"), "RPC request latency.")
                .buckets(seconds.clone()),
            &["method"],
        )?;
        registry.register(Box::new(rpc_duration.clone()))?;
        let getlogs_range_cap = IntGaugeVec::new(
            Opts::new(
                name("getlogs_range_cap_blocks"),
                "getLogs block limit learned from an endpoint's refusals.",
            ),
            &["endpoint"],
        )?;
        registry.register(Box::new(getlogs_range_cap.clone()))?;
        let rpc_budget = GaugeVec::new(
            Opts::new(
                name("rpc_budget_requests_per_second"),
                "Requests per second the endpoint's budget allows now (AIMD).",
            ),
            &["endpoint"],
        )?;
        registry.register(Box::new(rpc_budget.clone()))?;
        let float = |thing: &str, help: &str| -> Result<Gauge, prometheus::Error> {
            let g = Gauge::new(name(thing), help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let catchup = Catchup {
            active: gauge("catchup_active", "1 while a catch-up (deep sync) runs.")?,
            start_block: gauge(
                "catchup_start_block",
                "First block of the current or last catch-up.",
            )?,
            done_ratio: float(
                "catchup_done_ratio",
                "Share of the catch-up's blocks (start block to head) indexed, 0..1.",
            )?,
            blocks_per_second: float(
                "catchup_blocks_per_second",
                "Blocks indexed per second over the last progress interval.",
            )?,
            events_per_second: float(
                "catchup_events_per_second",
                "Events written per second over the last progress interval.",
            )?,
            eta_seconds: float(
                "catchup_eta_seconds",
                "Estimated seconds until caught up, at the last interval's rate (-1: unknown).",
            )?,
            range_blocks: gauge(
                "catchup_range_blocks",
                "Block range size the next getLogs request asks for.",
            )?,
        };

        Ok(Self {
            catchup,
            up: gauge("up", "1 while the indexing loop runs.")?,
            ready: gauge("ready", "1 when /readyz answers 200.")?,
            head_block: gauge("head_block", "Latest block number reported by the node.")?,
            indexed_block: gauge("indexed_block", "Checkpoint: last fully indexed block.")?,
            lag_blocks: gauge("lag_blocks", "Head minus checkpoint, in blocks.")?,
            lag_seconds: gauge("lag_seconds", "Age of the checkpoint block, in seconds.")?,
            last_commit_timestamp_seconds: gauge(
                "last_commit_timestamp_seconds",
                "Unix time of the last committed batch.",
            )?,
            events_indexed: counter_vec(
                "events_indexed_total",
                "PremiumPaid logs stored, by event version.",
                &["version"],
            )?,
            ignored_logs: counter(
                "ignored_logs_total",
                "Fetched logs dropped because they lack their position (a pending log).",
            )?,
            payments: counter_vec(
                "payments_total",
                "Payments reconciled, by match_status.",
                &["match_status"],
            )?,
            transitions: counter_vec(
                "order_transitions_total",
                "Order payment_status changes made by the indexer, by target state.",
                &["to"],
            )?,
            reorgs: counter("reorgs_total", "Chain reorganisations rolled back.")?,
            reorg_depth: histogram(
                "reorg_depth_blocks",
                "Depth of rolled-back reorganisations.",
                prometheus::exponential_buckets(1.0, 2.0, 10)?,
            )?,
            deep_reorgs: counter(
                "deep_reorgs_total",
                "Reorganisations that reversed a payment already counted as paid.",
            )?,
            unacknowledged_deep_reorgs: gauge(
                "unacknowledged_deep_reorgs",
                "Deep reorgs not yet acknowledged with `liqpass-indexer ack-reorg`.",
            )?,
            rpc_requests: counter_vec(
                "rpc_requests_total",
                "RPC requests, by method and endpoint.",
                &["method", "endpoint"],
            )?,
            rpc_errors: counter_vec(
                "rpc_errors_total",
                "Failed RPC requests, by method and endpoint.",
                &["method", "endpoint"],
            )?,
            rpc_duration,
            getlogs_range: histogram(
                "getlogs_range_blocks",
                "Block range size of eth_getLogs requests.",
                counts.clone(),
            )?,
            rpc_rate_limited: counter_vec(
                "rpc_rate_limited_total",
                "Rate-limit answers (HTTP 429, JSON-RPC rate-limit codes and wordings) by endpoint, \
                 each one, alloy's retries included (counted below them).",
                &["endpoint"],
            )?,
            getlogs_refusals: counter_vec(
                "getlogs_refusals_total",
                "getLogs ranges refused (limit: blocks, results) or timed out, by endpoint.",
                &["endpoint", "limit"],
            )?,
            getlogs_range_cap,
            rpc_budget,
            commit_duration: histogram(
                "batch_commit_duration_seconds",
                "Time to write and commit one batch.",
                seconds.clone(),
            )?,
            batch_rows: histogram("batch_rows", "Events written per batch.", counts)?,
            lock_hold: histogram(
                "write_lock_hold_seconds",
                "How long each write transaction held the database's write lock.",
                seconds,
            )?,
            db_write_retries: counter(
                "db_write_retries_total",
                "Write transactions rolled back and retried, whatever the cause (either backend).",
            )?,
            db_write_failures: counter_vec(
                "db_write_failures_total",
                "Write transactions that failed (and were retried), by cause.",
                &["cause"],
            )?,
            db_lock_wait_seconds: float(
                "db_lock_wait_seconds",
                "How long the leader's write transactions have waited on a lock another session \
                 holds (the order API's, an operator's), through their retries; 0 when not waiting.",
            )?,
            db_writes_alone: gauge(
                "db_writes_alone",
                "1 while no other connection has committed to the SQLite database for \
                 database.alone_after_s, so write transactions are sized to \
                 database.alone_max_write_ms; 0 otherwise, and always on PostgreSQL.",
            )?,
            stalled: gauge("stalled", "1 while the head or the indexer is stalled.")?,
            leader: gauge(
                "leader",
                "1 while this replica holds the write lease (the one that writes), 0 as a standby.",
            )?,
            lease_epoch: gauge(
                "lease_epoch",
                "The epoch (fencing token) of the write lease this replica holds or last held.",
            )?,
            verifications: counter_vec(
                "payment_verifications_total",
                "Final payments checked against chain.verify_rpc_urls, by outcome \
                 (verified, disputed, unconfirmed: asked again later).",
                &["outcome"],
            )?,
            disputed_payments: gauge(
                "disputed_payments",
                "Live payment events an independent endpoint contradicts (orders held in confirming).",
            )?,
            webhook_deliveries: counter_vec(
                "webhook_deliveries_total",
                "Webhook delivery attempts, by result: delivered (2xx), failed (retried later), \
                 gave_up (undelivered past webhooks.give_up_after_s), gone (410: endpoint disabled).",
                &["result"],
            )?,
            webhook_queue_depth: gauge(
                "webhook_queue_depth",
                "Notifications neither delivered nor given up (the leader's dispatcher; 0 elsewhere).",
            )?,
            webhook_oldest_undelivered_age: gauge(
                "webhook_oldest_undelivered_age_seconds",
                "Age of the oldest notification neither delivered nor given up (0 when none).",
            )?,
            webhook_endpoint_disabled: gauge(
                "webhook_endpoint_disabled",
                "1 once the webhook receiver answered 410 Gone: nothing is sent until a restart.",
            )?,
            malformed_logs: counter(
                "malformed_logs_total",
                "Logs with a PremiumPaid topic0 that no emit of either version can produce, \
                 kept raw in malformed_logs (never a payment).",
            )?,
            logs_recovered: counter_vec(
                "logs_recovered_total",
                "PremiumPaid logs an answer had left out, found later and stored, by the defence \
                 that found them (audit, verify, sweep, repair).",
                &["path"],
            )?,
            bloom_blocks: counter_vec(
                "bloom_blocks_total",
                "Near-head blocks by what their logsBloom said: skipped (holds none of ours), \
                 fetched (may hold ours: logs asked for by block hash) and, of those, empty.",
                &["outcome"],
            )?,
            audited_block: gauge(
                "audited_block",
                "The completeness audit's position: every block up to it was asked for again \
                 once final, and what was missing stored.",
            )?,
        })
    }

    /// RPC requests and failed ones since start, all methods and endpoints.
    pub fn rpc_totals(&self) -> (u64, u64) {
        (sum(&self.rpc_requests), sum(&self.rpc_errors))
    }

    /// The counter of `endpoint`'s rate-limit answers (its budget counts on it).
    pub fn rate_limited(&self, endpoint: &str) -> IntCounter {
        self.rpc_rate_limited.with_label_values(&[endpoint])
    }

    /// Rate-limit answers since start, all endpoints.
    pub fn rate_limited_total(&self) -> u64 {
        sum(&self.rpc_rate_limited)
    }

    /// getLogs ranges refused or timed out since start, all endpoints.
    pub fn refusals_total(&self) -> u64 {
        sum(&self.getlogs_refusals)
    }

    pub fn record_events(&self, version: EventVersion, n: u64) {
        self.events_indexed
            .with_label_values(&[version.label()])
            .inc_by(n);
    }

    /// Events stored since start, all versions.
    pub fn events_total(&self) -> u64 {
        [EventVersion::V1, EventVersion::V2]
            .into_iter()
            .map(|v| self.events_indexed.with_label_values(&[v.label()]).get())
            .sum()
    }

    pub fn record_payment(&self, status: MatchStatus) {
        self.payments.with_label_values(&[status.as_str()]).inc();
    }

    pub fn record_transition(&self, to: &str, n: u64) {
        if n > 0 {
            self.transitions.with_label_values(&[to]).inc_by(n);
        }
    }

    pub fn record_reorg(&self, depth: u64) {
        self.reorgs.inc();
        self.reorg_depth.observe(depth as f64);
    }

    pub fn record_rpc(&self, method: &str, endpoint: &str, elapsed: Duration, ok: bool) {
        self.rpc_requests
            .with_label_values(&[method, endpoint])
            .inc();
        if !ok {
            self.rpc_errors.with_label_values(&[method, endpoint]).inc();
        }
        self.rpc_duration
            .with_label_values(&[method])
            .observe(elapsed.as_secs_f64());
    }

    pub fn record_webhook(&self, result: &str) {
        self.webhook_deliveries.with_label_values(&[result]).inc();
    }

    pub fn record_write_failure(&self, cause: WriteFailure) {
        self.db_write_failures
            .with_label_values(&[cause.label()])
            .inc();
    }

    pub fn record_lock_hold(&self, held: Duration) {
        self.lock_hold.observe(held.as_secs_f64());
    }

    pub fn record_range(&self, blocks: u64) {
        self.getlogs_range.observe(blocks as f64);
    }

    /// The requests per second `endpoint`'s budget allows now.
    pub fn record_budget(&self, endpoint: &str, per_second: f64) {
        self.rpc_budget
            .with_label_values(&[endpoint])
            .set(per_second);
    }

    /// A getLogs range refused by `endpoint` (`limit`: "blocks", "results"
    /// or "timeout"), and the block limit now kept for it, if any.
    pub fn record_refusal(&self, endpoint: &str, limit: &str, cap: Option<u64>) {
        self.getlogs_refusals
            .with_label_values(&[endpoint, limit])
            .inc();
        if let Some(cap) = cap {
            self.getlogs_range_cap
                .with_label_values(&[endpoint])
                .set(i64::try_from(cap).unwrap_or(i64::MAX));
        }
    }

    pub fn record_commit(&self, elapsed: Duration, rows: u64) {
        self.commit_duration.observe(elapsed.as_secs_f64());
        self.batch_rows.observe(rows as f64);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        self.last_commit_timestamp_seconds.set(now);
    }

    /// Outcomes of a verification round (`verified`, `disputed`, `unconfirmed`).
    pub fn record_verifications(&self, outcome: &str, n: u64) {
        if n > 0 {
            self.verifications.with_label_values(&[outcome]).inc_by(n);
        }
    }

    /// `n` logs found missing and stored by the defence `path` (`audit`,
    /// `verify`, `sweep`, `repair`).
    pub fn record_recovered(&self, path: &str, n: u64) {
        self.logs_recovered.with_label_values(&[path]).inc_by(n);
    }

    /// Logs recovered since start, every path.
    pub fn recovered_total(&self) -> u64 {
        sum(&self.logs_recovered)
    }

    /// Near-head blocks by bloom outcome: `skipped`, `fetched`, `empty`
    /// (fetched, and none of our logs came back).
    pub fn record_bloom(&self, outcome: &str, n: u64) {
        if n > 0 {
            self.bloom_blocks.with_label_values(&[outcome]).inc_by(n);
        }
    }

    /// Pre-creates the labelled series so dashboards show zeros, not gaps.
    pub fn init_labels(&self) {
        for status in MatchStatus::ALL {
            self.payments.with_label_values(&[status.as_str()]);
        }
        for v in [EventVersion::V1, EventVersion::V2] {
            self.events_indexed.with_label_values(&[v.label()]);
        }
        for to in ["confirming", "paid", "pending", "reversed"] {
            self.transitions.with_label_values(&[to]);
        }
        for cause in WriteFailure::ALL {
            self.db_write_failures.with_label_values(&[cause.label()]);
        }
        for outcome in ["verified", "disputed", "unconfirmed"] {
            self.verifications.with_label_values(&[outcome]);
        }
        for result in ["delivered", "failed", "gave_up", "gone"] {
            self.webhook_deliveries.with_label_values(&[result]);
        }
        for path in ["audit", "verify", "sweep", "repair"] {
            self.logs_recovered.with_label_values(&[path]);
        }
        for outcome in ["skipped", "fetched", "empty"] {
            self.bloom_blocks.with_label_values(&[outcome]);
        }
    }
}

/// The sum of a counter family's series.
fn sum(counters: &IntCounterVec) -> u64 {
    counters
        .collect()
        .iter()
        .flat_map(|family| family.get_metric())
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

/// Renders `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .expect("encoding to a Vec cannot fail");
    String::from_utf8(buf).expect("the text encoder writes UTF-8")
}
