//! The readiness handle: what the indexer last saw (head, checkpoint, RPC and
//! stall state, deep reorgs), shared with the HTTP endpoint. Plain atomics,
//! written by the indexer, read by `/readyz`.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store::LockWait;

/// Shared, cheap-to-clone readiness state.
#[derive(Debug, Clone, Default)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    alive: AtomicBool,
    stopping: AtomicBool,
    rpc_ok: AtomicBool,
    synced_once: AtomicBool,
    head: AtomicU64,
    /// Unix ms when the head last advanced, and of the last commit.
    head_changed_ms: AtomicU64,
    committed_ms: AtomicU64,
    /// 0: stall detection off.
    stall_after_ms: AtomicU64,
    indexed: AtomicU64,
    deep_reorgs_unacknowledged: AtomicI64,
    /// Why the last write transaction failed, in words; `None` once one
    /// committed after it, or a term began or ended since.
    db_failing: Mutex<Option<String>>,
    /// Waiting for the write lease instead of writing.
    standby: AtomicBool,
}

/// Why the indexer is not ready, as shown by `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    Starting,
    Stopping,
    RpcUnreachable,
    /// The write in flight waits on another session's lock (`store::waits`).
    WaitingOnLock(LockWait),
    DbWritesFailing {
        cause: String,
    },
    Stalled,
    Lagging {
        lag: u64,
        max: u64,
    },
    DeepReorg {
        count: i64,
    },
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Starting => f.write_str("starting: not caught up yet"),
            Self::Stopping => f.write_str("shutting down"),
            Self::RpcUnreachable => f.write_str("no RPC endpoint answers"),
            Self::WaitingOnLock(wait) => write!(f, "{wait}"),
            Self::DbWritesFailing { cause } => write!(f, "database writes failing: {cause}"),
            Self::Stalled => f.write_str("stalled: no new head or no commit while behind"),
            Self::Lagging { lag, max } => write!(f, "lagging {lag} blocks behind the head (max {max})"),
            Self::DeepReorg { count } => write!(
                f,
                "{count} deep reorg(s) reversed paid orders; run `liqpass-indexer ack-reorg` after review"
            ),
        }
    }
}

impl Health {
    pub fn set_alive(&self, alive: bool) {
        self.inner.alive.store(alive, Ordering::Relaxed);
    }
    pub fn alive(&self) -> bool {
        self.inner.alive.load(Ordering::Relaxed)
    }
    pub fn set_stopping(&self) {
        self.inner.stopping.store(true, Ordering::Relaxed);
    }
    pub fn set_rpc_ok(&self, ok: bool) {
        self.inner.rpc_ok.store(ok, Ordering::Relaxed);
    }
    /// Turns stall detection on: no new head, or no commit while behind,
    /// for `after` is a stall.
    pub fn set_stall_after(&self, after: Duration) {
        self.inner
            .stall_after_ms
            .store(after.as_millis() as u64, Ordering::Relaxed);
        let now = now_ms();
        self.inner.head_changed_ms.store(now, Ordering::Relaxed);
        self.inner.committed_ms.store(now, Ordering::Relaxed);
    }
    pub fn set_head(&self, head: u64) {
        if self.inner.head.swap(head, Ordering::Relaxed) != head {
            self.inner
                .head_changed_ms
                .store(now_ms(), Ordering::Relaxed);
        }
    }
    /// Records the checkpoint after a commit.
    pub fn set_indexed(&self, block: u64) {
        self.inner.indexed.store(block, Ordering::Relaxed);
        self.inner.committed_ms.store(now_ms(), Ordering::Relaxed);
        self.inner.synced_once.store(true, Ordering::Relaxed);
    }
    /// True when the head has not advanced, or nothing was committed while
    /// behind, for longer than the stall bound.
    pub fn stalled(&self) -> bool {
        let i = &self.inner;
        let after = i.stall_after_ms.load(Ordering::Relaxed);
        if after == 0 {
            return false;
        }
        let now = now_ms();
        let head_quiet = now.saturating_sub(i.head_changed_ms.load(Ordering::Relaxed)) > after;
        let no_commit = now.saturating_sub(i.committed_ms.load(Ordering::Relaxed)) > after;
        head_quiet || (no_commit && self.lag() > 0)
    }
    /// A write transaction failed, for `cause`: readiness names it until
    /// one commits (any writer's) or the term changes.
    pub fn write_failed(&self, cause: String) {
        self.set_db_failing(Some(cause));
    }
    /// A write transaction committed: whatever failed before is over.
    pub fn write_committed(&self) {
        self.set_db_failing(None);
    }
    fn set_db_failing(&self, cause: Option<String>) {
        *self
            .inner
            .db_failing
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = cause;
    }

    /// A standby waits for the write lease: it is ready (it must not block
    /// a rollout) as long as the database answers, and writes nothing.
    /// Becoming one, or leader, starts a term: a write failure of the term
    /// before says nothing of this one.
    pub fn set_standby(&self, standby: bool) {
        self.inner.standby.store(standby, Ordering::Relaxed);
        self.set_db_failing(None);
    }
    pub fn standby(&self) -> bool {
        self.inner.standby.load(Ordering::Relaxed)
    }
    /// `leader` or `standby`, as `/readyz` names it.
    pub fn role(&self) -> &'static str {
        if self.standby() {
            "standby"
        } else {
            "leader"
        }
    }

    pub fn set_deep_reorgs(&self, unacknowledged: i64) {
        self.inner
            .deep_reorgs_unacknowledged
            .store(unacknowledged, Ordering::Relaxed);
    }
    pub fn deep_reorgs(&self) -> i64 {
        self.inner
            .deep_reorgs_unacknowledged
            .load(Ordering::Relaxed)
    }
    pub fn head(&self) -> u64 {
        self.inner.head.load(Ordering::Relaxed)
    }
    pub fn indexed(&self) -> u64 {
        self.inner.indexed.load(Ordering::Relaxed)
    }
    pub fn lag(&self) -> u64 {
        self.head().saturating_sub(self.indexed())
    }

    /// Ready, or the first reason not to be; `waiting` is the store's lock
    /// wait in progress (`Store::lock_wait`), read by the caller now.
    pub fn readiness(&self, max_lag: u64, waiting: Option<LockWait>) -> Result<(), NotReady> {
        let i = &self.inner;
        if i.stopping.load(Ordering::Relaxed) {
            return Err(NotReady::Stopping);
        }
        if self.standby() {
            return Ok(());
        }
        let deep = i.deep_reorgs_unacknowledged.load(Ordering::Relaxed);
        if deep > 0 {
            return Err(NotReady::DeepReorg { count: deep });
        }
        // Named before the failures, the stall and the lag it causes.
        if let Some(wait) = waiting {
            return Err(NotReady::WaitingOnLock(wait));
        }
        let failing = i
            .db_failing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(cause) = failing {
            return Err(NotReady::DbWritesFailing { cause });
        }
        if self.stalled() {
            return Err(NotReady::Stalled);
        }
        if !i.rpc_ok.load(Ordering::Relaxed) {
            return Err(NotReady::RpcUnreachable);
        }
        if !i.synced_once.load(Ordering::Relaxed) {
            return Err(NotReady::Starting);
        }
        let lag = self.lag();
        if lag > max_lag {
            return Err(NotReady::Lagging { lag, max: max_lag });
        }
        Ok(())
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
