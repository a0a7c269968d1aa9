//! The tracing subscriber: human-readable text or JSON lines on stderr, the
//! level from `log.level` unless `RUST_LOG` is set.
//!
//! The network crates under us are silent, whatever the filter (`log.level`
//! or `RUST_LOG`) says: at debug and trace they print URLs (an RPC URL holds
//! its API key), request and answer bodies, and a websocket handshake's
//! `Authorization` header (a ws URL's user and password, base64-encoded);
//! at error they print a server's words verbatim. Their failures come back
//! to our code as errors, which print through `SecretUrl::sanitise`.

use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, LogSettings};

/// Targets (and every target under them: `alloy` is all of alloy's crates)
/// that no filter can turn on.
pub const SILENCED: &[&str] = &[
    "alloy",
    "reqwest",
    "hyper",
    "hyper_util",
    "h2",
    "tungstenite",
    "tokio_tungstenite",
    "rustls",
];

/// Lets everything through but [`SILENCED`].
fn unsilenced() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(SILENCED.iter().map(|t| (*t, LevelFilter::OFF)))
}

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
    EnvFilter::try_new(base).expect("log.level was validated with the config")
}

/// Installs the global subscriber. Call once, early in `main`.
pub fn init(settings: &LogSettings) {
    let filter = filter(settings).and(unsilenced());
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colours only on a terminal: journald and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let registry = tracing_subscriber::registry();
    let result = match settings.format {
        LogFormat::Text => registry.with(layer.with_filter(filter)).try_init(),
        LogFormat::Json => registry
            .with(
                layer
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_filter(filter),
            )
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("tracing subscriber already installed: {e}");
    }
}
