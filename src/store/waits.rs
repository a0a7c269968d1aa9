//! Whether this process's write in flight waits on a lock another session
//! holds (the order API's `LOCK TABLE orders`, its long write transaction
//! on SQLite, an operator's): what `/readyz` and the `db_lock_wait_seconds`
//! gauge show, read from the present, never remembered.
//!
//! A wait shows once the write has lasted [`SHOWN_AFTER`] and the backend
//! confirms it (PostgreSQL: `pg_blocking_pids` of the write's session names
//! the sessions it waits for; SQLite: the write is still in `BEGIN
//! IMMEDIATE`, waiting for the one write lock). It is one episode through
//! the retries of writes that end as lock waits (`since` is when the
//! first of them began), and it is over as soon as a write of the same
//! task commits, fails otherwise, or is abandoned, and when a term begins.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::failure::WriteFailure;
use super::StoreError;

/// How long a write runs before the watch asks whether it waits on a lock:
/// longer than most writes of ours take (milliseconds), shorter than the
/// shortest bound of a wait (9/10 of half the shortest lease TTL), so
/// that every wait that ends as a lock wait was seen. Only a wait the
/// backend confirms shows.
pub const SHOWN_AFTER: Duration = Duration::from_millis(100);
/// How often the watch asks again while the write goes on.
const ASK_EVERY: Duration = Duration::from_millis(500);

/// A lock wait in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockWait {
    /// When the first write of the episode began.
    pub since: Instant,
    /// PostgreSQL: the server processes (`pg_backend_pid`) holding what
    /// the write waits for. Empty on SQLite, which cannot say.
    pub blockers: Vec<i32>,
}

impl std::fmt::Display for LockWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held_by = match self.blockers.as_slice() {
            [] => "SQLite's write lock".to_owned(),
            pids => {
                let pids: Vec<_> = pids.iter().map(|p| p.to_string()).collect();
                format!("server pid {}", pids.join(", "))
            }
        };
        write!(
            f,
            "waiting on a lock held by another session ({held_by}) for {} s",
            self.since.elapsed().as_secs()
        )
    }
}

/// What a write in flight tells the watch about itself.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    /// SQLite: the write lock is ours (`BEGIN IMMEDIATE` returned).
    pub locked: AtomicBool,
    /// PostgreSQL: the server process running the transaction (0 until
    /// it began).
    pub pid: AtomicI32,
}

/// The episodes in progress, one per writing task (the indexer's batches,
/// the completeness task's recoveries, retention…: one task's commit says
/// nothing of another's wait), shared by every clone of a store.
#[derive(Debug, Clone, Default)]
pub(super) struct Waits(Arc<Mutex<HashMap<Option<tokio::task::Id>, LockWait>>>);

impl Waits {
    /// The lock wait in progress, if any: the longest, when several tasks
    /// wait.
    pub fn current(&self) -> Option<LockWait> {
        self.slots().values().min_by_key(|w| w.since).cloned()
    }

    /// Ends every episode (a term begins).
    pub fn clear(&self) {
        self.slots().clear();
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<Option<tokio::task::Id>, LockWait>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `write`; while it runs past [`SHOWN_AFTER`], asks `blockers`
    /// every [`ASK_EVERY`] whether it waits on another session's lock
    /// (`Some(pids)`) and records the wait. The asking runs beside the
    /// write, never in its way: a lock that goes lets the write on at once.
    pub async fn watch<T, F>(
        &self,
        write: impl Future<Output = Result<T, StoreError>>,
        blockers: impl Fn() -> F,
    ) -> Result<T, StoreError>
    where
        F: Future<Output = Option<Vec<i32>>>,
    {
        let began = Instant::now();
        let mut episode = Episode {
            waits: self,
            task: tokio::task::try_id(),
            goes_on: false,
        };
        tokio::pin!(write);
        let mut next = began + SHOWN_AFTER;
        let done = loop {
            let asked = async {
                tokio::time::sleep_until(next.into()).await;
                blockers().await
            };
            tokio::select! {
                done = &mut write => break done,
                found = asked => {
                    if let Some(pids) = found {
                        let mut slots = self.slots();
                        let since = slots.get(&episode.task).map_or(began, |w| w.since);
                        slots.insert(episode.task, LockWait { since, blockers: pids });
                    }
                    next = Instant::now() + ASK_EVERY;
                }
            }
        };
        // A write that ended waiting is retried: the episode goes on.
        episode.goes_on = matches!(&done, Err(e) if WriteFailure::of(e) == WriteFailure::LockWait);
        done
    }
}

/// Ends its task's episode when the write it watches ends, unless that
/// write ended as a lock wait (also when the write is dropped: abandoned).
struct Episode<'w> {
    waits: &'w Waits,
    task: Option<tokio::task::Id>,
    goes_on: bool,
}

impl Drop for Episode<'_> {
    fn drop(&mut self) {
        if !self.goes_on {
            self.waits.slots().remove(&self.task);
        }
    }
}

impl InFlight {
    /// SQLite's answer: still waiting for the write lock.
    pub fn sqlite_waiting(&self) -> Option<Vec<i32>> {
        (!self.locked.load(Ordering::Relaxed)).then(Vec::new)
    }

    /// PostgreSQL's session of the write, once it began.
    pub fn pid(&self) -> Option<i32> {
        Some(self.pid.load(Ordering::Relaxed)).filter(|p| *p != 0)
    }
}
