//! Leadership: of the replicas started on one database, exactly one writes.
//! It holds the write lease (`store::lease`) and renews it; the others wait
//! as standbys, polling the lease, and take it over, under the next epoch,
//! once it has expired on the database's clock. A leader that cannot renew
//! steps down before its lease can expire, and every one of its write
//! transactions checks the lease anyway (the fence), so a leader that was
//! paused or cut off past its lease commits nothing when it comes back.

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{HaSettings, Settings};
use crate::domain::Scope;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::store::failure::WriteFailure;
use crate::store::lease::{self, Fence};
use crate::store::{Store, StoreError};

/// Takes, keeps and gives up the lease for one replica.
#[derive(Clone)]
pub struct Lease {
    store: Store,
    scope: Scope,
    settings: HaSettings,
    metrics: Metrics,
    health: Health,
}

/// Why a leader stopped leading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepDown {
    /// The lease is no longer ours (taken over, or found expired).
    Lost,
    /// No renewal succeeded for this long: stepping down before the lease
    /// can expire.
    Unrenewed(Duration),
}

impl Lease {
    /// The lease of `settings`' chain and contract, on `store`, as
    /// `settings.ha` says.
    pub fn new(store: Store, settings: &Settings, metrics: Metrics, health: Health) -> Self {
        Self {
            store,
            scope: settings.chain.scope(),
            settings: settings.ha.clone(),
            metrics,
            health,
        }
    }

    /// This replica's name in the lease.
    pub fn replica(&self) -> &str {
        &self.settings.replica_id
    }

    /// Holds `fence`'s lease until `leading` is cancelled: the store to
    /// write with (fenced: every write checks and renews the lease) and the
    /// task that keeps renewing it ([`Lease::keep`]), which says why if it
    /// stepped down.
    pub fn hold(
        &self,
        fence: &Fence,
        leading: &CancellationToken,
    ) -> (Store, JoinHandle<Option<StepDown>>) {
        let writes = self.store.fenced(fence.clone(), self.settings.lease_ttl);
        let keeper = {
            let (lease, fence, leading) = (self.clone(), fence.clone(), leading.clone());
            let writes = writes.clone();
            tokio::spawn(async move { lease.keep(&fence, &writes, &leading).await })
        };
        (writes, keeper)
    }

    /// Takes the lease if it is free; `None` when another replica holds it
    /// (also while the leader's write transaction, at its end, holds the
    /// lease row longer than a renew interval: see `Store::begin_short`).
    pub async fn try_take(&self) -> Result<Option<Fence>, StoreError> {
        let mut tx = self.store.begin_short(self.settings.renew_interval).await?;
        let taken = lease::take(
            &mut tx.conn(),
            &self.scope,
            &self.settings.replica_id,
            self.settings.lease_ttl,
        )
        .await;
        let epoch = match taken {
            Err(e) if e.is_lock_timeout() => return Ok(None),
            taken => taken?,
        };
        tx.commit().await?;
        Ok(epoch.map(|epoch| self.leading(epoch)))
    }

    /// The lease as stored.
    pub async fn holder(&self) -> Result<Option<lease::Holder>, StoreError> {
        lease::current(&mut self.store.read().await?.conn(), &self.scope).await
    }

    fn leading(&self, epoch: i64) -> Fence {
        self.health.set_standby(false);
        self.metrics.leader.set(1);
        self.metrics.lease_epoch.set(epoch);
        tracing::info!(replica = %self.settings.replica_id, epoch, "took the write lease: leading");
        Fence {
            scope: self.scope,
            holder: self.settings.replica_id.clone(),
            epoch,
        }
    }

    /// Waits, as a standby, until this replica holds the lease; `None` if
    /// `cancel` fired first. Logs who holds it whenever that changes.
    pub async fn lead(&self, cancel: &CancellationToken) -> Option<Fence> {
        let mut seen: Option<(String, i64)> = None;
        let mut failing = false;
        loop {
            match self.try_take().await {
                Ok(Some(fence)) => return Some(fence),
                Ok(None) => {
                    self.stand_by();
                    failing = false;
                    if let Ok(Some(h)) = self.holder().await {
                        let now = (h.holder.clone(), h.epoch);
                        if seen.as_ref() != Some(&now) {
                            tracing::info!(leader = %h.holder, epoch = h.epoch,
                                expires_at = %h.expires_at, replica = %self.settings.replica_id,
                                "standby: another replica holds the write lease");
                            seen = Some(now);
                        }
                    }
                }
                Err(e) => {
                    self.stand_by();
                    if !failing {
                        tracing::warn!(error = %e, "cannot read the write lease; trying again");
                        failing = true;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.renew_interval) => {}
                _ = cancel.cancelled() => return None,
            }
        }
    }

    fn stand_by(&self) {
        self.health.set_standby(true);
        self.metrics.leader.set(0);
    }

    /// Renews `fence` every `ha.renew_interval` until `leading` is
    /// cancelled (returns `None`), or until this replica must step down:
    /// then it cancels `leading`, stands by and says why. The step-down
    /// comes at `ha.lease_ttl` minus one renew interval after the last
    /// renewal that succeeded (timed from when it was sent; a commit of
    /// `writes`, the fenced store, renews too: see `Store::write`), so
    /// before the lease can expire on the database's clock. So a renewal
    /// held up behind a long write transaction is no reason to step down
    /// while commits go on; nor, on SQLite, one that waits on the one
    /// write lock another session holds (no replica can take over while it
    /// does).
    pub async fn keep(
        &self,
        fence: &Fence,
        writes: &Store,
        leading: &CancellationToken,
    ) -> Option<StepDown> {
        let ttl = self.settings.lease_ttl;
        let every = self.settings.renew_interval;
        // SQLite: a renewal that waits on the database's one write lock
        // waits on another session that locks every writer out, any
        // replica's takeover included; no reason to step down while it
        // lasts (the lease, expired meanwhile but taken by nobody, is
        // renewed when the lock goes: see `lease::renew`).
        let one_write_lock = self.store.one_write_lock();
        let mut renewed = Instant::now();
        let mut failing = false;
        let mut locked_out = false;
        let why = loop {
            // Woken at the next renewal or at the step-down deadline,
            // whichever comes first: a renewal that failed just before the
            // deadline must not push the step-down a whole interval later
            // (to the lease's expiry).
            let next = Instant::now() + every;
            let wake = if locked_out {
                next
            } else {
                next.min(renewed + ttl - every)
            };
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = leading.cancelled() => return None,
            }
            if let Some(by_commit) = writes.renewed_by_commit() {
                renewed = renewed.max(by_commit);
            }
            // SQLite: a commit renewed the lease within the interval; a
            // renewal of our own now would be one more commit on another
            // connection, which the writer would take for the order API's
            // (`store::pace`'s alone rule), and it is not needed.
            if one_write_lock && !locked_out && renewed.elapsed() < every {
                continue;
            }
            let deadline = renewed + ttl - every;
            let sent = Instant::now();
            if sent >= deadline && !locked_out {
                break StepDown::Unrenewed(sent - renewed);
            }
            let attempt = async {
                let mut tx = self.store.begin_short(every).await?;
                // The new expiry counts from the database's `now` in the
                // renewal: PostgreSQL's is the transaction's start (before
                // any wait for the row), SQLite's the statement's, once the
                // write lock is ours (which may take its busy timeout).
                let from = if one_write_lock { Instant::now() } else { sent };
                let held = lease::renew(&mut tx.conn(), fence, ttl).await?;
                tx.commit().await?;
                Ok::<_, StoreError>((held, from))
            };
            // SQLite's renewal is bounded by its own busy timeout, and must
            // end by it: cut short, it could not tell a lock wait (no reason
            // to step down) from anything else.
            let bound = if one_write_lock {
                Duration::MAX
            } else {
                deadline - sent
            };
            match tokio::time::timeout(bound, attempt).await {
                Ok(Ok((true, from))) => {
                    renewed = from;
                    locked_out = false;
                    if failing {
                        tracing::info!(epoch = fence.epoch, "write lease renewed again");
                        failing = false;
                    }
                }
                Ok(Ok((false, _))) => break StepDown::Lost,
                // Our own write transaction holds the row; its commit
                // renews the lease (counted above).
                Ok(Err(e)) if e.is_lock_timeout() => {}
                Ok(Err(e)) if one_write_lock && WriteFailure::of(&e) == WriteFailure::LockWait => {
                    self.locked_out(fence, &mut locked_out);
                }
                Ok(Err(e)) => {
                    locked_out = false;
                    if !failing {
                        tracing::warn!(error = %e, epoch = fence.epoch,
                            "cannot renew the write lease; stepping down if it lasts");
                        failing = true;
                    }
                }
                Err(_) => break StepDown::Unrenewed(renewed.elapsed()),
            }
        };
        self.step_down(fence, &why.to_string());
        leading.cancel();
        Some(why)
    }

    /// A renewal found the database's one write lock held by another
    /// session: logged once per episode.
    fn locked_out(&self, fence: &Fence, locked_out: &mut bool) {
        if !*locked_out {
            tracing::warn!(
                epoch = fence.epoch,
                "cannot renew the write lease: another session holds the database's write lock; \
                 no replica can take the lease over while it does, so leading on"
            );
        }
        *locked_out = true;
    }

    /// Stops leading under `fence`: stands by, logs why.
    pub fn step_down(&self, fence: &Fence, why: &str) {
        self.stand_by();
        tracing::warn!(epoch = fence.epoch, replica = %self.settings.replica_id, why,
            "stepping down: no longer writing under this epoch");
    }

    /// Gives the lease up (clean shutdown), so a standby takes over at its
    /// next poll instead of after the TTL.
    pub async fn release(&self, fence: &Fence) {
        let released = async {
            let mut tx = self.store.begin_short(Duration::from_secs(4)).await?;
            let held = lease::release(&mut tx.conn(), fence).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(held)
        };
        match tokio::time::timeout(Duration::from_secs(5), released).await {
            Ok(Ok(true)) => {
                tracing::info!(epoch = fence.epoch, "released the write lease");
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not release the write lease; it expires by itself")
            }
            Err(_) => tracing::warn!("releasing the write lease timed out; it expires by itself"),
        }
        self.metrics.leader.set(0);
    }
}

impl std::fmt::Display for StepDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Lost => f.write_str("the lease was taken over or has expired"),
            Self::Unrenewed(d) => write!(
                f,
                "the lease could not be renewed for {:.1} s",
                d.as_secs_f64()
            ),
        }
    }
}
