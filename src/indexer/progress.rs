//! Catch-up progress people can read: while the indexer is far behind (from
//! the first deep range until it reaches the head, or a back-fill's end),
//! one `catching up` line every `log.progress_interval_ms`, the
//! `liqpass_indexer_catchup_*` gauges with it, and one `caught up` line at
//! the end. The arithmetic (`Progress::line`) is pure: time and counters
//! come in as arguments. It reads counters others keep; it changes nothing
//! the indexer decides with.

use std::time::{Duration, Instant};

use crate::metrics::Metrics;

/// Counters read at each report; rates are their change over the interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    pub requests: u64,
    pub rpc_errors: u64,
    pub refusals: u64,
    pub rate_limits: u64,
    /// Logs the completeness checks found missing and stored.
    pub recovered: u64,
}

impl Counters {
    /// The counters as they stand now.
    pub fn read(metrics: &Metrics) -> Self {
        let (requests, rpc_errors) = metrics.rpc_totals();
        Self {
            requests,
            rpc_errors,
            refusals: metrics.refusals_total(),
            rate_limits: metrics.rate_limited_total(),
            recovered: metrics.recovered_total(),
        }
    }
}

/// What one report says (all rates over the last interval).
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The next block to index.
    pub block: u64,
    pub done: u64,
    pub total: u64,
    pub percent: f64,
    pub blocks_per_s: f64,
    pub events_per_s: f64,
    /// `None` while nothing advanced in the interval.
    pub eta_s: Option<f64>,
    pub requests_per_s: f64,
    /// Changes over the interval.
    pub rpc_errors: u64,
    pub refused: u64,
    pub rate_limited: u64,
    pub recovered: u64,
}

/// The end of a catch-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub blocks: u64,
    pub events: u64,
    pub elapsed: Duration,
}

/// One catch-up, from its start block to the head.
#[derive(Debug)]
pub struct Progress {
    every: Duration,
    started: Instant,
    start_block: u64,
    events: u64,
    /// At the last report: when, the next block, events, counters.
    last: (Instant, u64, u64, Counters),
}

impl Progress {
    pub fn new(start_block: u64, every: Duration, now: Instant, counters: Counters) -> Self {
        Self {
            every,
            started: now,
            start_block,
            events: 0,
            last: (now, start_block, 0, counters),
        }
    }

    /// Events written since the catch-up started.
    pub fn add_events(&mut self, n: u64) {
        self.events += n;
    }

    /// True when the interval since the last report is over.
    pub fn due(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last.0) >= self.every
    }

    /// The report for `next` (the next block to index) heading for `target`
    /// (the head, inclusive); starts the next interval.
    pub fn line(&mut self, next: u64, target: u64, counters: Counters, now: Instant) -> Line {
        let (at, last_next, last_events, was) = self.last;
        let secs = now.saturating_duration_since(at).as_secs_f64().max(1e-3);
        let total = target
            .max(next.saturating_sub(1))
            .saturating_sub(self.start_block)
            + 1;
        let done = next.saturating_sub(self.start_block).min(total);
        let blocks_per_s = next.saturating_sub(last_next) as f64 / secs;
        let eta_s = (blocks_per_s > 0.0).then(|| (total - done) as f64 / blocks_per_s);
        let line = Line {
            block: next,
            done,
            total,
            percent: 100.0 * done as f64 / total as f64,
            blocks_per_s,
            events_per_s: self.events.saturating_sub(last_events) as f64 / secs,
            eta_s,
            requests_per_s: counters.requests.saturating_sub(was.requests) as f64 / secs,
            rpc_errors: counters.rpc_errors.saturating_sub(was.rpc_errors),
            refused: counters.refusals.saturating_sub(was.refusals),
            rate_limited: counters.rate_limits.saturating_sub(was.rate_limits),
            recovered: counters.recovered.saturating_sub(was.recovered),
        };
        self.last = (now, next.max(last_next), self.events, counters);
        line
    }

    /// The totals once `next` is the next block to index.
    pub fn summary(&self, next: u64, now: Instant) -> Summary {
        Summary {
            blocks: next.saturating_sub(self.start_block),
            events: self.events,
            elapsed: now.saturating_duration_since(self.started),
        }
    }
}

/// Logs `line` and sets the gauges. `range`: the next getLogs range size;
/// `budget`: the budget's rate, as `Budget::describe` says it.
pub fn report(metrics: &Metrics, line: &Line, range: u64, budget: Option<String>) {
    let g = &metrics.catchup;
    g.done_ratio.set(line.done as f64 / line.total as f64);
    g.blocks_per_second.set(line.blocks_per_s);
    g.events_per_second.set(line.events_per_s);
    g.eta_seconds.set(line.eta_s.unwrap_or(-1.0));
    g.range_blocks.set(i64::try_from(range).unwrap_or(i64::MAX));
    let budget = budget.unwrap_or_else(|| "unlimited".to_owned());
    tracing::info!(
        block = line.block,
        done = line.done,
        total = line.total,
        percent = %format!("{:.1}", line.percent),
        blocks_per_s = line.blocks_per_s.round(),
        events_per_s = %format!("{:.1}", line.events_per_s),
        eta_s = %line.eta_s.map_or("unknown".to_owned(), |s| format!("{s:.0}")),
        range,
        requests_per_s = %format!("{:.1}", line.requests_per_s),
        rpc_errors = line.rpc_errors,
        refused = line.refused,
        rate_limited = line.rate_limited,
        recovered = line.recovered,
        budget_per_s = %budget,
        "catching up"
    );
}

/// Logs the end of a catch-up and clears the gauges that only mean
/// something during one.
pub fn finish(metrics: &Metrics, summary: &Summary) {
    let g = &metrics.catchup;
    g.active.set(0);
    g.done_ratio.set(1.0);
    g.eta_seconds.set(0.0);
    let secs = summary.elapsed.as_secs_f64();
    tracing::info!(
        blocks = summary.blocks,
        events = summary.events,
        elapsed_s = %format!("{secs:.1}"),
        blocks_per_s = (summary.blocks as f64 / secs.max(1e-3)).round(),
        "caught up"
    );
}

/// Sets the gauges for a catch-up starting at `from`.
pub fn start(metrics: &Metrics, from: u64) {
    let g = &metrics.catchup;
    g.active.set(1);
    g.start_block.set(i64::try_from(from).unwrap_or(i64::MAX));
    g.done_ratio.set(0.0);
    g.eta_seconds.set(-1.0);
}

#[cfg(test)]
#[path = "progress_tests.rs"]
mod tests;
