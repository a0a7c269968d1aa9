//! The command line: `liqpass-indexer [--config FILE] <command>`. Parses
//! arguments, loads settings (bad config: exit 64) and runs one command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::app;
use crate::config::{self, DatabaseSettings, SecretUrl, Settings};
use crate::indexer::IndexerError;
use crate::store::exceptions::Resolution;
use crate::store::{Store, StoreError};

/// Exit code for bad configuration or usage (EX_USAGE); systemd does not restart on it.
pub const EXIT_USAGE: u8 = 64;

/// Follows the LiqPass checkout contract, stores every PremiumPaid log in
/// SQLite or PostgreSQL and reconciles it with the order it pays.
///
/// Settings come from the built-in defaults, then config/$LIQPASS_ENV.toml
/// (under $LIQPASS_CONFIG_DIR, default ./config), then --config FILE, then
/// LIQPASS__SECTION__KEY environment variables.
#[derive(Debug, Parser)]
#[command(name = "liqpass-indexer", version)]
pub struct Cli {
    /// A TOML file layered over the defaults and the environment's file.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// The settings each command needs are listed with it; a command reads no
/// others (an unknown key is still an error for every command).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: back-fill from the checkpoint, then follow new blocks.
    /// SIGTERM/SIGINT finish or roll back the batch in hand and exit 0.
    /// Needs every section (chain.contract and chain.token have no default).
    Run,
    /// Apply the database migrations (creating the database if missing).
    /// Needs [database] and [log] only.
    Migrate {
        /// Roll back the most recently applied migration instead.
        #[arg(long)]
        revert_last: bool,
    },
    /// Re-scan a block range into the same tables. Idempotent: a second run
    /// changes nothing. The live checkpoint is never moved backwards.
    /// Needs what `run` needs.
    Backfill {
        /// First block to scan.
        #[arg(long)]
        from: u64,
        /// Last block to scan (inclusive; capped at the node's head).
        #[arg(long)]
        to: u64,
    },
    /// Ask the node for a block range again and compare it with
    /// contract_events, log by log: missing (on chain, not stored), extra
    /// (stored, not on chain), altered (same tx hash and log index, another
    /// block hash or data). Exit 0 only when they agree. For operators after
    /// an incident, e.g. a provider that left logs out. Needs what `run`
    /// needs.
    Audit {
        /// First block to compare.
        #[arg(long)]
        from: u64,
        /// Last block to compare (inclusive; capped at the node's head).
        #[arg(long)]
        to: u64,
        /// Ask this endpoint (another provider) instead of chain.rpc_url;
        /// a secret like it: never printed.
        #[arg(long, value_name = "URL")]
        rpc_url: Option<String>,
        /// Print JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
        /// Store the missing logs through the normal path (reconciled,
        /// announced), holding the write lease as backfill does; extra and
        /// altered rows are only reported.
        #[arg(long)]
        repair: bool,
    },
    /// Show checkpoint, head, lag, orders by status and events by outcome,
    /// and the running daemon's rate-limit answers. Safe to run while the
    /// daemon writes. Needs [database], [log], chain.chain_id,
    /// chain.contract, the RPC endpoints (for the head) and http.listen (to
    /// ask the daemon).
    Status {
        /// Print JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Validate every setting, print the effective settings (secrets
    /// redacted) and exit.
    CheckConfig,
    /// Acknowledge deep reorgs after review, so that /readyz can turn ready
    /// again. Needs what `status` needs.
    AckReorg,
    /// List every payment that needs a person (not `matched`, or a reversed
    /// order), oldest first. Needs [database] and [log] only.
    Review {
        /// Print JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Settle an order in an exception state (reversed, or with a payment
    /// listed by `review`): one audit row and one notification, in one
    /// transaction. Refused (exit 1, nothing written) from any other state.
    /// Needs [database] and [log] only.
    Resolve {
        /// The order (or give --event).
        #[arg(required_unless_present = "event", conflicts_with = "event")]
        order_id: Option<String>,
        /// The order whose order_ref this event carries, as CHAIN:TX:LOG_INDEX.
        #[arg(long, value_name = "CHAIN:TX:LOG_INDEX")]
        event: Option<app::EventRef>,
        /// paid (paid/paid), refunded (refunded/refunded) or void (cancelled/failed).
        #[arg(long = "as", value_enum)]
        to: ResolveAs,
        /// Why, for the audit trail (not empty).
        #[arg(long)]
        reason: String,
        /// Who resolves it: a person's name, not empty, not `indexer`.
        #[arg(long)]
        actor: String,
        /// Print what would change, and write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print an order, every event that touched it, every audit row and every
    /// notification (with its delivery state), in time order. Needs
    /// [database] and [log] only.
    Order {
        order_id: String,
        /// Print JSON for scripts instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// What `resolve --as` makes of an order.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ResolveAs {
    Paid,
    Refunded,
    Void,
}

impl From<ResolveAs> for Resolution {
    fn from(r: ResolveAs) -> Self {
        match r {
            ResolveAs::Paid => Self::Paid,
            ResolveAs::Refunded => Self::Refunded,
            ResolveAs::Void => Self::Void,
        }
    }
}

/// Runs the program; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let usage = e.use_stderr();
            let _ = e.print();
            return if usage {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let sources = config::Sources::from_process(cli.config.clone());
    // A bounded number of threads (systemd's TasksMax is sized from it):
    // the work is I/O, and more workers than 4 add nothing measurable.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(16)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("liqpass-indexer: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command, &sources)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<config::ConfigError>().is_some() => {
            eprintln!("liqpass-indexer: {e}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "liqpass-indexer failed");
            eprintln!("liqpass-indexer: {e:#}");
            // An endpoint on the wrong chain is a configuration error.
            // So is a database URL or schema that cannot be right.
            let misconfigured = e.chain().any(|c| {
                c.downcast_ref::<IndexerError>()
                    .is_some_and(IndexerError::is_configuration)
                    || c.downcast_ref::<StoreError>()
                        .is_some_and(StoreError::is_configuration)
            });
            if misconfigured {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Loads what `command` reads (a bad setting is a [`config::ConfigError`]),
/// starts logging as configured, and runs it.
async fn dispatch(command: Command, sources: &config::Sources) -> anyhow::Result<()> {
    match command {
        Command::Migrate { revert_last } => {
            let s = config::load_store(sources)?;
            crate::telemetry::init(&s.log);
            migrate(&s.database, revert_last).await
        }
        Command::Status { json } => {
            let s = config::load_scoped(sources)?;
            crate::telemetry::init(&s.log);
            app::status(&s, json).await
        }
        Command::AckReorg => {
            let s = config::load_scoped(sources)?;
            crate::telemetry::init(&s.log);
            app::ack_reorg(&s).await
        }
        Command::Review { json } => {
            let s = config::load_store(sources)?;
            crate::telemetry::init(&s.log);
            app::review(&s.database, json).await
        }
        Command::Resolve {
            order_id,
            event,
            to,
            reason,
            actor,
            dry_run,
        } => {
            let s = config::load_store(sources)?;
            crate::telemetry::init(&s.log);
            let target = match (order_id, event) {
                (Some(id), _) => app::Target::Order(id),
                (None, Some(e)) => app::Target::Event(e),
                (None, None) => unreachable!("clap requires one of them"),
            };
            app::resolve(&s.database, target, to.into(), &reason, &actor, dry_run).await
        }
        Command::Order { order_id, json } => {
            let s = config::load_store(sources)?;
            crate::telemetry::init(&s.log);
            app::order(&s.database, &order_id, json).await
        }
        Command::CheckConfig => {
            let s = config::load(sources)?;
            if let Some(w) = s.webhooks.as_ref().and_then(|w| w.clear_text_warning()) {
                eprintln!("warning: {w}");
            }
            print!("{}", s.to_redacted_toml());
            Ok(())
        }
        Command::Run => {
            let s = full(sources)?;
            app::run_daemon(s).await
        }
        Command::Audit {
            from,
            to,
            rpc_url,
            json,
            repair,
        } => {
            let s = full(sources)?;
            anyhow::ensure!(from <= to, "--from {from} is after --to {to}");
            let rpc_url = rpc_url.as_deref().map(parse_rpc_url).transpose()?;
            app::audit(s, from, to, rpc_url, json, repair).await
        }
        Command::Backfill { from, to } => {
            let s = full(sources)?;
            anyhow::ensure!(from <= to, "--from {from} is after --to {to}");
            app::backfill(s, from, to).await
        }
    }
}

/// `--rpc-url`: an RPC URL, checked as `chain.rpc_url` is, a usage error
/// (exit 64) that shows it redacted (it may carry an API key). Parsed here,
/// not by clap, whose errors repeat the value as given.
fn parse_rpc_url(text: &str) -> Result<SecretUrl, config::ConfigError> {
    SecretUrl::parse(text).map_err(|e| config::ConfigError {
        problems: vec![config::Problem {
            key: "--rpc-url".into(),
            message: e,
        }],
    })
}

fn full(sources: &config::Sources) -> Result<Settings, config::ConfigError> {
    let s = config::load(sources)?;
    crate::telemetry::init(&s.log);
    Ok(s)
}

async fn migrate(database: &DatabaseSettings, revert_last: bool) -> anyhow::Result<()> {
    let store = Store::create(database)
        .await
        .context("opening the database")?;
    if revert_last {
        match store
            .revert_last()
            .await
            .context("reverting the last migration")?
        {
            Some(version) => println!("reverted migration {version}"),
            None => println!("no migration to revert"),
        }
    } else {
        store.migrate().await.context("applying migrations")?;
        let applied = store.applied_migrations().await?;
        println!(
            "database is at migration {}",
            applied.last().copied().unwrap_or(0)
        );
    }
    store.close().await;
    Ok(())
}
