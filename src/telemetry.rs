//! The tracing subscriber: human-readable text or JSON lines on stderr, the
//! level from `log.level` unless `RUST_LOG` is set.
//!
//! alloy's HTTP transport opens a debug span carrying the full RPC URL (API
//! key included), so that target is always capped at `info`, whatever the
//! filter says: secrets never reach the logs.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Appended to every filter: targets whose debug output would print secrets.
const SECRET_SAFE: &str = "alloy_transport_http=info";

/// The filter for `settings`, or for `RUST_LOG` when it is set and valid.
pub fn filter(settings: &LogSettings) -> EnvFilter {
    let base = match std::env::var("RUST_LOG") {
        Ok(value) if EnvFilter::try_new(&value).is_ok() => value,
        Ok(value) => {
            eprintln!(
                "RUST_LOG={value:?} is not a valid filter; using log.level {:?}",
                settings.level
            );
            settings.level.clone()
        }
        Err(_) => settings.level.clone(),
    };
    EnvFilter::try_new(format!("{base},{SECRET_SAFE}"))
        .expect("log.level was validated with the config and the cap is a valid directive")
}

/// Installs the global subscriber. Call once, early in `main`.
pub fn init(settings: &LogSettings) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(settings))
        .with_writer(std::io::stderr)
        // Colours only on a terminal: journald and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let result = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("tracing subscriber already installed: {e}");
    }
}
