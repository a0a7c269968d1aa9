//! Wiring: opens the store, builds metrics and the readiness handle, starts
//! the HTTP endpoint and the indexer, and handles shutdown. The caller owns
//! the listener and the stop signal (`start` takes both), so tests can bind
//! port 0 and cancel at will.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus::Registry;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::chain::source::ChainSource;
use crate::config::{DatabaseSettings, Endpoints, ScopedSettings, Settings};
use crate::domain::{RequestBounds, Scope};
use crate::ha::Lease;
use crate::health::Health;
use crate::http::{self, AppState};
use crate::indexer::{Indexer, IndexerError};
use crate::metrics::Metrics;
use crate::store::{incidents, Store, StoreError};
use crate::webhooks::Dispatcher;

mod audit;
mod exceptions;
pub use audit::audit;
pub use exceptions::{order, resolve, review, EventRef, Target};

/// Opens the store and refuses to run on a schema that is not up to date.
pub async fn open_store(database: &DatabaseSettings) -> anyhow::Result<Store> {
    let store = Store::open(database)
        .await
        .context("opening the database")?;
    let applied = store.applied_migrations().await?;
    let expected = store.expected_migrations();
    anyhow::ensure!(
        applied == expected,
        "the database schema is at migrations {applied:?}, this build expects {expected:?}: \
         run `liqpass-indexer migrate`"
    );
    Ok(store)
}

/// A running daemon: its HTTP address and the handle that stops it.
pub struct Running {
    pub addr: std::net::SocketAddr,
    pub health: Health,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts the daemon on `listener`; it stops when `cancel` fires, finishing
/// or rolling back the batch in hand within `shutdown.grace_s`.
pub async fn start(
    settings: Settings,
    listener: TcpListener,
    cancel: CancellationToken,
) -> anyhow::Result<Running> {
    let store = open_store(&settings.database).await?;
    let registry = Arc::new(Registry::new());
    let metrics = Metrics::new(&registry).context("registering metrics")?;
    metrics.init_labels();
    let health = Health::default();
    health.set_alive(true);
    health.set_stall_after(settings.chain.stall_after);
    let addr = listener.local_addr()?;
    let state = AppState {
        health: health.clone(),
        store: store.clone(),
        registry,
        metrics: metrics.clone(),
        max_ready_lag_blocks: settings.http.max_ready_lag_blocks,
        db_check: Default::default(),
    };
    let http_stop = CancellationToken::new();
    let server = tokio::spawn(http::serve(listener, state, http_stop.clone()));
    let handle = health.clone();
    let task = tokio::spawn(async move {
        let lease = Lease::new(store.clone(), &settings, metrics.clone(), handle.clone());
        let result = loop {
            let Some(fence) = lease.lead(&cancel).await else {
                break Ok(());
            };
            let leading = cancel.child_token();
            let (fenced, keeper) = lease.hold(&fence, &leading);
            let term = lead(
                settings.clone(),
                fenced,
                metrics.clone(),
                handle.clone(),
                &leading,
            )
            .await;
            leading.cancel();
            let stepped_down = keeper.await.ok().flatten();
            match (term, stepped_down) {
                (Err(e), None) if is_fenced(&e) => lease.step_down(&fence, &e.to_string()),
                // The database lost commits of this term: a new term starts
                // from the stored checkpoint (any replica's: the lease is
                // given up) and indexes the lost blocks again.
                (Err(e), None) if lost_commits(&e) => {
                    tracing::error!(error = %e, epoch = fence.epoch,
                        "ending the term: the next resumes from the stored checkpoint");
                    lease.release(&fence).await;
                }
                // Stopped (or failed) while leading: the lease goes at once.
                (term, None) => {
                    lease.release(&fence).await;
                    break term;
                }
                // The keeper stepped down and said why; stand by again.
                (_, Some(_)) => {}
            }
        };
        handle.set_stopping();
        handle.set_alive(false);
        http_stop.cancel();
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .map(|r| {
                r.map_err(anyhow::Error::from)
                    .and_then(|r| r.map_err(Into::into))
            })
        {
            tracing::warn!(error = %e, "http server ended with an error");
        }
        store.close().await;
        result
    });
    Ok(Running { addr, health, task })
}

/// One term as leader: indexes with the fenced store until `leading` is
/// cancelled (shutdown or step-down), then lets the batch in hand commit or
/// roll back within `shutdown.grace_s`.
async fn lead(
    settings: Settings,
    store: Store,
    metrics: Metrics,
    health: Health,
    leading: &CancellationToken,
) -> anyhow::Result<()> {
    let grace = settings.shutdown.grace;
    // The dispatcher delivers the outbox while this term lasts, through the
    // same fenced store; the indexer's end (or a fenced write) ends it.
    let dispatching = match settings.webhooks.clone() {
        Some(hooks) => {
            let dispatcher = Dispatcher::new(hooks, store.clone(), metrics.clone())
                .context("building the webhook client")?;
            Some(tokio::spawn(dispatcher.run(leading.child_token())))
        }
        None => None,
    };
    let indexing = async {
        let connected =
            Indexer::connect(settings, store, metrics, health.clone(), leading.clone()).await;
        match connected {
            Ok(mut indexer) => {
                // The completeness checks run beside the indexer for the
                // term, and end with it.
                // The leader-only tasks run beside the indexer for the
                // term, and end with it.
                let mut beside = vec![tokio::spawn(indexer.retention().run(leading.child_token()))];
                if let Some(auditor) = indexer.auditor() {
                    beside.push(tokio::spawn(auditor.run(leading.child_token())));
                }
                if let Some(verifying) = indexer.verification() {
                    beside.push(tokio::spawn(verifying.run()));
                }
                let indexed = indexer.run().await;
                for task in beside {
                    task.abort();
                    let _ = task.await;
                }
                indexed?
            }
            // Stopped while waiting for the endpoint: a clean exit.
            Err(IndexerError::Cancelled) => {}
            Err(e) => return Err(e.into()),
        }
        Ok::<_, anyhow::Error>(())
    };
    tokio::pin!(indexing);
    let term = tokio::select! {
        r = &mut indexing => r,
        _ = leading.cancelled() => {
            if !health.standby() {
                health.set_stopping();
            }
            // The batch in hand commits or rolls back; past the grace
            // period it is dropped, which rolls its transaction back.
            match tokio::time::timeout(grace, &mut indexing).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!(grace_s = grace.as_secs(), "grace period over; abandoning the batch in hand");
                    Ok(())
                }
            }
        }
    };
    if let Some(dispatching) = dispatching {
        dispatching.abort();
        if let Ok(Err(e)) = dispatching.await {
            tracing::warn!(error = %e, "the webhook dispatcher stopped");
        }
    }
    term
}

/// Whether `e` (from [`lead`], whose errors are the indexer's) is a write
/// refused by the lease's fence.
fn lost_commits(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<IndexerError>(),
        Some(IndexerError::Store(StoreError::CheckpointMoved { .. }))
    )
}

fn is_fenced(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<IndexerError>(),
        Some(IndexerError::Store(StoreError::Fenced { .. }))
    )
}

/// `liqpass-indexer run`: the daemon, until SIGTERM or SIGINT.
pub async fn run_daemon(settings: Settings) -> anyhow::Result<()> {
    let listener = TcpListener::bind(settings.http.listen)
        .await
        .with_context(|| format!("binding http.listen {}", settings.http.listen))?;
    if let Some(w) = settings
        .webhooks
        .as_ref()
        .and_then(|w| w.clear_text_warning())
    {
        tracing::warn!("{w}");
    }
    let cancel = CancellationToken::new();
    let running = start(settings, listener, cancel.clone()).await?;
    tracing::info!(addr = %running.addr, "liqpass-indexer running");
    let signals = tokio::spawn(stop_on_signals(cancel.clone()));
    let result = running.task.await.context("the indexer task panicked")?;
    signals.abort();
    result
}

/// First SIGTERM/SIGINT: cancel (graceful). Second: exit at once; the
/// database stays consistent because every write is one transaction.
async fn stop_on_signals(cancel: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    for round in 0..2 {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        if round == 0 {
            tracing::info!("stop signal received; finishing the batch in hand");
            cancel.cancel();
        } else {
            tracing::warn!("second stop signal; exiting now");
            std::process::exit(0);
        }
    }
}

/// `liqpass-indexer backfill --from --to`.
pub async fn backfill(settings: Settings, from: u64, to: u64) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let metrics = as_leader(settings, "backfill", |indexer| indexer.backfill(from, to)).await?;
    let events = metrics.1.events_total();
    println!(
        "backfill {from}..={to}: {events} new event(s) written in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs `job` (a command that writes: `backfill`, `audit --repair`) on an
/// indexer holding the write lease for its run; refused while another
/// replica leads (it would write alongside it). SIGTERM/SIGINT stop it
/// between transactions. Returns its output and its metrics.
pub(crate) async fn as_leader<T, F, Fut>(
    settings: Settings,
    what: &str,
    job: F,
) -> anyhow::Result<(T, Metrics)>
where
    F: FnOnce(Indexer) -> Fut,
    Fut: std::future::Future<Output = Result<T, IndexerError>>,
{
    let store = open_store(&settings.database).await?;
    let registry = Registry::new();
    let metrics = Metrics::new(&registry)?;
    let health = Health::default();
    let lease = Lease::new(store.clone(), &settings, metrics.clone(), health.clone());
    let Some(fence) = lease.try_take().await? else {
        let who = lease.holder().await?.map_or_else(
            || "another replica".to_owned(),
            |h| format!("{} (epoch {}, until {})", h.holder, h.epoch, h.expires_at),
        );
        anyhow::bail!(
            "the write lease is held by {who}: an indexer is running on this database; \
             {what} writes only as the leader, so stop it first (or wait for its lease to expire)"
        );
    };
    let cancel = CancellationToken::new();
    let signals = tokio::spawn(stop_on_signals(cancel.clone()));
    let (fenced, keeper) = lease.hold(&fence, &cancel);
    let result = async {
        let indexer =
            Indexer::connect(settings, fenced, metrics.clone(), health, cancel.clone()).await?;
        job(indexer).await
    }
    .await;
    cancel.cancel();
    let stepped_down = keeper.await.ok().flatten();
    signals.abort();
    lease.release(&fence).await;
    store.close().await;
    let out = result?;
    if let Some(why) = stepped_down {
        anyhow::bail!("{what} stopped: {why}");
    }
    Ok((out, metrics))
}

/// `liqpass-indexer status [--json]`.
pub async fn status(settings: &ScopedSettings, as_json: bool) -> anyhow::Result<()> {
    let store = Store::open(&settings.database)
        .await
        .context("opening the database")?;
    let scope = settings.scope;
    let st = store.status(&scope).await?;
    let head = head_of(&settings.endpoints, &scope).await;
    let lag = match (&head, st.checkpoint_block) {
        (Ok(h), Some(cp)) => Some(h.saturating_sub(cp)),
        _ => None,
    };
    let start = settings.start_block;
    let synced = head
        .as_ref()
        .ok()
        .map(|&h| synced_percent(start, st.checkpoint_block, h));
    let rate_limits = daemon_rate_limits(settings.http_listen).await;
    if as_json {
        let doc = json!({
            "rate_limited": rate_limits.as_ref().ok(),
            "rate_limited_error": rate_limits.as_ref().err(),
            "store": st,
            "head_block": head.as_ref().ok(),
            "head_error": head.as_ref().err(),
            "lag_blocks": lag,
            "start_block": start,
            "synced_percent": synced,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("chain {}  contract {}", st.chain_id, st.contract);
        let cp = st
            .checkpoint_block
            .map_or("none (nothing indexed yet)".into(), |b| b.to_string());
        println!("checkpoint   {cp}");
        match &head {
            Ok(h) => println!("head         {h}"),
            Err(e) => println!("head         unavailable ({e})"),
        }
        println!(
            "lag          {}",
            lag.map_or("-".into(), |l| format!("{l} blocks"))
        );
        println!(
            "synced       {} of blocks {start}..=head (chain.start_block {start})",
            synced.map_or("-".into(), |p| format!("{p:.1}%"))
        );
        let audited = match (st.audited_block, st.checkpoint_block) {
            (None, _) => "none yet (the completeness audit re-asks final blocks)".into(),
            (Some(a), Some(cp)) => format!(
                "{a} ({} blocks behind the checkpoint)",
                cp.saturating_sub(a)
            ),
            (Some(a), None) => a.to_string(),
        };
        println!("audited      {audited}");
        match &rate_limits {
            Ok(by_endpoint) => {
                let total: u64 = by_endpoint.values().sum();
                let each: Vec<String> = by_endpoint
                    .iter()
                    .map(|(endpoint, n)| format!("{endpoint} {n}"))
                    .collect();
                println!(
                    "rate limits  {total} answered 429 (or a rate-limit error) since the daemon \
                     started{}",
                    if each.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", each.join(", "))
                    }
                );
            }
            Err(why) => println!("rate limits  unknown: {why}"),
        }
        let leader = st
            .lease
            .as_ref()
            .map_or("none (no indexer has run)".into(), |l| {
                let state = if l.live { "until" } else { "expired at" };
                format!("{} (epoch {}, {state} {})", l.holder, l.epoch, l.expires_at)
            });
        println!("leader       {leader}");
        for (title, counts) in [
            ("orders by status", &st.orders_by_status),
            ("orders by payment_status", &st.orders_by_payment_status),
            ("events by match_status", &st.events_by_match_status),
            ("events by verification", &st.events_by_verification),
        ] {
            println!("\n{title}");
            if counts.is_empty() {
                println!("  (none)");
            }
            for (label, n) in counts {
                println!("  {label:<20} {n:>8}");
            }
        }
        println!("\nevents removed by reorgs {:>5}", st.events_removed);
        println!(
            "malformed logs          {:>5}  (a PremiumPaid topic0, no payment: `review` lists them)",
            st.malformed_logs
        );
    }
    store.close().await;
    Ok(())
}

/// The running daemon's rate-limit answers by endpoint (redacted), read
/// from its `/metrics` at `listen` (a wildcard address asked on loopback);
/// `Err`: why they are not known.
async fn daemon_rate_limits(
    listen: std::net::SocketAddr,
) -> Result<std::collections::BTreeMap<String, u64>, String> {
    if listen.port() == 0 {
        return Err("http.listen has port 0: the daemon's address is not known".into());
    }
    let mut at = listen;
    if at.ip().is_unspecified() {
        at.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let url = format!("http://{at}/metrics");
    let scraped = async {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await
    };
    let text = scraped
        .await
        .map_err(|e| format!("no daemon answers at {url} ({e})"))?;
    let mut by_endpoint = std::collections::BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("liqpass_indexer_rpc_rate_limited_total{endpoint=\"")
        else {
            continue;
        };
        let Some((endpoint, value)) = rest.split_once("\"} ") else {
            continue;
        };
        if let Ok(n) = value.trim().parse::<f64>() {
            by_endpoint.insert(endpoint.to_owned(), n as u64);
        }
    }
    Ok(by_endpoint)
}

/// Share of `start..=head` indexed, in percent: what `status` can tell
/// without the daemon (its rates are in the log and on `/metrics`).
fn synced_percent(start: u64, checkpoint: Option<u64>, head: u64) -> f64 {
    let total = head.saturating_sub(start) + 1;
    let done = checkpoint
        .map_or(0, |c| (c + 1).saturating_sub(start))
        .min(total);
    (1000.0 * done as f64 / total as f64).round() / 10.0
}

async fn head_of(endpoints: &Endpoints, scope: &Scope) -> Result<u64, String> {
    let url = endpoints.urls.first().ok_or("no rpc url")?;
    let bounds = RequestBounds {
        timeout: endpoints.requests.timeout.min(Duration::from_secs(5)),
        ..endpoints.requests
    };
    let source = ChainSource::connect(url, scope, bounds)
        .await
        .map_err(|e| e.to_string())?;
    source.head().await.map_err(|e| e.to_string())
}

/// `liqpass-indexer ack-reorg`.
pub async fn ack_reorg(settings: &ScopedSettings) -> anyhow::Result<()> {
    let store = open_store(&settings.database).await?;
    let mut tx = store.begin().await?;
    let n = incidents::acknowledge_all(&mut tx.conn(), &settings.scope).await?;
    tx.commit().await?;
    println!("acknowledged {n} deep reorg incident(s)");
    store.close().await;
    Ok(())
}
